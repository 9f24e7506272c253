"""Which GPUs training will use: the discrete cards, not the integrated GPU of a Ryzen CPU beside them.

A Ryzen 7000/9000 desktop CPU carries a small Radeon iGPU that amdgpu lists like any card; judging it
(its 512 MiB, its gfx1036) would bury the real card's findings. When a discrete GPU is present the
integrated ones are set aside; when only an integrated GPU exists it is judged like any other.
"""

from __future__ import annotations

from gpudoctor.doctor.units import GIB
from gpudoctor.probe.facts import GpuFacts, SystemFacts

# LLVM targets of AMD APUs' integrated GPUs (AMDGPU backend processor table, llvm.org/docs/AMDGPUUsage.html).
APU_TARGETS = frozenset(
    {"gfx902", "gfx909", "gfx90c", "gfx1013", "gfx1033", "gfx1035", "gfx1036", "gfx1037", "gfx1103", "gfx1150", "gfx1151", "gfx1152"}
)
# A GPU with less memory than this next to a discrete card is a carve-out, not a training device.
SMALL_GPU_BYTES = 4 * GIB


def is_integrated(gpu: GpuFacts) -> bool:
    if gpu.vendor != "amd":
        return False
    return gpu.gfx_target in APU_TARGETS or (gpu.total_bytes is not None and gpu.total_bytes < SMALL_GPU_BYTES)


def training_gpus(facts: SystemFacts) -> list[GpuFacts]:
    """The GPUs the checks judge: discrete ones when there are any, else all."""
    discrete = [g for g in facts.gpus if not is_integrated(g)]
    return discrete or list(facts.gpus)


def integrated_beside_discrete(facts: SystemFacts) -> list[GpuFacts]:
    """Integrated GPUs that were set aside because a discrete one is present."""
    chosen = training_gpus(facts)
    return [g for g in facts.gpus if g not in chosen]
