"""Which GPUs training will use: the one rule the doctor and the planner share.

A Ryzen 7000/9000 desktop CPU carries a small Radeon iGPU that amdgpu lists like any card; judging or
planning for it (its 512 MiB, its gfx1036) would bury the real card. When a discrete GPU is present
the integrated ones are set aside; when only an integrated GPU exists it is used like any other.
`training_gpus(facts)` is that rule: the doctor judges these cards and `gpudoctor plan` plans for the
first of them (gpudoctor/plan/hardware.py).

When no driver offers a GPU at all, a card may still sit on the PCI bus (nouveau, a driver that did
not load): `training_vendor` and `training_gpu_name` then name that card, because torch has to be
built for it and cannot use it until its driver works.
"""

from __future__ import annotations

from gpudoctor.doctor.units import GIB
from gpudoctor.probe.facts import GpuFacts, PciGpu, SystemFacts

# LLVM targets of AMD APUs' integrated GPUs (AMDGPU backend processor table, llvm.org/docs/AMDGPUUsage.html).
APU_TARGETS = frozenset(
    {"gfx902", "gfx909", "gfx90c", "gfx1013", "gfx1033", "gfx1035", "gfx1036", "gfx1037", "gfx1103", "gfx1150", "gfx1151", "gfx1152"}
)
# A GPU with less memory than this next to a discrete card is a carve-out, not a training device.
SMALL_GPU_BYTES = 4 * GIB
# Vendors whose cards gpudoctor trains on, as the PCI scan names them.
TRAINING_VENDORS = ("nvidia", "amd")
VENDOR_NAME = {"nvidia": "NVIDIA", "amd": "AMD"}


def is_integrated(gpu: GpuFacts) -> bool:
    if gpu.vendor != "amd":
        return False
    return gpu.gfx_target in APU_TARGETS or (gpu.total_bytes is not None and gpu.total_bytes < SMALL_GPU_BYTES)


def training_gpus(facts: SystemFacts) -> list[GpuFacts]:
    """The GPUs training uses (and the checks judge): the discrete ones when there are any, else all."""
    discrete = [g for g in facts.gpus if not is_integrated(g)]
    return discrete or list(facts.gpus)


def integrated_beside_discrete(facts: SystemFacts) -> list[GpuFacts]:
    """Integrated GPUs that were set aside because a discrete one is present."""
    chosen = training_gpus(facts)
    return [g for g in facts.gpus if g not in chosen]


def pci_cards(facts: SystemFacts) -> list[PciGpu]:
    """NVIDIA and AMD display controllers on the PCI bus, whether or not a driver offers them."""
    return [card for card in facts.pci_gpus if card.vendor in TRAINING_VENDORS]


def cards_without_driver(facts: SystemFacts) -> list[PciGpu]:
    """The PCI cards no driver offers for compute: all of them when the probes found no GPU, else none."""
    return [] if facts.gpus else pci_cards(facts)


def pci_card_name(card: PciGpu) -> str:
    """'NVIDIA card at 0000:01:00.0'."""
    return f"{VENDOR_NAME[card.vendor]} card at {card.bus_id}"


def training_vendor(facts: SystemFacts) -> str | None:
    """'nvidia' or 'amd': the first training GPU's vendor, else that of a card on the PCI bus; None without either."""
    gpus = training_gpus(facts)
    if gpus:
        return gpus[0].vendor
    cards = cards_without_driver(facts)
    return cards[0].vendor if cards else None


def training_gpu_name(facts: SystemFacts) -> str | None:
    """The name of the GPU training is for ('NVIDIA GeForce RTX 4090', or 'NVIDIA card at 0000:01:00.0')."""
    gpus = training_gpus(facts)
    if gpus:
        return gpus[0].name
    cards = cards_without_driver(facts)
    return pci_card_name(cards[0]) if cards else None
