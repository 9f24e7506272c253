"""The NVIDIA driver checks (uvm, Secure Boot keys, a module missing for the kernel, a half-done upgrade,
a driver too old, Error 804) and the environment checks (*_VISIBLE_DEVICES, LD_LIBRARY_PATH, the CUDA
toolkit, BNB_*_VERSION): each fires on the facts it is about with the fix that works, and stays quiet
on a healthy box. `gpudoctor install-cuda` is the fix only where it fixes something (no driver, or one too old).
"""

from __future__ import annotations

import pytest
from doctor_facts import amd_box, nvidia_box, one, quiet, rtx_4090, rx_7900_xtx

from gpudoctor.doctor import fixes, run_checks
from gpudoctor.doctor.nvidia import dkms_nvidia_builds, ubuntu_branch_for
from gpudoctor.probe.facts import LiveFacts, PciGpu, VendorProbe

CUDA_UNKNOWN = (
    "CUDA initialization: CUDA unknown error - this may be due to an incorrectly set up environment, e.g. changing env "
    "variable CUDA_VISIBLE_DEVICES after program start. Setting the available devices to be zero."
)
NVJITLINK = (
    "ImportError: .../nvidia/cusparse/lib/libcusparse.so.12: undefined symbol: __nvJitLinkCreate_12_8, version libnvJitLink.so.12"
)
MY_CHECKS = ("nvidia.", "env.", "gpu.present")


def my_fixes(facts) -> str:
    """Every fix the NVIDIA and environment checks give on `facts`."""
    return "\n".join(f.fix or "" for f in run_checks(facts) if f.is_problem and f.id.startswith(MY_CHECKS))


def live(**values) -> LiveFacts:
    return LiveFacts(ran=True, **{"torch_version": "2.7.1+cu128", "cuda_version": "12.8", **values})


def driver_not_loaded(**host) -> object:
    """An RTX 4090 whose driver libraries answer 'Driver not loaded': the kernel module is not in the kernel."""
    facts = nvidia_box(**{"loaded_modules": [], **host})
    facts.gpus = []
    facts.probes = [VendorProbe("nvidia", "nvml", "error", "Driver not loaded")]
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2684", driver=None)]
    return facts


@pytest.mark.parametrize("box", [nvidia_box, amd_box], ids=["nvidia", "amd"])
def test_a_healthy_box_gets_nothing_from_these_checks(box):
    assert my_fixes(box()) == ""


# --- nvidia_uvm ----------------------------------------------------------------------------------


def test_uvm_not_loaded_while_cuda_fails_is_an_error_fixed_by_modprobe():
    facts = nvidia_box(loaded_modules=["nvidia", "nvidia_modeset", "nvidia_drm"])
    facts.python.live = live(gpu_available=False, device_count=0, gpu_error=CUDA_UNKNOWN)
    finding = one(facts, "nvidia.uvm")
    assert finding.status == "error" and finding.title.startswith("nvidia_uvm is not loaded, so CUDA cannot start")
    assert finding.fix.startswith(fixes.MAKE_UVM_NODE + "\n")  # loads it and makes /dev/nvidia-uvm (NVIDIA/enroot#106)
    assert fixes.LOAD_UVM in finding.fix
    assert "softdep nvidia post: nvidia-uvm" in finding.fix  # and at every boot (NixOS/nixpkgs#267335)
    assert "install-torch" not in my_fixes(facts)


def test_uvm_not_loaded_is_a_warning_without_the_live_check_and_nothing_when_torch_works():
    facts = nvidia_box(loaded_modules=["nvidia"])
    assert one(facts, "nvidia.uvm").status == "warning"
    facts.python.live = live(gpu_available=True, device_count=1)
    assert quiet(facts, "nvidia.uvm")  # it loaded on first use


def test_a_missing_dev_nvidia_uvm_node_counts_as_uvm_missing():
    facts = nvidia_box(device_nodes=["/dev/nvidia0", "/dev/nvidiactl"])
    facts.python.live = live(gpu_available=False, gpu_error=CUDA_UNKNOWN)
    assert one(facts, "nvidia.uvm").fix.startswith(fixes.MAKE_UVM_NODE)
    facts.host.device_nodes.append("/dev/nvidia-uvm")
    assert one(facts, "nvidia.uvm").fix == fixes.RELOAD_UVM  # the node is there: stuck, not missing


@pytest.mark.parametrize(
    "said",
    [
        {"gpu_available": False, "device_count": 0, "gpu_error": CUDA_UNKNOWN},
        {"gpu_available": True, "error": "RuntimeError: CUDA error: unspecified launch failure"},
    ],
    ids=["unknown-error", "launch-failure"],
)
def test_uvm_stuck_after_suspend_is_reloaded_not_reinstalled(said):
    facts = nvidia_box(loaded_modules=["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"])
    facts.python.live = live(**said)
    finding = one(facts, "nvidia.uvm")
    assert finding.status == "error" and "suspend/resume" in finding.detail
    assert finding.fix == "sudo rmmod nvidia_uvm && sudo modprobe nvidia_uvm   # close every CUDA program first; or: sudo reboot"


def test_uvm_check_says_nothing_when_the_driver_itself_is_down_or_gpus_are_hidden():
    assert quiet(driver_not_loaded(), "nvidia.uvm")
    facts = nvidia_box(gpu_env={"CUDA_VISIBLE_DEVICES": ""})
    facts.python.live = live(gpu_available=False, gpu_error=CUDA_UNKNOWN)
    assert quiet(facts, "nvidia.uvm")  # env.visible_devices says why


# --- Secure Boot -------------------------------------------------------------------------------


def test_module_signed_by_a_key_never_enrolled_gets_the_mok_import():
    facts = driver_not_loaded(secure_boot=True, nvidia_module_signed=True, nvidia_module_signer="DKMS module signing key",
                              mok_enrolled=["Canonical Ltd. Master Certificate Authority"])
    finding = one(facts, "nvidia.secure_boot")
    assert finding.status == "error" and "'DKMS module signing key', a key this machine has not enrolled" in finding.title
    assert finding.fix.startswith("sudo mokutil --import /var/lib/shim-signed/mok/MOK.der")
    assert "/var/lib/dkms/mok.pub" in finding.fix and "turn Secure Boot off" in finding.fix
    present = one(facts, "gpu.present")
    assert present.title == "No usable GPU: Secure Boot refuses the NVIDIA kernel module (its signing key is not enrolled)"
    assert present.fix is None
    assert fixes.INSTALL_CUDA not in my_fixes(facts)


def test_a_key_waiting_to_be_enrolled_needs_only_the_reboot_and_the_blue_screen():
    facts = driver_not_loaded(secure_boot=True, nvidia_module_signer="ada-desktop Secure Boot Module Signature key",
                              mok_pending=["ada-desktop Secure Boot Module Signature key"])
    finding = one(facts, "nvidia.secure_boot")
    assert "waits to be enrolled at the next boot" in finding.title
    assert finding.fix.startswith("sudo reboot   # then pick 'Enroll MOK'")


def test_an_enrolled_or_canonical_key_is_not_a_secure_boot_problem():
    enrolled = driver_not_loaded(secure_boot=True, nvidia_module_signer="DKMS module signing key",
                                 mok_enrolled=["CN=DKMS module signing key"])
    assert quiet(enrolled, "nvidia.secure_boot")
    canonical = driver_not_loaded(secure_boot=True, nvidia_module_signer="Canonical Ltd. Kernel Module Signing")
    assert quiet(canonical, "nvidia.secure_boot")
    loaded = nvidia_box(secure_boot=True, nvidia_module_signer="DKMS module signing key")  # the kernel took it
    assert quiet(loaded, "nvidia.secure_boot")


def test_unsigned_module_built_by_dkms_is_rebuilt_signed_then_its_key_enrolled():
    facts = driver_not_loaded(secure_boot=True, nvidia_module_signed=False,
                              dkms_status=["nvidia/570.133.07, 6.8.0-60-generic, x86_64: installed"])
    fix = one(facts, "nvidia.secure_boot").fix
    lines = fix.splitlines()
    assert lines[0].startswith("sudo update-secureboot-policy --new-key")
    assert lines[1].startswith("sudo dkms build --force nvidia/570.133.07 && sudo dkms install --force nvidia/570.133.07")
    assert lines[2].startswith("sudo mokutil --import /var/lib/shim-signed/mok/MOK.der")


def test_unsigned_module_of_unknown_origin_gets_ubuntus_signed_driver():
    facts = driver_not_loaded(secure_boot=True, nvidia_module_signed=False)
    fix = one(facts, "nvidia.secure_boot").fix
    assert fix.startswith("sudo ubuntu-drivers install") and "sudo nvidia-uninstall" in fix and "Secure Boot off" in fix
    assert one(facts, "gpu.present").title == "No usable GPU: Secure Boot refuses the unsigned NVIDIA kernel module"


# --- a module missing for the running kernel -----------------------------------------------------


def test_a_kernel_without_headers_gets_the_headers_and_dkms_not_install_cuda():
    facts = driver_not_loaded(kernel="6.8.0-45-generic", kernel_headers=False,
                              dkms_status=["nvidia/570.133.07, 6.8.0-40-generic, x86_64: installed"])
    finding = one(facts, "nvidia.kernel_module")
    assert finding.status == "error"
    assert finding.title == "kernel 6.8.0-45-generic has no headers installed, so DKMS could not build the NVIDIA module for it"
    assert "DKMS built it for 6.8.0-40-generic only" in finding.detail
    assert finding.fix.splitlines()[:3] == [fixes.KERNEL_HEADERS, fixes.DKMS_BUILD, fixes.REBOOT]
    present = one(facts, "gpu.present")
    assert present.title == "No usable GPU: the NVIDIA kernel module is not built for the running kernel" and present.fix is None
    assert fixes.INSTALL_CUDA not in my_fixes(facts)


def test_headers_missing_and_no_dkms_record_still_names_the_headers():
    facts = driver_not_loaded(kernel="6.8.0-45-generic", kernel_headers=False)
    assert one(facts, "nvidia.kernel_module").fix.startswith("sudo apt install linux-headers-$(uname -r)")


def test_module_built_for_another_kernel_only_is_rebuilt_for_this_one():
    facts = driver_not_loaded(kernel="6.11.0-26-generic", kernel_headers=True,
                              dkms_status=["nvidia, 570.133.07, 6.8.0-60-generic, x86_64: installed"])  # dkms 2 form
    finding = one(facts, "nvidia.kernel_module")
    assert finding.title == "the NVIDIA kernel module is not built for the running kernel 6.11.0-26-generic"
    assert finding.fix.startswith(fixes.DKMS_BUILD + "\nsudo depmod -a")
    assert "sudo apt install --reinstall nvidia-dkms-570" in finding.fix


def test_a_module_that_exists_for_this_kernel_is_not_called_missing():
    assert quiet(driver_not_loaded(kernel_headers=False, nvidia_module_signed=True), "nvidia.kernel_module")
    built = driver_not_loaded(kernel="6.8.0-60-generic", dkms_status=["nvidia/570.133.07, 6.8.0-60-generic, x86_64: installed"])
    assert quiet(built, "nvidia.kernel_module")
    assert quiet(nvidia_box(kernel_headers=False), "nvidia.kernel_module")  # loaded: prebuilt modules need no headers


def test_dkms_status_lines_in_both_formats():
    facts = nvidia_box(dkms_status=[
        "nvidia/570.133.07, 6.8.0-60-generic, x86_64: installed",
        "nvidia, 430.14, 4.19.0_1, x86_64: installed",
        "nvidia/575.51.02: added",
        "v4l2loopback/0.12.7, 6.8.0-60-generic, x86_64: installed",
    ])
    assert [(b.version, b.kernel, b.installed) for b in dkms_nvidia_builds(facts)] == [
        ("570.133.07", "6.8.0-60-generic", True), ("430.14", "4.19.0_1", True), ("575.51.02", None, False)]


def test_driver_not_loaded_for_no_known_reason_gets_modprobe_not_a_reinstall():
    finding = one(driver_not_loaded(), "gpu.present")
    assert finding.fix.startswith("sudo modprobe nvidia") and fixes.INSTALL_CUDA not in finding.fix


# --- driver/library mismatch -------------------------------------------------------------------


def mismatch(**host):
    facts = driver_not_loaded(**{"loaded_modules": ["nvidia", "nvidia_uvm"], "nvidia_module_version": "520.56.06", **host})
    facts.probes = [VendorProbe("nvidia", "nvml", "error", "Driver/library version mismatch")]
    facts.pci_gpus[0].driver = "nvidia"
    return facts


def test_mismatch_where_the_next_boot_loads_the_same_module_finishes_the_upgrade():
    facts = mismatch(kernel="6.8.0-60-generic", dkms_status=["nvidia/520.56.06, 6.8.0-60-generic, x86_64: installed"])
    finding = one(facts, "nvidia.library_mismatch")
    assert finding.fix == "sudo apt update && sudo apt install --fix-broken && sudo reboot"  # a reboot alone did not help
    assert "a reboot loads the same old module again" in finding.detail


def test_mismatch_with_the_new_module_built_is_a_reboot():
    facts = mismatch(kernel="6.8.0-60-generic", dkms_status=["nvidia/525.85.12, 6.8.0-60-generic, x86_64: installed"])
    assert one(facts, "nvidia.library_mismatch").fix == "sudo reboot"


def test_mismatch_without_dkms_facts_says_reboot_then_what_if_it_persists():
    fix = one(mismatch(), "nvidia.library_mismatch").fix
    assert fix.startswith("sudo reboot\n") and "sudo apt install --fix-broken" in fix
    assert fixes.INSTALL_CUDA not in my_fixes(mismatch())


# --- driver too old / Error 804 ----------------------------------------------------------------


def test_driver_too_old_names_the_ubuntu_branch_and_install_cudas_driver_flag():
    facts = nvidia_box()
    facts.gpus[0].driver_version, facts.gpus[0].cuda_driver_version = "470.256.02", "11.4"
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.1.0+cu121", "cu121"
    finding = one(facts, "nvidia.driver_vs_torch")
    assert finding.title == "driver 470.256.02 is too old for torch 2.1.0+cu121 (CUDA 12.1 needs driver ≥ 525.60.13)"
    # install-cuda leaves an installed driver alone without --driver: the plain command would change nothing
    assert finding.fix.startswith("gpudoctor install-cuda --driver 535 ")
    assert fixes.INSTALL_TORCH in finding.fix


def test_driver_too_old_seen_only_through_its_cuda_version_and_the_live_torch():
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(driver_version=None, cuda_driver_version="11.0")
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.1.0a0", None
    facts.python.live = LiveFacts(ran=True, cuda_version="12.1", gpu_available=False,
                                  gpu_error="CUDA initialization: The NVIDIA driver on your system is too old (found version 11000).")
    finding = one(facts, "nvidia.driver_vs_torch")
    assert finding.status == "error" and finding.title.startswith("the driver (CUDA 11.0) is too old for torch 2.1.0a0")
    assert "--driver 535" in finding.fix


def test_the_branch_is_the_oldest_that_runs_the_cuda_natively_and_the_gpu():
    facts = nvidia_box()
    assert [ubuntu_branch_for(cuda, facts) for cuda in ("11.8", "12.1", "12.4", "12.6", "12.8", "13.0")] == [
        "535", "535", "550", "570", "570", "580"]
    facts.gpus[0].compute_capability = "12.0"  # Blackwell needs 570
    assert ubuntu_branch_for("12.1", facts) == "570"


def test_error_804_on_a_geforce_card_is_the_driver_not_torch():
    facts = nvidia_box()
    facts.gpus[0].driver_version, facts.gpus[0].cuda_driver_version = "525.147.05", "12.0"
    facts.gpus[0].name = "NVIDIA GeForce RTX 3090"
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.1.0+cu121", "cu121"
    facts.python.live = live(torch_version="2.1.0+cu121", cuda_version="12.1", gpu_available=False,
                             gpu_error="Unexpected error from cudaGetDeviceCount(). Error 804: forward compatibility was attempted on non supported HW")
    finding = one(facts, "nvidia.driver_vs_torch")
    assert finding.status == "error" and finding.title.startswith("CUDA fails with Error 804: driver 525.147.05 (it runs CUDA 12.0 natively)")
    assert finding.fix.startswith("gpudoctor install-cuda --driver 535 ")


# --- *_VISIBLE_DEVICES ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "", "-1", "nvidia"])
def test_cuda_visible_devices_naming_no_gpu_hides_them_all(value):
    facts = nvidia_box(gpu_env={"CUDA_VISIBLE_DEVICES": value})
    finding = one(facts, "env.visible_devices")
    assert finding.status == "error" and finding.title.endswith("hides every GPU from torch")
    assert finding.fix.startswith("unset CUDA_VISIBLE_DEVICES   # torch then sees every GPU\n")
    assert "export CUDA_VISIBLE_DEVICES=0" in finding.fix and "~/.bashrc" in finding.fix


def test_cuda_visible_devices_that_exist_are_fine_and_a_bad_tail_warns():
    facts = nvidia_box(gpu_env={"CUDA_VISIBLE_DEVICES": "0"})
    assert one(facts, "env.visible_devices").title == "CUDA_VISIBLE_DEVICES=0: torch sees 1 of this machine's 1 GPU(s)"
    facts.gpus.append(rtx_4090(index=1))
    facts.host.gpu_env["CUDA_VISIBLE_DEVICES"] = "1,4,0"
    finding = one(facts, "env.visible_devices")
    assert finding.status == "warning" and "names GPU '4'" in finding.title
    facts.host.gpu_env["CUDA_VISIBLE_DEVICES"] = "GPU-8f0e2b1c-aaaa-bbbb-cccc-0123456789ab"
    assert one(facts, "env.visible_devices").status == "ok"  # a UUID: the probe has none to compare


def test_rocr_and_hip_both_set_count_twice_on_amd():
    facts = amd_box(gpu_env={"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "1"})
    facts.gpus.append(rx_7900_xtx(index=1))
    rocr, hip = run_checks(facts, only="env.visible_devices")
    assert rocr.status == "ok" and hip.status == "error"
    assert "the 1 GPU(s) ROCR_VISIBLE_DEVICES left" in hip.title
    assert hip.fix.startswith("unset ROCR_VISIBLE_DEVICES")


def test_no_visible_devices_variable_no_finding():
    assert quiet(nvidia_box(), "env.visible_devices") and quiet(amd_box(), "env.visible_devices")


# --- LD_LIBRARY_PATH ---------------------------------------------------------------------------


def test_a_toolkit_folder_in_ld_library_path_breaking_torch_is_taken_out():
    facts = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/usr/local/cuda-12.4/lib64"}, cuda_toolkit_version="12.4")
    facts.python.live = LiveFacts(ran=True, torch_error=NVJITLINK)
    finding = one(facts, "env.ld_library_path")
    assert finding.status == "error" and "undefined symbol: __nvJitLinkCreate_12_8" in finding.title
    assert finding.fix.startswith("unset LD_LIBRARY_PATH")
    assert "install-torch" not in finding.fix and "install-cuda" not in finding.fix


def test_ld_library_path_keeps_the_folders_that_do_not_shadow():
    facts = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/opt/mylib:/usr/local/cuda/targets/x86_64-linux/lib:/home/ada/miniconda3/lib"})
    finding = one(facts, "env.ld_library_path")
    assert finding.status == "warning"  # no live check: nothing failed yet
    assert finding.fix.startswith("export LD_LIBRARY_PATH=/opt/mylib   # the same without /usr/local/cuda/targets/x86_64-linux/lib, /home/ada/miniconda3/lib")


def test_ld_library_path_that_torch_survived_is_ok_and_conda_torch_keeps_its_lib():
    facts = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"})
    facts.python.live = live(gpu_available=True, device_count=1)
    assert one(facts, "env.ld_library_path").status == "ok"
    conda = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/home/ada/miniconda3/envs/ft/lib"})
    conda.python.executable, conda.python.env_kind = "/home/ada/miniconda3/envs/ft/bin/python", "conda"
    assert quiet(conda, "env.ld_library_path")
    assert quiet(amd_box(gpu_env={"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}), "env.ld_library_path")  # ROCm torch


# --- the CUDA toolkit --------------------------------------------------------------------------


def test_toolkit_of_another_major_than_torch_warns_with_torch_for_the_toolkit():
    facts = nvidia_box(cuda_toolkit_version="12.1", cuda_toolkit_path="/usr/local/cuda-12.1")
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.0.1+cu117", "cu117"
    finding = one(facts, "env.cuda_toolkit")
    assert finding.status == "warning"  # training with prebuilt wheels still works
    assert finding.title == "CUDA toolkit 12.1 at /usr/local/cuda-12.1 differs from torch's CUDA 11.7: building CUDA extensions fails"
    assert "--index-url https://download.pytorch.org/whl/cu121" in finding.fix and "--no-build-isolation" in finding.fix
    assert "install-cuda" not in finding.fix  # NVIDIA's Ubuntu 24.04 repository has no CUDA 11.7


def test_old_toolkit_under_new_torch_gets_the_matching_toolkit_and_cuda_home():
    facts = nvidia_box(cuda_toolkit_version="11.8")
    lines = one(facts, "env.cuda_toolkit").fix.splitlines()
    assert lines[0].startswith("gpudoctor install-cuda --toolkit 12.8   # nvcc 12.8: NVIDIA's cuda-toolkit-12-8")
    assert lines[1] == "export CUDA_HOME=/usr/local/cuda-12.8 PATH=/usr/local/cuda-12.8/bin:$PATH   # builds use this nvcc"
    assert "whl/cu118" in lines[2]


def test_toolkit_of_torchs_major_is_ok():
    for toolkit in ("12.8.1", "12.0"):
        assert one(nvidia_box(cuda_toolkit_version=toolkit), "env.cuda_toolkit").status == "ok"
    assert quiet(amd_box(cuda_toolkit_version="12.8"), "env.cuda_toolkit")


# --- BNB_CUDA_VERSION / BNB_ROCM_VERSION -------------------------------------------------------


def test_bnb_cuda_version_set_while_bitsandbytes_fails_is_unset():
    facts = nvidia_box(gpu_env={"BNB_CUDA_VERSION": "124"})
    facts.gpus[0].compute_capability = "7.0"
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.4.0+cu124", "cu124"
    facts.python.live = live(torch_version="2.4.0+cu124", cuda_version="12.4", gpu_available=True, bnb_version="0.43.3",
                             bnb_error="Could not load bitsandbytes native library: libbitsandbytes_cpu.so: cannot open shared object file")
    finding = one(facts, "env.bnb_version")
    assert finding.status == "error" and finding.title.startswith("BNB_CUDA_VERSION=124 makes bitsandbytes load libbitsandbytes_cuda124.so")
    assert "names torch's CUDA 12.4 already" in finding.detail
    assert finding.fix.startswith("unset BNB_CUDA_VERSION")


def test_bnb_cuda_version_disagreeing_with_torch_warns_until_bitsandbytes_proves_it_works():
    facts = nvidia_box(gpu_env={"BNB_CUDA_VERSION": "121"})
    assert one(facts, "env.bnb_version").status == "warning"
    facts.python.live = live(gpu_available=True, bnb_version="0.46.0", bnb_4bit_ok=True)
    assert one(facts, "env.bnb_version").status == "ok"
    assert quiet(nvidia_box(gpu_env={"BNB_CUDA_VERSION": ""}), "env.bnb_version")  # empty: bitsandbytes ignores it


def test_bnb_rocm_version_against_torchs_rocm():
    facts = amd_box(gpu_env={"BNB_ROCM_VERSION": "64"})
    facts.python.packages["torch"].version, facts.python.packages["torch"].flavour = "2.7.1+rocm6.3", "rocm6.3"
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1+rocm6.3", hip_version="6.3", gpu_available=True,
                                  bnb_error="Configured ROCm binary not found at .../libbitsandbytes_rocm64.so")
    finding = one(facts, "env.bnb_version")
    assert finding.status == "error" and finding.fix.startswith("unset BNB_ROCM_VERSION")
    assert one(amd_box(gpu_env={"BNB_ROCM_VERSION": "64"}), "env.bnb_version").status == "ok"  # torch rocm6.4: same


# --- install-cuda only where it fixes something --------------------------------------------------


def test_install_cuda_is_offered_for_no_driver_and_a_driver_too_old_only():
    no_driver = driver_not_loaded()
    no_driver.probes = [VendorProbe("nvidia", "nvml", "absent", "NVML shared library (libnvidia-ml.so.1) not found")]
    assert fixes.INSTALL_CUDA in my_fixes(no_driver)
    nouveau_with_driver = driver_not_loaded(loaded_modules=["nouveau"])
    nouveau_with_driver.pci_gpus[0].driver = "nouveau"
    for facts in (nouveau_with_driver, mismatch(), driver_not_loaded(kernel_headers=False),
                  driver_not_loaded(secure_boot=True, nvidia_module_signed=False)):
        assert fixes.INSTALL_CUDA not in my_fixes(facts)
