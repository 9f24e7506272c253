"""What a plan is for, as a Hardware value: a probed GPU, a named GPU profile, or this machine's CPU.

Facts come from the probe (no torch import); numbers a probe cannot read (TFLOP/s, whether
FlashAttention trains on the card) come from the matched profile in profiles/gpus.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import psutil

from gpudoctor.plan.types import Hardware
from gpudoctor.profiles import match_gpu
from gpudoctor.types import GIB, GpuSpec

if TYPE_CHECKING:  # the probe package is imported only when --gpu auto probes
    from gpudoctor.probe.facts import GpuFacts, SystemFacts

# RAM kept back for the desktop, the page cache and the data loader when training on the CPU.
CPU_RAM_HEADROOM_BYTES = 2 * GIB
# A stated, rough figure: fp32 GEMM throughput per core with AVX2/AVX-512 FMA as PyTorch (oneDNN)
# reaches it on a desktop CPU, ~50 GFLOP/s. CPU time estimates are order-of-magnitude only.
CPU_GFLOPS_PER_CORE = 50.0
# CPUs with native bf16 (see gpudoctor/probe/cpu.py) ran bf16 matmuls 4.6x faster than fp32 in
# bench/cpu_dtype.py; 4x is the stated, rounded-down factor.
CPU_BF16_SPEEDUP = 4.0


def cpu_hardware() -> Hardware:
    """Train on this machine's CPU: budget = available RAM minus headroom; bf16 only where native."""
    from gpudoctor.probe.cpu import native_bf16_flag

    available = psutil.virtual_memory().available
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    bf16_flag = native_bf16_flag()
    speedup = CPU_BF16_SPEEDUP if bf16_flag else 1.0
    return Hardware(
        device="cpu",
        name=f"CPU ({cores} cores{', ' + bf16_flag if bf16_flag else ''})",
        budget_bytes=max(0, available - CPU_RAM_HEADROOM_BYTES),
        gpus=1,
        bf16=bf16_flag is not None,
        flash_attn=False,
        peak_tflops=cores * CPU_GFLOPS_PER_CORE * speedup / 1000,
        source="cpu",
    )


def hardware_from_gpu(spec: GpuSpec, vram_gib: float | None = None, gpus: int = 1) -> Hardware:
    """Plan for a named card (one you may not have); --vram-gib overrides its memory."""
    return Hardware(
        device="cuda" if spec.vendor == "nvidia" else "rocm",
        name=spec.display_name,
        budget_bytes=int((vram_gib if vram_gib is not None else spec.vram_gib) * GIB),
        gpus=gpus,
        bf16=spec.bf16,
        flash_attn=spec.flash_attn_train,
        peak_tflops=spec.peak_bf16_tflops,
        source="override" if vram_gib is not None else "profile",
    )


def hardware_from_facts(facts: SystemFacts) -> Hardware:
    """The first GPU training uses (its profile for TFLOP/s, bf16, flash), or the CPU when none was found.

    Which GPUs training uses is the doctor's rule (doctor.selection.training_gpus: an integrated GPU
    beside a discrete card is set aside), so `plan` plans for the card `check` judges."""
    from gpudoctor.doctor.selection import training_gpus  # imported here, like the probe: only probed facts need it

    chosen = training_gpus(facts)
    if not chosen:
        return cpu_hardware()
    gpu = chosen[0]
    same_kind = sum(1 for other in chosen if other.name == gpu.name)
    spec = match_gpu(gpu.name)
    budget = _usable_bytes(gpu, spec)
    device = "cuda" if gpu.vendor == "nvidia" else "rocm"
    if spec is not None:
        return Hardware(device, spec.display_name, budget, same_kind, spec.bf16, spec.flash_attn_train, spec.peak_bf16_tflops, "probe")
    bf16, flash = _capabilities(gpu)
    return Hardware(device, gpu.name, budget, same_kind, bf16, flash, None, "probe")


def _usable_bytes(gpu: GpuFacts, spec: GpuSpec | None) -> int:
    """Free memory now (other processes, e.g. the desktop, keep theirs); else the card's total."""
    if gpu.free_bytes is not None:
        return gpu.free_bytes
    if gpu.total_bytes is not None:
        return gpu.total_bytes
    return int(spec.vram_gib * GIB) if spec is not None else 0


def _capabilities(gpu: GpuFacts) -> tuple[bool, bool]:
    """bf16 and FlashAttention training for a card without a profile, from what the probe read."""
    if gpu.vendor == "nvidia" and gpu.compute_capability:
        major = int(gpu.compute_capability.split(".")[0])
        return major >= 8, major >= 8
    if gpu.vendor == "amd" and gpu.gfx_target:
        return gpu.gfx_target.startswith(("gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")), gpu.gfx_target.startswith(("gfx90a", "gfx94", "gfx95"))
    return False, False


def hardware_for(gpu: str = "auto", vram_gib: float | None = None, gpus: int | None = None) -> Hardware:
    """What --gpu (auto | cpu | a profile id), --vram-gib and --gpus name, as `plan` and `train` read them."""
    from gpudoctor.errors import BadInput
    from gpudoctor.profiles import load_gpu

    if vram_gib is not None and vram_gib <= 0:
        raise BadInput(f"--vram-gib: must be more than 0 (got {vram_gib:g})")
    if gpu == "cpu":
        found = cpu_hardware()
    elif gpu == "auto":
        found = probed_hardware()
        if found.device == "cpu" and vram_gib is not None:
            return reference_gpu(vram_gib, gpus or 1)  # --vram-gib names a GPU budget, even on a box without one
    else:
        return hardware_from_gpu(load_gpu(gpu), vram_gib, gpus or 1)
    if vram_gib is not None:
        found.budget_bytes = int(vram_gib * GIB)
        found.source = "override"
    return found


def reference_gpu(vram_gib: float, gpus: int = 1) -> Hardware:
    """A GPU with `vram_gib` per card for a machine that has none: bf16, FlashAttention and TFLOP/s
    come from the NVIDIA profile nearest in memory (on a tie the smaller card; then the slower one,
    so the time estimate errs long). Its source is "reference" and the plan says which card it used."""
    from gpudoctor.profiles import list_gpus, load_gpu

    cards = [spec for spec in map(load_gpu, list_gpus()) if spec.vendor == "nvidia"]
    spec = min(cards, key=lambda c: (abs(c.vram_gib - vram_gib), c.vram_gib, c.peak_bf16_tflops))
    hardware = hardware_from_gpu(spec, vram_gib, gpus)
    hardware.name = f"a {vram_gib:g} GiB GPU (rated as the {spec.display_name})"
    hardware.source = "reference"
    return hardware


def probed_hardware() -> Hardware:
    """`--gpu auto`: probe this machine without starting torch."""
    from gpudoctor.probe import probe_system  # the probe reads NVML/amdsmi/sysfs; imported only when asked

    return hardware_from_facts(probe_system(live=False))
