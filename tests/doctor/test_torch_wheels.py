"""Doctor rules taken from real cases: the same torch release on another CUDA, PTX that does not serve a card, flash-attn's
release, the nvidia-wheel library first on LD_LIBRARY_PATH, a stale DKMS tree, nvidia_uvm with no nvidia-modprobe, nova_core.

Each expectation is the published fact it rests on (PyTorch's previous-versions page, CUDA's driver table,
flash-attention's release tags), not what the code printed.
"""

from __future__ import annotations

import pytest
from doctor_facts import amd_box, nvidia_box, one, rtx_4090

from gpudoctor.doctor import fixes
from gpudoctor.doctor.torch_wheels import release_tags, same_release_command, same_release_tag, tag_serves
from gpudoctor.probe.facts import GpuFacts, LiveFacts, PackageFacts, PciGpu, VendorProbe


def gpu(capability: str, *, cuda: str | None = None, driver: str | None = None) -> GpuFacts:
    card = rtx_4090()
    card.compute_capability, card.cuda_driver_version, card.driver_version = capability, cuda, driver
    return card


@pytest.mark.parametrize(
    "tag, device, serves",
    [
        ("cu102", "sm_80", False),  # Ampere needs CUDA 11.0
        ("cu111", "sm_86", True),
        ("cu110", "sm_86", False),  # 8.6 arrived in CUDA 11.1
        ("cu126", "sm_120", False),  # Blackwell needs 12.8 (pytorch/pytorch#153944)
        ("cu128", "sm_120", True),
        ("cu128", "sm_61", False),  # 12.8 wheels dropped Pascal (pytorch/pytorch#157517)
        ("cu130", "sm_70", False),  # CUDA 13 compiles for >= 7.5 only
        ("cu118", "sm_61", True),
    ],
)
def test_a_cuda_build_carries_the_archs_its_compiler_targets(tag, device, serves):
    assert tag_serves(tag, device) is serves


def test_same_release_unknown_driver_takes_the_oldest_build_with_the_card():
    assert same_release_tag("1.10.1", None, "sm_80") == "cu111"  # andreimargeloiu/WPFS#3: 1.10.1+cu111


def test_same_release_with_a_driver_takes_the_newest_build_it_runs():
    # CUDA 10.x has no minor-version compatibility: a CUDA 10.1 driver runs cu101, not cu102 (googlecolab/colabtools#1685)
    assert same_release_tag("1.7.0", gpu("7.5", cuda="10.1"), "sm_75") == "cu101"
    assert same_release_tag("2.3.1", gpu("8.9", cuda="12.2"), "sm_89") == "cu121"
    assert same_release_tag("2.3.1", gpu("8.9", cuda="11.4"), "sm_89") == "cu118"  # CUDA 11 minor compatibility
    assert same_release_tag("2.5.1", gpu("12.0", cuda="12.8"), "sm_120") is None  # no 2.5 build carries Blackwell


def test_the_pip_line_pins_the_release_and_its_build():
    old = same_release_command("/v/bin/python", "1.10.1", "cu111")
    assert old.startswith("/v/bin/python -m pip install --force-reinstall torch==1.10.1+cu111 -f https://download.pytorch.org/whl/torch_stable.html")
    assert same_release_command(None, "2.3.1+cu121", "cu118") == (
        "python3 -m pip install --force-reinstall torch==2.3.1 --index-url https://download.pytorch.org/whl/cu118")
    assert release_tags("2.7.1+cu128") == ["cu118", "cu126", "cu128"]


def test_no_kernels_for_a_pinned_release_offers_its_build_for_the_card():
    facts = nvidia_box()
    facts.gpus = [gpu("8.0")]
    facts.gpus[0].name = "NVIDIA A100-SXM4-80GB"
    facts.python.packages["torch"] = PackageFacts("torch", "1.10.1", None)
    facts.python.live = LiveFacts(ran=True, torch_version="1.10.1", cuda_version="10.2", gpu_available=True,
                                  arch_list=["sm_37", "sm_50", "sm_60", "sm_70"], device_arch="sm_80")
    finding = one(facts, "torch.kernels")
    assert finding.status == "error"
    assert "torch==1.10.1+cu111 -f https://download.pytorch.org/whl/torch_stable.html" in finding.fix


def test_a_driver_older_than_a_cuda_10_build_is_named_with_the_build_for_it():
    facts = nvidia_box()
    facts.gpus = [gpu("7.5", cuda="10.1")]
    facts.gpus[0].driver_version = None
    facts.python.packages["torch"] = PackageFacts("torch", "1.7.0", None)
    facts.python.live = LiveFacts(ran=True, torch_version="1.7.0", cuda_version="10.2", gpu_available=False,
                                  gpu_error="The NVIDIA driver on your system is too old (found version 10010).")
    finding = one(facts, "nvidia.driver_vs_torch")
    assert finding.status == "error" and "CUDA 10.1" in finding.title and "CUDA 10.2" in finding.title
    assert "torch==1.7.0+cu101" in finding.fix


def test_torch_saying_the_driver_is_too_old_is_believed_without_version_facts():
    facts = nvidia_box()
    facts.gpus[0].driver_version = facts.gpus[0].cuda_driver_version = None
    facts.python.live = LiveFacts(ran=True, torch_version="2.7.1+cu128", cuda_version="12.8", gpu_available=False,
                                  gpu_error="The NVIDIA driver on your system is too old (found version 12020).")
    assert one(facts, "nvidia.driver_vs_torch").status == "error"


def flash_attn_box(version: str, torch: str = "2.1.2"):
    facts = nvidia_box()
    facts.python.packages["torch"] = PackageFacts("torch", torch, None)
    facts.python.packages["flash-attn"] = PackageFacts("flash-attn", version, None)
    facts.python.live = LiveFacts(ran=True, gpu_available=True, import_errors={
        "flash_attn": "ImportError: flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: _ZN3c104impl3cow11cow_deleterEPv"})
    return facts


def test_flash_attn_whose_wheel_should_fit_steps_back_one_release():
    fix = one(flash_attn_box("2.5.8"), "python.imports").fix
    assert "'flash-attn==2.5.7'" in fix  # Dao-AILab/flash-attention#950
    assert "FLASH_ATTENTION_FORCE_BUILD=TRUE" in fix and "'flash-attn==2.5.8'" in fix  # or rebuild it


def test_flash_attn_newer_than_every_wheel_for_this_torch_pins_the_last_one():
    fix = one(flash_attn_box("2.8.3", torch="2.1.2"), "python.imports").fix
    assert "'flash-attn==2.7.4'" in fix and "FORCE_BUILD" not in fix


def test_a_library_named_in_the_loader_error_is_put_first_as_the_alternative():
    facts = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"})
    facts.python.live = LiveFacts(ran=True, torch_error=(
        "ImportError: /usr/local/lib/python3.10/dist-packages/torch/lib/../../nvidia/cusparse/lib/libcusparse.so.12: "
        "undefined symbol: __nvJitLinkAddData_12_1, version libnvJitLink.so.12"))
    fix = one(facts, "env.ld_library_path").fix
    assert fix.splitlines()[0].startswith("unset LD_LIBRARY_PATH")
    assert "export LD_LIBRARY_PATH=/usr/local/lib/python3.10/dist-packages/nvidia/nvjitlink/lib:$LD_LIBRARY_PATH" in fix


def test_an_old_toolkit_names_nvcc_and_keeps_the_pinned_torch():
    facts = nvidia_box(cuda_toolkit_version="11.8")
    facts.python.packages["torch"] = PackageFacts("torch", "2.3.1+cu121", "cu121")
    facts.python.live = LiveFacts(ran=True, torch_version="2.3.1+cu121", cuda_version="12.1", gpu_available=True)
    fix = one(facts, "env.cuda_toolkit").fix
    assert fix.startswith("# nvcc 12.1 to match torch") and "conda install -c nvidia cuda-nvcc=12.1" in fix
    assert "torch==2.3.1 --index-url https://download.pytorch.org/whl/cu118" in fix  # vllm-project/vllm (nvcc 11.8)


def stale_dkms_box(sources: list[str]):
    facts = nvidia_box(loaded_modules=[], kernel="4.17.14-202.fc28.x86_64", kernel_headers=True, dkms_nvidia_sources=sources,
                       dkms_status=["Error! Could not locate dkms.conf file.",
                                    "File: /var/lib/dkms/nvidia/390.48/source/dkms.conf does not exist."])
    facts.gpus = []
    facts.probes = [VendorProbe("nvidia", "nvml", "error", "Driver not loaded")]
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x1b80", driver=None)]
    return facts


def test_a_stale_dkms_tree_is_named_and_removed_before_the_installed_driver_is_built():
    finding = one(stale_dkms_box(["390.48", "396.45"]), "nvidia.kernel_module")  # negativo17/nvidia-driver#56
    assert finding.status == "error" and "/var/lib/dkms/nvidia/390.48" in finding.title
    lines = finding.fix.splitlines()
    assert lines[0].startswith("sudo rm -rf /var/lib/dkms/nvidia/390.48") and lines[1] == "sudo dkms install nvidia/396.45"
    assert "<version>" in one(stale_dkms_box([]), "nvidia.kernel_module").fix  # no source folder seen: says where to look


@pytest.mark.parametrize("modprobe, status", [("missing", "error"), ("not-setuid", "error"), ("setuid", "warning"), (None, "warning")])
def test_uvm_not_loaded_is_an_error_when_nothing_can_load_it_on_first_use(modprobe, status):
    facts = nvidia_box(loaded_modules=["nvidia"], nvidia_modprobe=modprobe)  # NVIDIA/enroot#106
    finding = one(facts, "nvidia.uvm")
    assert finding.status == status and finding.fix.startswith(fixes.MAKE_UVM_NODE)


def test_a_vega_apu_gets_the_gfx900_override():
    facts = amd_box()
    facts.gpus[0].gfx_target, facts.gpus[0].pci_device_id, facts.gpus[0].name = "gfx90c", "0x15e7", "AMD Radeon Graphics"
    fix = one(facts, "amd.gfx_target").fix
    assert "HSA_OVERRIDE_GFX_VERSION=9.0.0" in fix and "setup.py develop" not in fix  # ROCm/hip#3282


def kernels_box(capability: str, cuda: str, arch: list[str], said: str | None = None):
    facts = nvidia_box()
    facts.gpus = [gpu(capability, cuda="12.9")]
    facts.python.live = LiveFacts(ran=True, torch_version=f"2.7.0+cu{cuda.replace('.', '')}", cuda_version=cuda,
                                  gpu_available=True, arch_list=arch, gpu_error=said)
    return facts


def test_ptx_of_an_older_arch_does_not_serve_a_card_newer_than_the_builds_cuda():
    # CorentinJ/Real-Time-Voice-Cloning#584: sm_86 on a CUDA 10.2 build whose list ends sm_75 compute_37
    finding = one(kernels_box("8.6", "10.2", ["sm_37", "sm_60", "sm_70", "sm_75", "compute_37"]), "torch.kernels")
    assert finding.status == "error"


def test_torch_saying_not_compatible_outweighs_ptx():
    said = "NVIDIA GeForce RTX 5080 with CUDA capability sm_120 is not compatible with the current PyTorch installation."
    facts = kernels_box("12.0", "11.8", ["sm_50", "sm_80", "sm_86", "sm_90", "compute_37"], said)  # pytorch/pytorch#153944
    assert one(facts, "torch.kernels").status == "error"


def test_ptx_still_serves_a_card_the_builds_cuda_knows():
    finding = one(kernels_box("9.0", "12.1", ["sm_80", "sm_86", "compute_86"]), "torch.kernels")
    assert finding.status == "ok" and "as PTX" in finding.title


def test_nova_core_holding_the_card_is_blacklisted_itself():
    facts = nvidia_box(loaded_modules=["nova_core"])  # beclab/Olares#3963
    facts.gpus = []
    facts.probes = [VendorProbe("nvidia", "nvml", "error", "Driver not loaded")]
    facts.pci_gpus = [PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2684", driver="NovaCore")]
    finding = one(facts, "nvidia.nouveau")
    assert finding.status == "error" and "nova_core" in finding.title
    assert finding.fix.startswith("printf 'blacklist nova_core") and "nova_core driver holds" in one(facts, "gpu.present").title
