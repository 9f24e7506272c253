"""Which PyTorch wheel index and bitsandbytes each machine gets, from its probed facts."""

from __future__ import annotations

import pytest

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.install.torch_index import choice_for_tag, choose_index, known_tags
from gpudoctor.probe.facts import GpuFacts, HostFacts, SystemFacts


def nvidia(driver, cuda=None, capability="8.9", name="NVIDIA GeForce RTX 4090"):
    gpu = GpuFacts(index=0, vendor="nvidia", name=name, source="nvml", driver_version=driver,
                   cuda_driver_version=cuda, compute_capability=capability)
    return SystemFacts(gpus=[gpu])


def amd(rocm, name="AMD Radeon RX 7900 XTX"):
    gpu = GpuFacts(index=0, vendor="amd", name=name, source="sysfs", gfx_target="gfx1100")
    return SystemFacts(gpus=[gpu], host=HostFacts(rocm_version=rocm))


@pytest.mark.parametrize(
    ("facts", "tag"),
    [
        (nvidia("580.82.07", "13.0"), "cu130"),
        (nvidia("575.64.03", "12.9"), "cu128"),
        (nvidia("570.133.07", "12.8"), "cu128"),
        (nvidia("565.57.01", "12.7"), "cu126"),
        (nvidia("570.26"), "cu128"),  # no NVML CUDA version: the driver table decides
        (nvidia("560.28.02"), "cu126"),  # just below 560.28.03, minor-version compatibility
        (nvidia("580.82.07", "13.0", "6.1", "NVIDIA GeForce GTX 1080"), "cu126"),  # CUDA 13 and torch 2.8+ cu128 dropped Pascal
        (nvidia("560.35.03", "12.6", "9.0", "NVIDIA H100"), "cu126"),
        (nvidia("570.133.07", "12.8", "12.0", "NVIDIA GeForce RTX 5090"), "cu128"),
        (amd("6.4.3"), "rocm6.4"),
        (amd("7.0.2"), "rocm7.0"),
        (amd("7.2.0"), "rocm7.1"),
        (amd(None), "rocm7.1"),
        (SystemFacts(), "cpu"),
    ],
)
def test_index_per_machine(facts, tag):
    assert choose_index(facts).tag == tag


def test_cuda_choice_names_its_reason_url_and_bitsandbytes():
    choice = choose_index(nvidia("570.133.07", "12.8"))
    assert choice.index_url == "https://download.pytorch.org/whl/cu128"
    assert choice.reason == "NVIDIA GeForce RTX 4090: driver 570.133.07 supports CUDA 12.8, so CUDA 12.8 wheels (cu128)"
    assert choice.bitsandbytes_requirement == "bitsandbytes>=0.43.0"
    assert choice.torch_requirement == "torch"


def test_cuda_13_needs_a_bitsandbytes_with_cuda_13_binaries():
    assert choose_index(nvidia("580.82.07", "13.0")).bitsandbytes_requirement == "bitsandbytes>=0.48.0"


def test_rocm_needs_bitsandbytes_0_49_and_an_old_index_pins_an_older_torch():
    choice = choose_index(amd("6.4.1"))
    assert choice.bitsandbytes_requirement == "bitsandbytes>=0.50.0"
    assert choice.torch_requirement == "torch<2.10"
    assert choice.reason == "AMD Radeon RX 7900 XTX: ROCm 6.4.1 is installed, so rocm6.4 wheels"


def test_amd_without_rocm_points_at_install_rocm():
    choice = choose_index(amd(None))
    assert "'gpudoctor install-rocm' sets both up" in choice.notes[0]


def test_old_driver_runs_cuda_12_under_minor_version_compatibility():
    choice = choose_index(nvidia("535.183.01", "12.2"))
    assert choice.tag == "cu126"
    assert choice.notes == [
        "cu126 runs on driver 535.183.01 under CUDA minor-version compatibility; "
        "'gpudoctor install-cuda' updates the driver for full support"
    ]


def test_driver_too_old_for_any_wheel_is_a_problem_with_a_fix():
    with pytest.raises(ProblemFound, match=r"driver 470.256.02 is too old .* run 'gpudoctor install-cuda', or pass --index cpu"):
        choose_index(nvidia("470.256.02", "11.4"))


def test_nvidia_gpu_without_a_driver_is_a_problem_with_a_fix():
    with pytest.raises(ProblemFound, match="run 'gpudoctor install-cuda' first, or pass --index cu128"):
        choose_index(nvidia(None))


def test_rocm_older_than_any_wheel_is_a_problem_with_a_fix():
    with pytest.raises(ProblemFound, match="ROCm 6.2.4 is older than any PyTorch ROCm wheel"):
        choose_index(amd("6.2.4"))


def test_a_named_index_and_an_unknown_one():
    assert choice_for_tag("cpu").bitsandbytes_requirement == "bitsandbytes>=0.44.0"
    assert choice_for_tag("rocm7.0").backend == "rocm"
    with pytest.raises(BadInput) as caught:
        choice_for_tag("cu999")
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("--index cu999: unknown wheel index; choose one of cu130, cu128, cu126, rocm7.1")


def test_every_known_tag_builds_a_choice():
    for tag in known_tags():
        assert choice_for_tag(tag).index_url.endswith(f"/whl/{tag}")


def test_an_apu_listed_first_does_not_choose_the_wheels():
    """The index follows the card training uses (doctor.selection.training_gpus), not facts.gpus[0]."""
    facts = nvidia("570.133.07", "12.8")
    apu = GpuFacts(index=0, vendor="amd", name="AMD Radeon Graphics", source="sysfs", gfx_target="gfx1036", total_bytes=512 * 1024**2)
    facts.gpus = [apu, *facts.gpus]
    assert choose_index(facts).tag == "cu128"
