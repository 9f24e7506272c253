"""Host probe over recorded root trees: each fact from its file, each unreadable file a note, never a crash."""

from __future__ import annotations

import pathlib

from machines import fixture_sources

from gpudoctor.probe import Sources
from gpudoctor.probe.host import parse_meminfo, parse_mok_subjects, parse_os_release, probe_host

EFI_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def test_healthy_nvidia_desktop():
    host = probe_host(fixture_sources("rtx-3090-ti"))
    assert (host.os_id, host.os_version, host.os_pretty) == ("ubuntu", "24.04", "Ubuntu 24.04.2 LTS")
    assert (host.kernel, host.is_wsl, host.kernel_headers) == ("6.11.0-26-generic", False, True)
    assert host.loaded_modules == ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]
    assert (host.secure_boot, host.nvidia_module_signed, host.nvidia_module_version) == (True, True, "570.133.07")
    assert host.cuda_toolkit_version == "12.8.1"
    assert (host.user, host.user_groups_pending) == ("ana", [])
    assert "render" in host.user_groups
    assert host.ram_total_bytes == 65536000 * 1024
    assert host.swap_total_bytes == 8388604 * 1024
    assert (host.cpu_model, host.cpu_count) == ("AMD Ryzen 9 7950X 16-Core Processor", 32)
    assert [(d.purpose, d.path, d.free_bytes) for d in host.disks] == [
        ("hf_cache", "/home/ana/.cache/huggingface/hub", 812345892864),
        ("output", "/home/ana/ft", 812345892864),
    ]
    assert host.shm_total_bytes == 65536000 * 1024 // 2
    assert host.errors == []


def test_amd_box_without_render_group():
    host = probe_host(fixture_sources("amd-no-render-group"))
    assert (host.kfd_exists, host.kfd_accessible) == (True, False)
    assert (host.render_nodes, host.render_accessible) == (["/dev/dri/renderD128"], False)
    assert "render" not in host.user_groups and "video" not in host.user_groups
    assert (host.rocm_version, host.amdgpu_version) == ("6.4.1-83", None)


def test_group_added_but_not_logged_in_again_is_pending(tmp_path):
    sources = fixture_sources("amd-no-render-group", tmp_path)
    group = sources.path("/etc/group")
    group.write_text(group.read_text().replace("render:x:992:", "render:x:992:sam"))
    assert probe_host(sources).user_groups_pending == ["render"]


def test_secure_boot_sources_in_order(tmp_path):
    sources = fixture_sources("secure-boot-unsigned", tmp_path)
    host = probe_host(sources)
    assert (host.secure_boot, host.nvidia_module_signed, host.loaded_modules) == (True, False, [])

    sources.path(EFI_VAR).unlink()  # EFI present, variable gone: ask mokutil
    assert probe_host(sources).secure_boot is True
    sources.run = lambda argv, timeout: (0, "SecureBoot disabled\n", "")
    assert probe_host(sources).secure_boot is False

    def no_tools(argv, timeout):
        raise FileNotFoundError(argv[0])

    sources.run = no_tools
    host = probe_host(sources)
    assert (host.secure_boot, host.nvidia_module_signed) == (None, None)


def test_legacy_bios_means_secure_boot_off_and_no_headers_is_seen():
    host = probe_host(fixture_sources("no-gpu"))
    assert (host.secure_boot, host.kernel_headers) == (False, False)


def test_nouveau_box_and_missing_nvidia_module():
    host = probe_host(fixture_sources("nouveau"))
    assert host.loaded_modules == ["nouveau"]
    assert (host.nvidia_module_signed, host.nvidia_module_version) == (None, None)


def test_wsl_is_seen_in_proc_version(tmp_path):
    sources = fixture_sources("no-gpu", tmp_path)
    sources.path("/proc/version").write_text("Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f)\n")
    assert probe_host(sources).is_wsl is True


def test_unreadable_files_become_notes(monkeypatch):
    real = pathlib.Path.read_text

    def guarded(self, *args, **kwargs):
        if str(self).endswith(("/proc/meminfo", "/etc/os-release")):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", guarded)
    host = probe_host(fixture_sources("rtx-3090-ti"))
    assert host.ram_total_bytes is None and host.os_id is None
    assert [note.split(":")[0] for note in host.errors] == ["os_release", "memory"]
    assert host.kernel == "6.11.0-26-generic"  # the rest still read


def test_disk_errors_are_kept_per_disk():
    sources = fixture_sources("rtx-3090-ti")

    def failing(path):
        raise OSError(5, "Input/output error")

    sources.disk_usage = failing
    host = probe_host(sources, output_dir="/data/runs")
    assert [(d.path, d.free_bytes, d.error is not None) for d in host.disks] == [
        ("/home/ana/.cache/huggingface/hub", None, True),
        ("/data/runs", None, True),
    ]


def test_parsers():
    assert parse_os_release('ID=ubuntu\nVERSION_ID="24.04"\n# comment\nPRETTY_NAME="Ubuntu 24.04 LTS"\n') == {
        "ID": "ubuntu", "VERSION_ID": "24.04", "PRETTY_NAME": "Ubuntu 24.04 LTS",
    }
    assert parse_meminfo("MemTotal:       1024 kB\nHugePages_Total:       0\n") == {"MemTotal": 1048576, "HugePages_Total": 0}


def test_the_real_readers_work_on_a_recorded_root(tmp_path):
    """Sources' own file, account, access and disk readers (no stand-ins but the root, the recorded
    commands and environment) over a copy of a recorded machine: every fact read, no errors."""
    recorded = fixture_sources("rtx-4090-ubuntu", tmp_path)
    sources = Sources(root=recorded.root, run=recorded.run, environ={"HOME": str(tmp_path)}, cwd=lambda: str(tmp_path))
    host = probe_host(sources, output_dir=str(tmp_path))
    assert host.errors == []
    assert (host.os_id, host.os_version, host.kernel) == ("ubuntu", "24.04", "6.11.0-26-generic")
    assert host.ram_total_bytes == 65536000 * 1024 and host.cpu_count == 32
    assert host.user and host.disks and all(disk.total_bytes for disk in host.disks)


# --- Secure Boot keys, DKMS, device nodes, toolkit, compiler, variables (issue 10) -------------------


def test_module_signer_and_machine_owner_keys():
    healthy = probe_host(fixture_sources("rtx-3090-ti"))
    assert (healthy.nvidia_module_signer, healthy.nvidia_module_signed) == ("Canonical Ltd. Kernel Module Signing", True)
    assert (healthy.mok_enrolled, healthy.mok_pending) == (["Canonical Ltd. Master Certificate Authority"], [])
    unsigned = probe_host(fixture_sources("secure-boot-unsigned"))
    assert (unsigned.nvidia_module_signer, unsigned.nvidia_module_signed) == (None, False)
    amd = probe_host(fixture_sources("rx-7900-xt"))  # amdgpu-dkms under Secure Boot: Ubuntu's MOK is enrolled
    assert amd.mok_enrolled == ["Canonical Ltd. Master Certificate Authority", "kim-desktop Secure Boot Module Signature key"]
    assert amd.nvidia_module_signer is None and amd.nvidia_module_signed is None  # no nvidia module at all


PENDING = """[key 1]
SHA1 Fingerprint: 9a:12:7c:44:0e:d1:5b:63:a8:f0:2e:91:47:c6:b3:08:5d:e2:71:af
Certificate:
    Data:
        Issuer: CN=DKMS module signing key
        Subject: CN=DKMS module signing key
        Subject Public Key Info:
            Public Key Algorithm: rsaEncryption
        X509v3 extensions:
            X509v3 Subject Key Identifier:
                0B:7E:22
"""


def test_a_key_waiting_for_the_mok_manager_is_pending(tmp_path):
    sources = fixture_sources("secure-boot-unsigned", tmp_path)
    recorded = sources.run

    def run(argv, timeout):
        if list(argv) == ["mokutil", "--list-new"]:
            return 0, PENDING, ""
        return recorded(argv, timeout)

    sources.run = run
    host = probe_host(sources)
    assert (host.mok_pending, host.mok_enrolled) == (["DKMS module signing key"], ["Canonical Ltd. Master Certificate Authority"])


def test_parse_mok_subjects():
    assert parse_mok_subjects("MokNew is empty\n") == [] and parse_mok_subjects("") == []
    text = "Subject: C=GB, O=Canonical Ltd., CN=Canonical Ltd. Master Certificate Authority\n" \
           "        Subject: O=Example Corp\n        Subject Public Key Info:\n  Subject: /CN=old style key\n"
    assert parse_mok_subjects(text) == ["Canonical Ltd. Master Certificate Authority", "O=Example Corp", "old style key"]


def commands_seen(sources):
    seen = []
    recorded = sources.run

    def run(argv, timeout):
        seen.append((" ".join(argv), timeout))
        return recorded(argv, timeout)

    sources.run = run
    return seen


def test_no_efi_no_dkms_tree_means_those_tools_are_not_asked():
    sources = fixture_sources("no-gpu")
    seen = commands_seen(sources)
    host = probe_host(sources)
    assert not any(command.startswith(("mokutil", "dkms")) for command, _ in seen)
    assert (host.mok_enrolled, host.mok_pending, host.dkms_status, host.device_nodes) == ([], [], [], [])


def test_dkms_status_lines():
    assert probe_host(fixture_sources("rx-7900-xt")).dkms_status == ["amdgpu/6.12.12-2164967.24.04, 6.11.0-26-generic, x86_64: installed"]
    assert probe_host(fixture_sources("secure-boot-unsigned")).dkms_status == ["nvidia/570.133.07, 6.11.0-26-generic, x86_64: installed"]
    assert probe_host(fixture_sources("rtx-4090-ubuntu")).dkms_status == []  # Ubuntu's prebuilt modules: no DKMS tree


def test_each_command_runs_in_parallel_under_the_short_timeout():
    """rx-7900-xt asks modinfo, mokutil twice and dkms: all four must be waiting at once to pass the barrier."""
    import threading

    sources = fixture_sources("rx-7900-xt")
    barrier = threading.Barrier(4, timeout=10)
    recorded = sources.run
    timeouts = []

    def run(argv, timeout):
        timeouts.append(timeout)
        barrier.wait()
        return recorded(argv, timeout)

    sources.run = run
    host = probe_host(sources)
    assert host.errors == [] and len(timeouts) == 4 and set(timeouts) == {sources.command_timeout}
    assert host.dkms_status and len(host.mok_enrolled) == 2


def test_a_command_that_hangs_leaves_its_fact_unknown():
    sources = fixture_sources("rx-7900-xt")
    recorded = sources.run

    def run(argv, timeout):
        if argv[0] == "dkms":
            raise TimeoutError("dkms did not answer within 3 s")
        return recorded(argv, timeout)

    sources.run = run
    host = probe_host(sources)
    assert host.dkms_status == [] and host.errors == [] and len(host.mok_enrolled) == 2


def test_nvidia_device_nodes():
    assert probe_host(fixture_sources("rtx-4090-ubuntu")).device_nodes == [
        "nvidia0", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl",
    ]
    assert probe_host(fixture_sources("secure-boot-unsigned")).device_nodes == []  # the module never loaded


def test_device_nodes_sort_naturally(tmp_path):
    sources = fixture_sources("rtx-6000-ada", tmp_path)
    for name in ("nvidia10", "nvidia2", "nvidia1"):
        sources.path(f"/dev/{name}").write_text("")
    assert [n for n in probe_host(sources).device_nodes if n[6:].isdigit()] == ["nvidia0", "nvidia1", "nvidia2", "nvidia10"]


def test_cuda_toolkit_is_looked_for_as_torch_looks(tmp_path):
    sources = fixture_sources("rtx-3090-ti", tmp_path)
    assert _toolkit(sources) == ("/usr/local/cuda", "12.8.1")
    (sources.path("/opt/cuda-12.6/bin")).mkdir(parents=True)
    sources.path("/opt/cuda-12.6/version.json").write_text('{"cuda": {"version": "12.6.3"}}')
    sources.path("/opt/cuda-12.6/bin/nvcc").write_text("")
    sources.environ["PATH"] = "/opt/cuda-12.6/bin:" + sources.environ["PATH"]
    assert _toolkit(sources) == ("/opt/cuda-12.6", "12.6.3")  # nvcc on PATH beats /usr/local/cuda
    sources.environ["CUDA_PATH"] = "/usr/local/cuda/"
    assert _toolkit(sources) == ("/usr/local/cuda", "12.8.1")  # CUDA_PATH beats nvcc
    sources.environ["CUDA_HOME"] = "/opt/cuda-12.6"
    assert _toolkit(sources) == ("/opt/cuda-12.6", "12.6.3")  # CUDA_HOME first
    sources.environ["CUDA_HOME"] = "/opt/gone"  # a variable naming no folder is passed over (gpu_env keeps it)
    host = probe_host(sources)
    assert (host.cuda_toolkit_path, host.gpu_env["CUDA_HOME"]) == ("/usr/local/cuda", "/opt/gone")


def test_a_toolkit_without_a_version_file_asks_its_nvcc(tmp_path):
    """Ubuntu's nvidia-cuda-toolkit: /usr/bin/nvcc and no version.json."""
    sources = fixture_sources("rtx-4090-ubuntu", tmp_path)
    sources.path("/usr/bin/nvcc").write_text("")
    recorded = sources.run

    def run(argv, timeout):
        if argv == ["/usr/bin/nvcc", "--version"]:
            return 0, "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.0, V12.0.140\nBuild cuda_12.0.r12.0\n", ""
        return recorded(argv, timeout)

    sources.run = run
    assert _toolkit(sources) == ("/usr", "12.0.140")
    assert _toolkit(fixture_sources("rtx-4090-ubuntu")) == (None, None)


def _toolkit(sources):
    host = probe_host(sources)
    return host.cuda_toolkit_path, host.cuda_toolkit_version


def test_c_compiler_from_cc_then_path(tmp_path):
    sources = fixture_sources("rtx-4090-ubuntu", tmp_path)
    assert probe_host(sources).c_compiler == "/usr/bin/cc"
    sources.path("/usr/bin/clang-18").write_text("")
    sources.environ["CC"] = "clang-18 -fuse-ld=lld"
    assert probe_host(sources).c_compiler == "/usr/bin/clang-18"
    sources.environ["CC"] = "/opt/missing/gcc"  # CC names nothing: what the search would find instead
    assert probe_host(sources).c_compiler == "/usr/bin/cc"
    nouveau = fixture_sources("nouveau", tmp_path)
    for tool in ("cc", "gcc"):
        nouveau.path(f"/usr/bin/{tool}").unlink()
    assert probe_host(nouveau).c_compiler is None  # no build-essential


def test_a_file_that_is_not_executable_is_no_compiler(tmp_path):
    sources = fixture_sources("rtx-4090-ubuntu", tmp_path)
    sources.access = lambda path, mode: not path.endswith(("/usr/bin/cc", "/usr/bin/gcc"))
    assert probe_host(sources).c_compiler is None


def test_the_variables_that_steer_training_are_recorded():
    import dataclasses

    environ = {"BNB_CUDA_VERSION": "124", "BNB_ROCM_VERSION": "64", "CUDA_HOME": "/usr/local/cuda-12.4", "CUDA_PATH": "/c",
               "ROCM_PATH": "/opt/rocm-6.4.1", "HIP_PATH": "/opt/rocm/hip", "HSA_ENABLE_SDMA": "0",
               "CUDA_LAUNCH_BLOCKING": "1", "HOME": "/home/x"}
    sources = dataclasses.replace(fixture_sources("rx-7900-xt"), environ=environ)
    recorded = probe_host(sources).gpu_env
    assert recorded == {k: v for k, v in environ.items() if k not in ("CUDA_LAUNCH_BLOCKING", "HOME")}
    assert probe_host(fixture_sources("radeon-pro-w7900")).gpu_env == {"ROCM_PATH": "/opt/rocm"}


def test_a_failing_dkms_status_keeps_its_error_lines_and_the_driver_sources_are_listed(tmp_path):
    """negativo17/nvidia-driver#56: `dkms status` fails on a stale tree and says so on stderr."""
    sources = fixture_sources("secure-boot-unsigned", tmp_path)
    (sources.path("/usr/src") / "nvidia-396.45").mkdir(parents=True)
    (sources.path("/usr/src") / "linux-headers-6.11.0-26-generic").mkdir()
    recorded = sources.run

    def run(argv, timeout):
        if argv[:2] == ["dkms", "status"]:
            return 3, "", "Error! Could not locate dkms.conf file.\nFile: /var/lib/dkms/nvidia/390.48/source/dkms.conf does not exist.\n"
        return recorded(argv, timeout)

    sources.run = run
    host = probe_host(sources)
    assert host.dkms_status == ["Error! Could not locate dkms.conf file.", "File: /var/lib/dkms/nvidia/390.48/source/dkms.conf does not exist."]
    assert host.dkms_nvidia_sources == ["396.45"]


def test_nvidia_modprobe_is_missing_or_not_setuid_as_the_file_says(tmp_path):
    sources = fixture_sources("rtx-4090-ubuntu", tmp_path)
    sources.environ = {**sources.environ, "PATH": "/usr/bin"}
    assert probe_host(sources).nvidia_modprobe == "missing"
    tool = sources.path("/usr/bin/nvidia-modprobe")
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)  # no setuid bit (a test cannot make a root-owned setuid file)
    assert probe_host(sources).nvidia_modprobe == "not-setuid"
