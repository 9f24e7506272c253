"""Each check fires on the facts it is about (with its exact fix) and stays quiet on a healthy box."""

from __future__ import annotations

import pytest
from doctor_facts import GIB, PYTHON, amd_box, busy, no_gpu_box, nvidia_box, rtx_4090

from gpudoctor import compat
from gpudoctor.doctor import fixes, run_checks
from gpudoctor.doctor.finding import Finding
from gpudoctor.probe.facts import LiveFacts, PciGpu, VendorProbe


def problems(facts) -> dict[str, Finding]:
    return {f.id: f for f in run_checks(facts) if f.is_problem}


def one(facts, check_id: str) -> Finding:
    found = [f for f in run_checks(facts, only=check_id)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("box", [nvidia_box, amd_box], ids=["nvidia", "amd"])
def test_a_healthy_box_has_no_problems(box):
    assert problems(box()) == {}


# --- GPU -----------------------------------------------------------------------------------------


def test_no_gpu_anywhere_says_why_and_points_at_the_cpu_demo():
    finding = one(no_gpu_box(), "gpu.present")
    assert finding.status == "error"
    assert finding.title == "No GPU found: no NVIDIA or AMD card on the PCI bus"
    assert "NVML shared library (libnvidia-ml.so.1) not found" in finding.detail
    assert "amd via sysfs: no device" in finding.detail
    assert finding.fix.startswith("gpudoctor train --demo")


def test_nvidia_card_without_driver_gets_the_driver_install():
    facts = no_gpu_box()
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2203", driver=None)]
    finding = one(facts, "gpu.present")
    assert "NVIDIA card is on the PCI bus" in finding.title
    assert finding.fix == fixes.INSTALL_NVIDIA_DRIVER


def test_amd_card_without_compute_gets_install_rocm():
    facts = no_gpu_box()
    facts.pci_gpus = [PciGpu("0000:03:00.0", "amd", "0x1002", "0x744c", driver=None)]
    assert one(facts, "gpu.present").fix == fixes.INSTALL_ROCM


def test_driver_library_mismatch_says_reboot_in_the_driver_row():
    facts = no_gpu_box(nvidia_module_version="570.124.06")
    facts.probes[0] = VendorProbe("nvidia", "nvml", "error", "Driver/library version mismatch")
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2203", driver="nvidia")]
    present = one(facts, "gpu.present")
    assert present.title == "No usable GPU: NVIDIA driver/library version mismatch"
    assert present.fix is None and present.detail.endswith("The Driver row has the fix.")  # said once, below
    mismatch = one(facts, "nvidia.library_mismatch")
    assert (mismatch.category, mismatch.status) == ("Driver", "error")
    # a reboot first; when it does not help (illinois-scicomp/machine-shop-maintenance#70), finishing the upgrade does
    assert mismatch.fix.startswith("sudo reboot\n") and "sudo apt install --fix-broken" in mismatch.fix
    assert mismatch.title.startswith("the NVIDIA kernel module 570.124.06 is still loaded, but the driver libraries are another version")
    assert "a reboot loads the new one" in mismatch.detail
    assert run_checks(nvidia_box(), only="nvidia.library_mismatch") == []


def test_nouveau_bound_card_gets_the_blacklist_fix():
    facts = no_gpu_box(loaded_modules=["nouveau"])
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2204", driver="nouveau")]
    present = one(facts, "gpu.present")
    assert present.title == "No usable GPU: the open-source nouveau driver holds the NVIDIA card"
    assert present.fix is None and present.detail.endswith("The Driver row has the fix.")  # said once, below
    nouveau = one(facts, "nvidia.nouveau")
    assert nouveau.status == "error"
    assert nouveau.fix.startswith(fixes.INSTALL_CUDA + " ")  # NVML absent: no driver yet, install-cuda does both


def test_nouveau_check_is_quiet_without_nouveau():
    assert one(nvidia_box(), "gpu.present").status == "ok"
    assert run_checks(nvidia_box(), only="nvidia.nouveau") == []


def test_wsl_without_gpu_points_at_the_windows_driver():
    facts = no_gpu_box(is_wsl=True)
    assert one(facts, "gpu.present").fix == fixes.WSL_DRIVER
    assert one(facts, "host.wsl").status == "warning"


def test_small_vram_warns_and_16gb_cards_pass():
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(name="NVIDIA GeForce RTX 4070", total_bytes=12 * GIB)
    small = one(facts, "gpu.vram")
    assert (small.status, small.title) == (
        "warning",
        "GPU 0 has 12.0 GiB of memory, under the 16 GB a 7B QLoRA run needs",
    )
    facts.gpus[0] = rtx_4090(total_bytes=16376 * 1024**2)  # what NVML reports for a "16 GB" card
    assert one(facts, "gpu.vram").status == "ok"


def test_other_process_holding_vram_names_it_and_spares_the_desktop():
    facts = nvidia_box()
    busy(facts.gpus[0], (4242, "python3", 6 * GIB), (1234, "/usr/lib/xorg/Xorg", 300 * 1024**2))
    finding = one(facts, "gpu.vram_in_use")
    assert finding.status == "warning"
    assert finding.title == "GPU 0: 6.3 GiB of 24.0 GiB is held by other programs"
    assert "python3 (pid 4242, 6.0 GiB)" in finding.detail
    assert finding.fix.startswith("kill 4242 ")
    busy(facts.gpus[0], (1234, "/usr/lib/xorg/Xorg", 2 * GIB))
    assert one(facts, "gpu.vram_in_use").fix is None


def test_narrow_pcie_link_warns():
    facts = nvidia_box()
    facts.gpus[0].pcie_width = 4
    assert one(facts, "gpu.pcie_link").title == "GPU 0 runs at PCIe x4 of x16"
    facts.gpus[0].pcie_width, facts.gpus[0].pcie_gen = 16, 1  # an idle card drops its speed: fine
    assert run_checks(facts, only="gpu.pcie_link") == []


# --- NVIDIA --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("torch", "driver", "status"),
    [
        ("2.7.1+cu128", "570.133.07", "ok"),
        ("2.7.1+cu128", "525.60.13", "ok"),
        ("2.7.1+cu128", "520.61.05", "error"),
        ("2.9.0+cu130", "575.57.08", "error"),
        ("2.9.0+cu130", "580.65.06", "ok"),
    ],
)
def test_driver_vs_torch_uses_the_compat_minimums(torch, driver, status):
    facts = nvidia_box()
    facts.python.packages["torch"].version = torch
    facts.python.packages["torch"].flavour = torch.split("+")[1]
    facts.gpus[0].driver_version = driver
    finding = one(facts, "nvidia.driver_vs_torch")
    assert finding.status == status
    if status == "error":
        cuda = "13.0" if "cu130" in torch else "12.8"
        minimum = compat.min_driver_for_cuda(cuda)
        assert finding.title == f"driver {driver} is too old for torch {torch} (CUDA {cuda} needs driver ≥ {minimum})"
        assert fixes.INSTALL_TORCH in finding.fix and fixes.INSTALL_CUDA in finding.fix


def test_driver_vs_torch_prefers_the_live_cuda_version():
    facts = nvidia_box()
    facts.python.packages["torch"].version = "2.7.1"  # PyPI wheel: no local tag
    facts.python.packages["torch"].flavour = None
    facts.gpus[0].driver_version = "520.61.05"
    assert run_checks(facts, only="nvidia.driver_vs_torch") == []  # CUDA version unknown: no guess
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1", cuda_version="12.6", gpu_available=False)
    assert one(facts, "nvidia.driver_vs_torch").status == "error"


def test_secure_boot_with_unsigned_module_needs_a_signed_module():
    facts = nvidia_box(secure_boot=True, nvidia_module_signed=False)
    finding = one(facts, "nvidia.secure_boot")
    assert finding.status == "error"
    # enrolling a key cannot make an unsigned module load: it needs a signed one (or Secure Boot off)
    assert finding.fix.startswith("sudo ubuntu-drivers install")
    assert "Secure Boot off" in finding.fix
    assert run_checks(nvidia_box(secure_boot=True, nvidia_module_signed=True), only="nvidia.secure_boot") == []
    assert run_checks(nvidia_box(secure_boot=False, nvidia_module_signed=False), only="nvidia.secure_boot") == []


# --- AMD -----------------------------------------------------------------------------------------


def test_user_outside_render_video_cannot_open_the_gpu():
    facts = amd_box(user_groups=["ada", "sudo"], kfd_accessible=False)
    finding = one(facts, "amd.groups")
    assert (finding.status, finding.title) == ("error", "ada is not in the render and video groups, so ROCm cannot open the GPU")
    assert finding.fix == "sudo usermod -aG render,video $USER   # then log out and back in"


def test_groups_missing_but_accessible_is_a_warning():
    facts = amd_box(user_groups=["ada", "video"], kfd_accessible=True, render_accessible=True)
    assert one(facts, "amd.groups").status == "warning"


def test_groups_added_but_not_yet_in_this_session_says_log_in_again():
    facts = amd_box(user_groups=["ada"], user_groups_pending=["render", "video"], kfd_accessible=False)
    finding = one(facts, "amd.groups")
    assert finding.status == "error"
    assert finding.fix.startswith("log out and back in")


def test_group_check_is_for_amd_only():
    assert run_checks(nvidia_box(user_groups=["ada"]), only="amd.groups") == []


@pytest.mark.parametrize(("target", "override"), [("gfx1102", "11.0.0"), ("gfx1103", "11.0.0"), ("gfx1031", "10.3.0")])
def test_unlisted_gfx_target_gets_the_hsa_override(target, override):
    facts = amd_box()
    facts.gpus[0].gfx_target = target
    finding = one(facts, "amd.gfx_target")
    assert finding.status == "warning"
    assert finding.fix.startswith(f"export HSA_OVERRIDE_GFX_VERSION={override}")


@pytest.mark.parametrize("target", ["gfx1100", "gfx1101", "gfx1201", "gfx942"])
def test_supported_gfx_targets_pass(target):
    facts = amd_box()
    facts.gpus[0].gfx_target = target
    assert one(facts, "amd.gfx_target").status == "ok"


def test_gfx_target_without_override_links_the_matrix():
    facts = amd_box()
    facts.gpus[0].gfx_target = "gfx906"
    assert one(facts, "amd.gfx_target").fix == fixes.ROCM_MATRIX


def test_missing_kfd_and_rocm():
    facts = amd_box(kfd_exists=False, rocm_version=None)
    assert one(facts, "amd.kfd").status == "error"
    assert one(facts, "amd.rocm").fix == "gpudoctor install-rocm"


# --- PyTorch -------------------------------------------------------------------------------------


def test_cpu_torch_on_a_gpu_machine():
    facts = nvidia_box()
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.7.1+cpu", "cpu"
    finding = one(facts, "torch.build_vs_gpu")
    assert finding.title == "torch 2.7.1+cpu is a CPU-only build: it cannot use the NVIDIA GeForce RTX 4090"
    first, by_hand = finding.fix.splitlines()
    assert first == "gpudoctor install-torch"
    assert by_hand.endswith("-m pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128")  # what it runs


def test_cuda_torch_on_an_amd_machine():
    facts = amd_box()
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.7.1+cu128", "cu128"
    finding = one(facts, "torch.build_vs_gpu")
    assert finding.status == "error"
    assert "is a CUDA build, but the AMD Radeon RX 7900 XTX needs a ROCm build" in finding.title


def test_cpu_torch_without_gpu_is_fine():
    assert run_checks(no_gpu_box(), only="torch.build_vs_gpu") == []


def test_torch_missing_or_broken():
    facts = nvidia_box()
    del facts.python.packages["torch"]
    assert one(facts, "torch.installed").title == f"PyTorch is not installed in {PYTHON}"
    facts = nvidia_box()
    facts.python.live = LiveFacts(ran=True, torch_error="OSError: libcudnn.so.9: cannot open shared object file")
    finding = one(facts, "torch.installed")
    assert finding.title == "import torch fails: OSError: libcudnn.so.9: cannot open shared object file"


def test_live_torch_that_cannot_see_the_gpu_is_an_error():
    facts = nvidia_box()
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1+cu128", cuda_version="12.8", gpu_available=False,
                                  gpu_error="CUDA driver initialization failed")
    finding = one(facts, "torch.sees_gpu")
    assert finding.status == "error"
    assert "CUDA driver initialization failed" in finding.detail
    facts.python.live.gpu_available, facts.python.live.device_count = True, 1
    assert one(facts, "torch.sees_gpu").status == "ok"


@pytest.mark.parametrize(
    ("name", "facts_for"),
    [
        ("nouveau", lambda: _card_without_driver(loaded_modules=["nouveau"], driver="nouveau")),
        ("secure-boot", lambda: _card_without_driver(secure_boot=True, nvidia_module_signed=False, driver=None)),
        ("mismatch", lambda: _card_without_driver(driver="nvidia", nvml_error="Driver/library version mismatch")),
    ],
)
def test_torch_cannot_use_a_card_whose_driver_does_not_work(name, facts_for):
    facts = facts_for()
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1+cu128", cuda_version="12.8", gpu_available=False,
                                  gpu_error="CUDA initialization: Found no NVIDIA driver on your system.")
    finding = one(facts, "torch.sees_gpu")
    assert (finding.status, finding.title) == ("error", "torch cannot use the GPU: torch.cuda.is_available() is False")
    assert finding.detail.startswith("torch said: CUDA initialization: Found no NVIDIA driver on your system.")
    assert "the GPU and Driver rows say why" in finding.detail and finding.fix is None
    assert one(facts, "torch.build_vs_gpu").title == "torch is a CUDA 12.8 build, as the NVIDIA card at 0000:01:00.0 needs"


def test_torch_on_a_card_without_driver_is_an_error_even_without_the_live_check():
    facts = _card_without_driver(loaded_modules=["nouveau"], driver="nouveau")  # check --fast: no live result
    finding = one(facts, "torch.sees_gpu")
    assert (finding.status, finding.title) == ("error", "torch cannot use the NVIDIA card at 0000:01:00.0 until its driver works")


def test_cpu_torch_on_a_card_without_driver_is_said_once():
    facts = _card_without_driver(loaded_modules=["nouveau"], driver="nouveau")
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.7.1+cpu", "cpu"
    assert one(facts, "torch.build_vs_gpu").title == "torch 2.7.1+cpu is a CPU-only build: it cannot use the NVIDIA card at 0000:01:00.0"
    assert run_checks(facts, only="torch.sees_gpu") == []


def test_a_gpu_less_box_with_cpu_torch_has_no_torch_gpu_findings():
    facts = no_gpu_box()
    assert run_checks(facts, only="torch.sees_gpu") == [] and run_checks(facts, only="torch.build_vs_gpu") == []


def _card_without_driver(driver: str | None, nvml_error: str | None = None, **host_overrides):
    """An RTX 3090 on the PCI bus that no driver offers for compute; torch cu128 installed."""
    facts = nvidia_box(**host_overrides)
    facts.gpus = []
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2204", driver=driver)]
    if nvml_error:
        facts.probes = [VendorProbe("nvidia", "nvml", "error", nvml_error)]
    else:
        facts.probes = [VendorProbe("nvidia", "nvml", "absent", "NVML shared library (libnvidia-ml.so.1) not found")]
    return facts


def test_old_python():
    facts = nvidia_box()
    facts.python.version = "3.9.18"
    assert one(facts, "python.version").status == "error"
    facts.python.version = "3.10.0"
    assert one(facts, "python.version").status == "ok"


# --- bitsandbytes --------------------------------------------------------------------------------


def test_bitsandbytes_missing():
    facts = nvidia_box()
    del facts.python.packages["bitsandbytes"]
    finding = one(facts, "bnb.installed")
    assert finding.status == "error"
    assert finding.fix == f"{PYTHON} -m pip install -U 'bitsandbytes>=0.43.0'"


def test_bitsandbytes_too_old_for_rocm():
    facts = amd_box()
    facts.python.packages["bitsandbytes"].version = "0.45.5"
    finding = one(facts, "bnb.installed")
    assert finding.title == "bitsandbytes 0.45.5 is too old for ROCm (needs ≥ 0.50.0)"
    assert finding.fix == f"{PYTHON} -m pip install -U 'bitsandbytes>=0.50.0'"


@pytest.mark.parametrize(("version", "status"), [("0.50.1rc1", "ok"), ("0.50.0", "ok"), ("0.50.0rc1", "error"), ("0.49.2", "error")])
def test_bitsandbytes_versions_are_ordered_as_pip_orders_them(version, status):
    facts = amd_box()
    facts.python.packages["bitsandbytes"].version = version
    assert one(facts, "bnb.installed").status == status


def test_the_doctor_compares_versions_only_through_compat(monkeypatch):
    """Every ordering of versions in the doctor goes through compat, so a fix there lands in every check."""
    calls = []
    real = compat.version_at_least

    def spy(version, minimum):
        calls.append((version, minimum))
        return real(version, minimum)

    monkeypatch.setattr(compat, "version_at_least", spy)
    run_checks(nvidia_box())
    assert {("3.12.3", "3.10"), ("570.133.07", "525.60.13"), ("0.46.0", "0.43.0")} <= set(calls)


def test_the_doctor_has_no_version_parsing_of_its_own():
    import ast
    import pathlib

    import gpudoctor.doctor

    for path in pathlib.Path(gpudoctor.doctor.__file__).parent.glob("*.py"):
        names = {n.id for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Name)}
        assert not names & {"Version", "LooseVersion", "version_tuple"}, path.name


def test_bitsandbytes_whose_library_fails_to_load():
    facts = nvidia_box()
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1+cu128", cuda_version="12.8", gpu_available=True,
                                  bnb_error="RuntimeError: CUDA Setup failed despite GPU being available")
    finding = one(facts, "bnb.installed")
    assert finding.title.startswith("bitsandbytes 0.46.0 fails to load: RuntimeError")
    assert "--force-reinstall" in finding.fix
    facts.python.live.bnb_error = None
    facts.python.live.bnb_4bit_ok, facts.python.live.bnb_4bit_error = False, "Error invalid device function"
    assert "4-bit (NF4) matmul" in one(facts, "bnb.installed").title


# --- Host and disk -------------------------------------------------------------------------------


def test_low_disk_warns_per_location():
    facts = nvidia_box()
    facts.host.disks[0].free_bytes = 12 * GIB
    found = [f for f in run_checks(facts, only="disk.free") if f.is_problem]
    assert [f.title for f in found] == [
        "only 12.0 GiB free for the model cache (/home/ada/.cache/huggingface/hub); a 7B model needs about 30 GiB"
    ]
    assert found[0].fix.startswith("export HF_HOME=")


def test_unreadable_disk_is_a_warning_not_a_crash():
    facts = nvidia_box()
    facts.host.disks[1].free_bytes, facts.host.disks[1].error = None, "No such file or directory"
    found = [f for f in run_checks(facts, only="disk.free") if f.is_problem]
    assert found[0].status == "warning" and "No such file or directory" in found[0].title


def test_small_shm_and_ram():
    facts = nvidia_box(shm_total_bytes=64 * 1024**2, ram_total_bytes=8 * GIB)
    assert one(facts, "host.shm").title == "/dev/shm is only 64 MiB: data-loader workers crash with 'bus error'"
    assert one(facts, "host.ram").status == "warning"


def test_probe_errors_become_a_warning():
    facts = nvidia_box()
    facts.errors = ["the amd probe crashed: PermissionError: [Errno 13] Permission denied: '/sys/class/drm'"]
    finding = one(facts, "host.probe_errors")
    assert finding.status == "warning"
    assert "Permission denied" in finding.title


# --- Integrated GPUs -----------------------------------------------------------------------------


def test_a_ryzen_igpu_beside_the_real_card_is_set_aside():
    from doctor_facts import rx_7900_xtx

    facts = nvidia_box()
    facts.gpus.append(rx_7900_xtx(index=1, name="AMD Radeon Graphics", total_bytes=512 * 1024**2, gfx_target="gfx1036"))
    assert problems(facts) == {}
    assert one(facts, "gpu.present").title == "1 GPU found: NVIDIA GeForce RTX 4090 (integrated AMD Radeon Graphics set aside)"


def test_an_igpu_alone_is_judged():
    from doctor_facts import rx_7900_xtx

    facts = amd_box()
    facts.gpus = [rx_7900_xtx(name="AMD Radeon 780M", total_bytes=2 * GIB, gfx_target="gfx1103")]
    found = problems(facts)
    assert found["gpu.vram"].status == "warning"
    assert found["amd.gfx_target"].fix.startswith("export HSA_OVERRIDE_GFX_VERSION=11.0.0")


def test_a_host_other_than_ubuntu_24_04_is_a_warning_only():
    facts = nvidia_box(os_id="debian", os_version="12", os_pretty="Debian GNU/Linux 12 (bookworm)")
    finding = one(facts, "host.os")
    assert finding.status == "warning" and finding.title.startswith("Debian GNU/Linux 12 (bookworm) is not Ubuntu 24.04")
    assert "host.os" not in {f.id for f in run_checks(nvidia_box()) if f.status != "ok"}


def test_an_override_already_set_is_acknowledged_or_corrected():
    facts = amd_box(gpu_env={"HSA_OVERRIDE_GFX_VERSION": "11.0.0"})
    facts.gpus[0].gfx_target = "gfx1102"
    good = one(facts, "amd.gfx_target")
    assert good.status == "ok" and "HSA_OVERRIDE_GFX_VERSION=11.0.0 is set" in good.title and good.fix is None
    facts.host.gpu_env["HSA_OVERRIDE_GFX_VERSION"] = "10.3.0"
    wrong = one(facts, "amd.gfx_target")
    assert wrong.status == "error" and wrong.fix == "export HSA_OVERRIDE_GFX_VERSION=11.0.0"  # RDNA2 code on RDNA3: crashes


def test_the_host_probe_records_the_variables_that_steer_the_gpu_stack():
    import dataclasses

    from machines import fixture_sources

    from gpudoctor.probe.host import probe_host

    sources = dataclasses.replace(fixture_sources("rx-7900-xt"), environ={"HSA_OVERRIDE_GFX_VERSION": "11.0.0", "HOME": "/home/x"})
    assert probe_host(sources).gpu_env == {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}
