"""Host probe over recorded root trees: each fact from its file, each unreadable file a note, never a crash."""

from __future__ import annotations

import pathlib

from machines import fixture_sources

from gpudoctor.probe import Sources
from gpudoctor.probe.host import parse_meminfo, parse_os_release, probe_host

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
