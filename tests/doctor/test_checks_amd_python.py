"""The checks that name a failure's cause and the fix that works for it: kernels for the GPU (CUDA arch
lists, AMD gfx targets and HSA_OVERRIDE_GFX_VERSION), an APU's iGPU, a live check that died, Python
environments and package combinations, build tools for Triton. Each fires on its facts, gives the exact
fix, and stays quiet on a healthy box."""

from __future__ import annotations

import pytest
from doctor_facts import GIB, PYTHON, amd_box, nvidia_box, one, quiet, rtx_4090, rx_7900_xtx

from gpudoctor.cli.check import report_block
from gpudoctor.doctor import diagnose, fixes, run_checks
from gpudoctor.doctor.amd import gfx_version, target_of
from gpudoctor.doctor.live import serves, sm_of
from gpudoctor.doctor.registry import REPORT_FIX
from gpudoctor.probe.facts import LiveFacts, PackageFacts, PciGpu, VendorProbe

ROCM_WHEEL = ["gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1200", "gfx1201"]


def rocm_live(arch_list=None, **values) -> LiveFacts:
    values = {"torch_version": "2.7.1+rocm6.4", "hip_version": "6.4", "gpu_available": True, "device_count": 1, **values}
    return LiveFacts(ran=True, arch_list=arch_list, **values)


def cuda_live(arch_list=None, **values) -> LiveFacts:
    values = {"torch_version": "2.7.1+cu128", "cuda_version": "12.8", "gpu_available": True, "device_count": 1, **values}
    return LiveFacts(ran=True, arch_list=arch_list, **values)


def amd_card(target: str, pci_device_id: str | None = None, **env) -> object:
    facts = amd_box(gpu_env=env)
    facts.gpus[0].gfx_target, facts.gpus[0].pci_device_id = target, pci_device_id
    return facts


def test_healthy_boxes_say_nothing_new():
    for facts in (nvidia_box(), amd_box()):
        found = {f.id for f in run_checks(facts) if f.is_problem}
        assert found == set()
    for check_id in ("torch.kernels", "torch.live_crash", "python.imports", "python.libraries", "python.environment",
                     "python.build_tools", "amd.igpu_visible"):
        assert quiet(nvidia_box(), check_id) and quiet(amd_box(), check_id), check_id


# --- AMD: the gfx target against the build's code, and HSA_OVERRIDE_GFX_VERSION (one rule) -------------


@pytest.mark.parametrize(("target", "version"), [("gfx1100", "11.0.0"), ("gfx1030", "10.3.0"), ("gfx90a", "9.0.10"), ("gfx942", "9.4.2")])
def test_gfx_names_and_override_values_convert_both_ways(target, version):
    assert gfx_version(target) == version and target_of(version) == target
    assert target_of("banana") is None and target_of("10.3.16") is None


def test_a_card_the_build_has_no_code_for_gets_its_override_as_an_error():
    facts = amd_card("gfx1032")
    facts.python.live = rocm_live(ROCM_WHEEL)
    finding = one(facts, "amd.gfx_target")
    assert (finding.status, finding.title) == (
        "error", "GPU 0 (AMD Radeon RX 7900 XTX) is gfx1032, torch 2.7.1+rocm6.4 carries no code for it")
    assert finding.fix.startswith("export HSA_OVERRIDE_GFX_VERSION=10.3.0   # add it to ~/.bashrc")
    assert "set -Ux HSA_OVERRIDE_GFX_VERSION 10.3.0" in finding.fix  # fish users: an exported universal variable


def test_without_an_arch_list_an_unlisted_target_is_a_warning_until_the_runtime_says_so():
    facts = amd_card("gfx1031")
    assert one(facts, "amd.gfx_target").status == "warning"
    facts.python.live = rocm_live(signal="SIGABRT", stderr_tail="hipErrorNoBinaryForGpu: Unable to find code object for all current devices!")
    finding = one(facts, "amd.gfx_target")
    assert finding.status == "error" and "hipErrorNoBinaryForGpu" in finding.detail
    assert finding.fix.startswith("export HSA_OVERRIDE_GFX_VERSION=10.3.0")


@pytest.mark.parametrize("target", ["gfx1102", "gfx1101"])
def test_a_build_that_carries_the_target_needs_no_override(target):
    facts = amd_card(target)
    facts.python.live = rocm_live(ROCM_WHEEL)
    finding = one(facts, "amd.gfx_target")
    assert (finding.status, finding.title) == ("ok", f"GPU 0 is {target}, and torch 2.7.1+rocm6.4 carries code for it")


def test_rdna1_which_no_override_serves_gets_torch_built_for_it():
    facts = amd_card("gfx1010", "0x731f")
    facts.python.live = rocm_live(["gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100"],
                                  gpu_error="HIP error: invalid device function")
    finding = one(facts, "amd.gfx_target")
    assert finding.status == "error"
    assert "PYTORCH_ROCM_ARCH=gfx1010 python setup.py develop" in finding.fix
    assert "HSA_OVERRIDE" not in finding.fix


def test_a_supported_target_an_old_build_lacks_gets_a_newer_wheel():
    facts = amd_card("gfx1201")
    facts.python.live = rocm_live(["gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100"])
    finding = one(facts, "amd.gfx_target")
    assert finding.status == "error" and finding.fix.startswith(fixes.INSTALL_TORCH)


def test_an_override_on_a_card_that_needs_none_is_unset():
    crash = one(amd_card("gfx1100", HSA_OVERRIDE_GFX_VERSION="10.3.0"), "amd.gfx_target")
    assert crash.status == "error" and "ROCm loads gfx1030 code on a gfx1100 card" in crash.title
    assert crash.fix.startswith("unset HSA_OVERRIDE_GFX_VERSION")
    sibling = amd_card("gfx1101", HSA_OVERRIDE_GFX_VERSION="11.0.0")
    sibling.python.live = rocm_live(ROCM_WHEEL)
    unneeded = one(sibling, "amd.gfx_target")
    assert unneeded.status == "warning" and unneeded.fix.startswith("unset HSA_OVERRIDE_GFX_VERSION")
    own = one(amd_card("gfx1100", HSA_OVERRIDE_GFX_VERSION="11.0.0"), "amd.gfx_target")
    assert own.status == "ok" and "changes nothing" in own.title


def test_an_override_hiding_the_cards_own_target_is_seen_through_by_its_pci_id():
    """rocminfo reports the override's target (gfx1030) for an MI210; its PCI id says gfx90a, which needs none."""
    facts = amd_card("gfx1030", "0x740f", HSA_OVERRIDE_GFX_VERSION="10.3.0")
    facts.python.live = rocm_live(signal="SIGABRT", stderr_tail="Memory access fault by GPU node-2 on address (nil). Reason: unknown.")
    finding = one(facts, "amd.gfx_target")
    assert finding.status == "error" and finding.title.startswith("GPU 0 is gfx90a; HSA_OVERRIDE_GFX_VERSION=10.3.0 is set")
    assert finding.fix.startswith("unset HSA_OVERRIDE_GFX_VERSION")


def test_a_missing_override_is_needed_for_rdna2_and_rdna3_siblings_and_strix_halo():
    for target, value in (("gfx1032", "10.3.0"), ("gfx1103", "11.0.0"), ("gfx1151", "11.0.0")):
        assert one(amd_card(target), "amd.gfx_target").fix.startswith(f"export HSA_OVERRIDE_GFX_VERSION={value}"), target


# --- AMD: an APU's iGPU beside the discrete card ----------------------------------------------------


def apu_box(**env):
    facts = amd_box(gpu_env=env)
    facts.gpus.append(rx_7900_xtx(index=1, name="AMD Radeon Graphics", total_bytes=512 * 1024**2, gfx_target="gfx1036",
                                  pci_bus_id="0000:7c:00.0"))
    return facts


def test_an_igpu_rocm_offers_beside_the_card_gets_hip_visible_devices():
    facts = apu_box()
    finding = one(facts, "amd.igpu_visible")
    assert finding.status == "warning"
    assert finding.fix.startswith("export HIP_VISIBLE_DEVICES=0 ")
    assert "os.environ" in finding.detail  # setting it inside the script is too late
    facts.python.live = rocm_live(ROCM_WHEEL, device_count=2)
    assert one(facts, "amd.igpu_visible").status == "error"  # torch counted it, and the wheel has no gfx1036 code
    facts.python.live = rocm_live(ROCM_WHEEL, device_count=1)
    assert quiet(facts, "amd.igpu_visible")  # torch was offered the discrete card only


def test_the_igpu_check_is_quiet_when_a_visibility_variable_is_set_or_training_is_on_nvidia():
    assert quiet(apu_box(HIP_VISIBLE_DEVICES="0"), "amd.igpu_visible")
    assert quiet(apu_box(ROCR_VISIBLE_DEVICES="0"), "amd.igpu_visible")
    facts = nvidia_box()
    facts.gpus.append(rx_7900_xtx(index=1, name="AMD Radeon Graphics", total_bytes=512 * 1024**2, gfx_target="gfx1036"))
    assert quiet(facts, "amd.igpu_visible")


def test_groups_are_judged_for_an_amdgpu_card_the_probes_could_not_open():
    facts = amd_box(user_groups=["ada", "video"], kfd_accessible=False, render_accessible=False)
    facts.gpus = []
    facts.probes = [VendorProbe("amd", "rocminfo", "error", "Unable to open /dev/kfd read-write: Permission denied")]
    facts.pci_gpus = [PciGpu("0000:01:00.0", "amd", "0x1002", "0x67df", driver="amdgpu")]
    finding = one(facts, "amd.groups")
    assert finding.status == "error" and "render group" in finding.title
    assert finding.fix == fixes.ADD_GPU_GROUPS


# --- NVIDIA: the build's kernels against the card's compute capability -----------------------------


@pytest.mark.parametrize(
    ("entry", "device", "runs"),
    [
        ("sm_86", "sm_86", True),
        ("sm_80", "sm_86", True),  # SASS: same major, lower minor
        ("sm_86", "sm_80", False),
        ("sm_90", "sm_120", False),  # another major: never
        ("compute_90", "sm_120", True),  # PTX: JIT-compiled for any newer GPU
        ("compute_120", "sm_90", False),
        ("sm_90a", "sm_90", True),
        ("sm_90a", "sm_100", False),  # arch-specific: that GPU only
        ("compute_90a", "sm_100", False),
    ],
)
def test_which_build_entry_runs_on_which_gpu(entry, device, runs):
    assert serves(entry, device) is runs


def test_compute_capabilities_name_their_sm():
    assert (sm_of("8.6"), sm_of("12.0"), sm_of(None), sm_of("x")) == ("sm_86", "sm_120", None, None)


def blackwell_on(torch: str, arch_list: list[str], driver: str = "570.133.07", cuda: str | None = "12.8"):
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(name="NVIDIA GeForce RTX 5090", compute_capability="12.0", driver_version=driver,
                             cuda_driver_version=cuda, total_bytes=32 * GIB)
    facts.python.packages["torch"] = PackageFacts("torch", torch, torch.split("+")[1])
    facts.python.live = cuda_live(arch_list, torch_version=torch, cuda_version="12.6")
    return facts


def test_a_blackwell_card_on_a_build_before_cuda_12_8_gets_the_cu128_index():
    facts = blackwell_on("2.6.0+cu126", ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"])
    finding = one(facts, "torch.kernels")
    assert finding.status == "error"
    assert finding.title == ("torch 2.6.0+cu126 has no kernels for the NVIDIA GeForce RTX 5090 (sm_120): "
                             "it carries sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90")
    assert finding.fix.splitlines() == [
        "gpudoctor install-torch --index cu128   # sm_120 needs CUDA ≥ 12.8 (cu128 or newer)",
        f"# or by hand: {PYTHON} -m pip uninstall -y torch && {PYTHON} -m pip install torch --index-url https://download.pytorch.org/whl/cu128",
    ]
    assert not diagnose(facts).ready


def test_the_companion_wheels_are_replaced_with_torch():
    facts = blackwell_on("2.6.0+cu126", ["sm_80", "sm_90"])
    facts.python.packages["torchvision"] = PackageFacts("torchvision", "0.21.0+cu126")
    assert "pip install torch torchvision --index-url" in one(facts, "torch.kernels").fix


def test_a_driver_too_old_for_the_index_is_updated_first():
    facts = blackwell_on("2.6.0+cu126", ["sm_80", "sm_90"], driver="560.35.03", cuda="12.6")
    assert one(facts, "torch.kernels").fix.startswith("gpudoctor install-cuda   # first: driver 560.35.03 is too old for CUDA 12.8")


def test_a_pascal_card_on_a_build_that_dropped_it_gets_the_cu126_index():
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(name="NVIDIA GeForce GTX 1080", compute_capability="6.1")
    facts.python.live = cuda_live(["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    finding = one(facts, "torch.kernels")
    assert finding.status == "error" and finding.fix.startswith("gpudoctor install-torch --index cu126")


def test_a_kepler_card_gets_the_last_wheels_that_carried_it():
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(name="Tesla K80", compute_capability="3.7")
    facts.python.live = cuda_live(["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    fix = one(facts, "torch.kernels").fix
    assert "pip install 'torch<2.8' --index-url https://download.pytorch.org/whl/cu118" in fix


def test_kernels_are_judged_from_torchs_own_warning_without_an_arch_list_and_never_guessed():
    facts = blackwell_on("2.6.0+cu126", None)
    assert quiet(facts, "torch.kernels")
    facts.python.live.gpu_error = "NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch installation."
    finding = one(facts, "torch.kernels")
    assert finding.status == "error" and "cu128" in finding.fix


def test_a_card_the_build_serves_is_ok():
    facts = nvidia_box()
    facts.python.live = cuda_live(["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    assert one(facts, "torch.kernels").title == "torch 2.7.1+cu128 has kernels for GPU 0 (sm_89)"  # sm_86 SASS runs on 8.9
    facts.python.live.arch_list = ["sm_70", "sm_75", "compute_75"]
    assert one(facts, "torch.kernels").title.endswith("(sm_89) (as PTX: the driver compiles it at the first run)")


# --- a live check that died --------------------------------------------------------------------------


def test_a_live_check_killed_by_a_signal_is_an_error_with_its_stderr():
    facts = nvidia_box()
    facts.python.live = cuda_live(signal="SIGSEGV", error="the live check crashed (killed by signal 11)",
                                  stderr_tail="Fatal Python error: Segmentation fault\nThread 0x7f (most recent call first):")
    finding = one(facts, "torch.live_crash")
    assert finding.status == "error"
    assert finding.title == "the live torch check was killed by SIGSEGV: Thread 0x7f (most recent call first):"
    assert "Fatal Python error: Segmentation fault" in finding.detail
    assert finding.fix == REPORT_FIX
    assert quiet(facts, "torch.sees_gpu")  # said once
    assert not diagnose(facts).ready


def test_a_crash_the_gpu_row_explains_points_there():
    facts = amd_card("gfx1032")
    facts.python.live = rocm_live(signal="SIGABRT", stderr_tail="hipErrorNoBinaryForGpu: Unable to find code object for all current devices!")
    crash = one(facts, "torch.live_crash")
    assert crash.fix is None and crash.detail.endswith("The GPU row says why and how to fix it.")
    assert one(facts, "amd.gfx_target").fix.startswith("export HSA_OVERRIDE_GFX_VERSION=10.3.0")


def test_a_card_without_a_known_target_gets_the_overrides_to_choose_from():
    facts = amd_box()
    facts.gpus[0].gfx_target = None
    facts.python.live = rocm_live(signal="SIGABRT", stderr_tail="hipErrorNoBinaryForGpu: Unable to find code object for all current devices!")
    fix = one(facts, "torch.live_crash").fix
    assert fix.startswith("rocminfo | grep")
    assert "# gfx103x: export HSA_OVERRIDE_GFX_VERSION=10.3.0" in fix and "gfx110x, gfx115x: export HSA_OVERRIDE_GFX_VERSION=11.0.0" in fix


def test_the_report_shows_the_signal_and_the_stderr_tail():
    facts = nvidia_box()
    facts.python.live = cuda_live(signal="SIGABRT", stderr_tail="first line\nterminate called after throwing an instance of 'c10::Error'")
    report = report_block(facts, diagnose(facts))
    assert "live check killed by SIGABRT; its stderr ended:" in report
    assert "  | terminate called after throwing an instance of 'c10::Error'" in report
    assert "  [✗] torch.live_crash: the live torch check was killed by SIGABRT" in report


# --- Python: the environment ------------------------------------------------------------------------


def system_python(torch: str | None):
    facts = nvidia_box()
    facts.python.executable, facts.python.in_venv, facts.python.env_kind = "/usr/bin/python3", False, "system"
    facts.python.externally_managed = True
    if torch is None:
        del facts.python.packages["torch"]
    return facts


def test_torch_missing_from_an_externally_managed_python_gets_a_venv():
    finding = one(system_python(None), "torch.installed")
    assert finding.title == "PyTorch is not installed in /usr/bin/python3, and pip cannot install into it"
    assert "externally managed" in finding.detail and "PEP 668" in finding.detail
    assert finding.fix.splitlines()[0] == "sudo apt install python3.12-venv && python3.12 -m venv ~/venvs/ft && . ~/venvs/ft/bin/activate"
    assert finding.fix.splitlines()[-1].startswith("gpudoctor install-torch")
    assert "--break-system-packages" not in finding.fix
    assert quiet(system_python(None), "python.environment")  # said once


def test_an_externally_managed_python_with_torch_is_a_warning():
    finding = one(system_python("2.7.1+cu128"), "python.environment")
    assert finding.status == "warning" and "venv" in finding.fix
    assert quiet(nvidia_box(), "python.environment")


# --- Python: package combinations -----------------------------------------------------------------


def with_packages(live: LiveFacts | None = None, **versions):
    facts = nvidia_box()
    for name, version in versions.items():
        facts.python.packages[name.replace("_", "-")] = PackageFacts(name.replace("_", "-"), version)
    facts.python.live = live
    return facts


@pytest.mark.parametrize(
    ("transformers", "accelerate", "wanted"),
    [("4.53.2", None, "accelerate>=0.26.0"), ("4.35.2", None, "accelerate>=0.20.1"), ("5.0.0", "0.34.2", "accelerate>=1.1.0")],
)
def test_accelerate_missing_or_too_old_for_the_trainer(transformers, accelerate, wanted):
    finding = one(with_packages(transformers=transformers, accelerate=accelerate), "python.libraries")
    assert finding.status == "error" and "Trainer" in finding.title
    assert finding.fix == f"{PYTHON} -m pip install -U '{wanted}'"
    assert "torch" not in finding.fix  # never "reinstall torch"


def test_accelerate_is_judged_only_where_its_state_is_known():
    assert quiet(with_packages(transformers="4.53.2", accelerate="1.9.0"), "python.libraries")
    facts = with_packages(transformers="4.53.2")  # no accelerate record: not looked for, not "missing"
    assert "accelerate" not in facts.python.packages and quiet(facts, "python.libraries")


def test_peft_newer_than_transformers_gets_the_last_peft_before_it():
    live = cuda_live(import_errors={"peft": "ImportError: cannot import name 'EncoderDecoderCache' from 'transformers'"})
    facts = with_packages(live, transformers="4.37.2", peft="0.14.0", accelerate="1.1.0")
    finding = one(facts, "python.imports")
    assert finding.title.startswith("peft 0.14.0 needs a newer transformers than 4.37.2")
    assert finding.fix.splitlines()[0] == f"{PYTHON} -m pip install -U peft==0.13.2"
    assert "transformers>=4.43.0" in finding.fix
    assert quiet(facts, "python.libraries")  # the import error is said once
    facts.python.live = None  # versions alone tell the same
    assert one(facts, "python.libraries").fix.startswith(f"{PYTHON} -m pip install -U peft==0.13.2")


def test_another_library_needing_a_newer_dependency():
    live = cuda_live(import_errors={"trl": "ImportError: cannot import name 'Cache' from 'transformers'"})
    finding = one(with_packages(live, transformers="4.30.0", trl="0.19.0", accelerate="1.1.0"), "python.imports")
    assert finding.title.startswith("trl 0.19.0 needs a newer transformers than 4.30.0")
    assert finding.fix == f"{PYTHON} -m pip install -U transformers\n# or keep transformers: {PYTHON} -m pip install -U 'trl<0.19'"


def test_a_flash_attn_wheel_built_for_another_torch_gets_one_for_this_torch():
    live = cuda_live(import_errors={"flash_attn": "ImportError: flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"})
    facts = with_packages(live, flash_attn="2.5.7")
    facts.python.packages["torch"] = PackageFacts("torch", "2.3.0")  # PyPI's untagged wheel: a CUDA 12 build
    finding = one(facts, "python.imports")
    assert finding.status == "warning" and finding.title.startswith("flash-attn 2.5.7 was built for another torch than torch 2.3.0")
    assert finding.fix.splitlines() == [
        f"{PYTHON} -m pip uninstall -y flash-attn",
        f"{PYTHON} -m pip install --no-build-isolation 'flash-attn==2.7.4.post1'"
        "   # flash-attn 2.5.8 … 2.7.4.post1 ship a prebuilt wheel for torch 2.3 with CUDA 12",
    ]


def test_flash_attn_for_a_torch_without_a_prebuilt_wheel_compiles():
    live = cuda_live(import_errors={"flash_attn": "undefined symbol: _ZN3c10"})
    facts = with_packages(live, flash_attn="2.8.3")
    facts.python.packages["torch"] = PackageFacts("torch", "2.10.0+cu128", "cu128")
    assert "MAX_JOBS=4" in one(facts, "python.imports").fix


def test_a_fork_that_overwrites_transformers_is_uninstalled_with_it():
    live = cuda_live(import_errors={"transformers": "ImportError: cannot import name 'check_peft_version' from 'transformers.utils'"})
    facts = with_packages(live, transformers="4.33.3", adapter_transformers="3.2.1", accelerate="0.21.0")
    finding = one(facts, "python.libraries")
    assert finding.fix.startswith(f"{PYTHON} -m pip uninstall -y adapter-transformers transformers && ")
    assert quiet(facts, "python.imports")  # its import error is what the fork causes: said once
    del facts.python.packages["adapter-transformers"]
    assert "--force-reinstall transformers==4.33.3" in one(facts, "python.imports").fix


# --- Host: build tools for Triton ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compiler", "headers", "extra", "fix"),
    [
        (None, False, {}, "sudo apt install build-essential python3.12-dev"),
        ("/usr/bin/gcc", False, {}, "sudo apt install python3.12-dev"),
        (None, None, {"unsloth": "2025.6.1"}, "sudo apt install build-essential"),
        (None, True, {}, "sudo apt install build-essential"),
    ],
)
def test_missing_build_tools_for_triton_are_a_warning(compiler, headers, extra, fix):
    facts = with_packages(**extra)
    facts.host.c_compiler, facts.python.python_headers = compiler, headers
    finding = one(facts, "python.build_tools")
    assert (finding.category, finding.status, finding.fix.split("   # ")[0]) == ("Host", "warning", fix)
    assert ("C compiler" in finding.fix) == ("build-essential" in fix) and ("Python.h" in finding.fix) == ("-dev" in fix)


def test_build_tools_are_not_guessed_at():
    facts = nvidia_box()
    facts.host.c_compiler, facts.python.python_headers = None, None  # facts from before the probe looked
    assert quiet(facts, "python.build_tools")
    facts = nvidia_box()
    facts.python.packages["torch"] = PackageFacts("torch", "2.7.1+cpu", "cpu")
    facts.python.python_headers = False
    assert quiet(facts, "python.build_tools")  # a CPU torch builds no GPU kernels


# --- bitsandbytes and torch builds whose old fix did not help ---------------------------------------


def test_bitsandbytes_built_for_another_rocm_than_torchs_is_matched():
    facts = amd_box(rocm_version="6.4.2")
    facts.python.packages["torch"] = PackageFacts("torch", "2.7.1+rocm6.3", "rocm6.3")
    facts.python.packages["bitsandbytes"] = PackageFacts("bitsandbytes", "0.47.0.dev0")  # built from source
    facts.python.live = rocm_live(torch_version="2.7.1+rocm6.3", hip_version="6.3",
                                  bnb_error="Configured ROCm binary not found at .../bitsandbytes/libbitsandbytes_rocm63.so")
    finding = one(facts, "bnb.installed")
    assert "ROCm 6.3 library" in finding.title and "ROCm is 6.4" in finding.title
    assert finding.fix.startswith("export BNB_ROCM_VERSION=64")
    assert "rocm6.4" in finding.fix


def test_a_4bit_matmul_without_code_for_the_card_gets_the_override_not_a_reinstall():
    facts = amd_card("gfx1032")
    facts.python.live = rocm_live(bnb_4bit_ok=False, bnb_4bit_error="HIP error: invalid device function")
    finding = one(facts, "bnb.installed")
    assert finding.fix.startswith("export HSA_OVERRIDE_GFX_VERSION=10.3.0")


def test_cpu_torch_beside_a_driver_older_than_every_wheel_updates_the_driver_first():
    facts = nvidia_box()
    facts.gpus[0] = rtx_4090(driver_version="418.43", cuda_driver_version="10.1")
    facts.python.packages["torch"] = PackageFacts("torch", "1.5.0+cpu", "cpu")
    fix = one(facts, "torch.build_vs_gpu").fix.splitlines()
    assert fix[0].startswith(fixes.INSTALL_CUDA) and fix[1] == fixes.INSTALL_TORCH
    assert "cu101" in fix[2]


def test_import_torch_broken_by_ld_library_path_is_not_a_reinstall():
    facts = nvidia_box(gpu_env={"LD_LIBRARY_PATH": "/usr/local/cuda-12.4/lib64"})
    facts.python.live = LiveFacts(ran=True, torch_error="ImportError: libcusparse.so.12: undefined symbol: __nvJitLinkCreate_12_8")
    assert one(facts, "torch.installed").fix.startswith("unset LD_LIBRARY_PATH")


# --- install-torch in a conda environment ------------------------------------------------------------


def test_a_conda_environment_is_an_environment_install_torch_installs_into(tmp_path, monkeypatch):
    import sys

    from gpudoctor.install import torch_install

    (tmp_path / "conda-meta").mkdir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))  # conda: an environment is its own base
    assert torch_install.in_conda_env() and torch_install.in_virtualenv()
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "elsewhere"))
    assert not torch_install.in_virtualenv()


def test_a_torch_conda_installed_is_removed_with_conda_first():
    from gpudoctor.errors import ProblemFound
    from gpudoctor.install import torch_install
    from gpudoctor.install.torch_index import choice_for_tag

    python = nvidia_box().python
    python.packages["torch"] = PackageFacts("torch", "2.5.1", None)
    choice = choice_for_tag("cu128")
    with pytest.raises(ProblemFound, match=r"installed by conda.*'conda remove --force pytorch'"):
        torch_install.plan_install(choice, python, gpudoctor_requirement=["gpudoctor[train]"], installer=lambda name: "conda")
    plan = torch_install.plan_install(choice, python, gpudoctor_requirement=["gpudoctor[train]"], installer=lambda name: "pip")
    assert plan.steps[0].argv[-3:] == ["uninstall", "-y", "torch"]  # pip installed it: pip replaces it
