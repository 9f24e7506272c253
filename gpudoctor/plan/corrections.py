"""Memory corrections: what a measurement on this card found, kept so that later plans fit with it.

`gpudoctor train` (after its first optimizer step, which runs the heaviest rows at the full micro
batch) and `gpudoctor plan --verify` (a few steps with random weights) measure the peak per figure
and record it in gpudoctor_cache_dir()/memory-corrections.json (written atomically). The figures,
and the plan's number each is compared with (gpudoctor/plan/types.py MemoryEstimate):

    allocated  torch.cuda.max_memory_allocated           peak_allocated_bytes
    reserved   torch.cuda.max_memory_reserved            the footprint less the CUDA context
    device     NVML/amdsmi: what this process holds      the footprint (device_figure: what nvidia-smi shows)
    rss        the process's peak resident set (CPU)     the footprint (with the process itself)

A correction is keyed by everything that changes the bytes but is not what the planner searches:
the device (its name as the probe reports it, the driver), the torch/transformers/peft/bitsandbytes
versions, the model's architecture numbers, and every run setting but seq_len, micro batch and
gradient accumulation (method, quant, compute dtype, grad_ckpt, attention, optimizer, LoRA rank and
targets, … and the recipe, once gpudoctor.settings has one). Within a key, the measured/predicted
ratio of a figure scales the model's figure for any seq_len and micro batch; of several
measurements the one that found the most beyond the model counts. Only upward corrections change a
plan: a measurement below the model is kept and said, and the plan keeps its own margin.
Imports no torch.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gpudoctor.plan.types import Hardware, MemoryEstimate
from gpudoctor.settings import Settings
from gpudoctor.types import GIB, ModelSpec

FILE_NAME = "memory-corrections.json"
FORMAT = 1
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes")
SPAN = ("seq_len", "micro_batch", "grad_accum")  # what one correction spans: the planner searches these
NO_BYTES = ("lora_alpha",)  # settings that change no byte of memory
NOT_ARCHITECTURE = ("name", "hub_id", "licence", "local_path", "max_position_embeddings")
WHOLE = ("device", "reserved", "rss")  # the figures that stand for the whole footprint, best first
KEEP = 8  # measurements kept per key (the newest)
LABELS = {
    "allocated": "torch allocated",
    "reserved": "torch reserved",
    "device": "GPU memory used by the process (NVML/amdsmi)",
    "rss": "process RSS",
}


@dataclass
class Measurement:
    """One measured run: when, by what, with which shape, and each figure as [measured, predicted] bytes."""

    date: str  # ISO date, "2025-06-01"
    source: str  # "train" | "verify"
    shape: dict[str, int]  # seq_len, micro_batch, grad_accum it ran with
    figures: dict[str, list[int]]

    def ratio(self, figure: str) -> float | None:
        measured, predicted = self.figures.get(figure, (0, 0))
        return measured / predicted if predicted > 0 else None

    @property
    def whole(self) -> str | None:
        """The figure that stands for the whole footprint (device, else torch reserved, else RSS)."""
        return next((name for name in WHOLE if self.ratio(name) is not None), None)


@dataclass
class Entry:
    key: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)

    def worst(self) -> Measurement | None:
        """The measurement that found the most beyond the model (its whole figure's ratio)."""
        rated = [m for m in self.measurements if m.whole is not None]
        return max(rated, key=lambda m: m.ratio(m.whole) or 0.0, default=None)


def default_file() -> Path:
    from gpudoctor.resources import gpudoctor_cache_dir

    return gpudoctor_cache_dir() / FILE_NAME


def driver_version(device: str) -> str:
    """The GPU driver the kernel runs ("nvidia 570.133.07", "amdgpu 6.10.5", "rocm 6.4.1"); "" on the CPU.

    Read from /sys through the probe's Sources (a recorded machine in the tests), without torch."""
    if device == "cpu":
        return ""
    from gpudoctor.probe.pci import read_text
    from gpudoctor.probe.sources import default_sources

    sources = default_sources()
    files = [("nvidia", "/sys/module/nvidia/version")] if device == "cuda" else [("amdgpu", "/sys/module/amdgpu/version"), ("rocm", "/opt/rocm/.info/version")]
    for label, path in files:
        try:
            text = read_text(sources, path)
        except OSError:
            text = None
        if text:
            return f"{label} {text.split()[0]}"
    return ""


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def correction_key(model: ModelSpec, settings: Settings, hardware: Hardware) -> dict[str, Any] | None:
    """What a measurement is valid for; None for hardware that is not a device of this machine
    (a `--vram-gib` budget planned on a machine without a GPU)."""
    device = device_key(hardware)
    return None if device is None else _key(device, package_versions(), model, settings)


def device_key(hardware: Hardware) -> dict[str, str] | None:
    if hardware.source == "reference":
        return None
    return {"kind": hardware.device, "name": hardware.name, "driver": driver_version(hardware.device)}


def _key(device: dict[str, str], versions: dict[str, str | None], model: ModelSpec, settings: Settings) -> dict[str, Any]:
    return {
        "device": device,
        "versions": versions,
        "model": {k: v for k, v in dataclasses.asdict(model).items() if k not in NOT_ARCHITECTURE}
        | {"head_dim": model.head_dim or model.hidden_size // model.num_attention_heads},
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in SPAN + NO_BYTES},
    }


def key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load(path: Path | None = None) -> dict[str, Entry]:
    """The corrections in `path` (default: the cache folder's file) by key id; an unreadable file is none."""
    path = path or default_file()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {
            kid: Entry(raw["key"], [Measurement(**m) for m in raw["measurements"]])
            for kid, raw in document.get("corrections", {}).items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def record(key: dict[str, Any], measurement: Measurement, path: Path | None = None) -> Path:
    """Add `measurement` under `key` (replacing one of the same shape), keep the newest KEEP; write atomically."""
    from gpudoctor.atomic import write_json

    path = path or default_file()
    entries = load(path)
    entry = entries.setdefault(key_id(key), Entry(key))
    entry.measurements = [m for m in entry.measurements if m.shape != measurement.shape][-(KEEP - 1):] + [measurement]
    document = {"format": FORMAT, "corrections": {kid: dataclasses.asdict(e) for kid, e in entries.items()}}
    return write_json(path, document)


def today() -> str:
    return datetime.date.today().isoformat()


def device_figure(estimate: MemoryEstimate) -> int:
    """The estimate's whole footprint, the figure a plan fits in its budget: what nvidia-smi shows
    (torch's reserved memory and the CUDA context), on the CPU the process's resident memory.
    (gpudoctor.plan.memory.device_used_bytes where the memory model has it; before that, its
    peak_reserved_bytes counted the context in.)"""
    from gpudoctor.plan import memory

    used = getattr(memory, "device_used_bytes", None)
    return int(used(estimate)) if used is not None else estimate.peak_reserved_bytes


def predicted_figures(estimate: MemoryEstimate, device: str) -> dict[str, int]:
    """The plan's number for each figure a measurement on `device` reads (see the module docstring)."""
    whole = device_figure(estimate)
    if device == "cpu":
        return {"rss": whole}
    context = estimate.breakdown_bytes.get("cuda_context", 0)
    return {"allocated": estimate.peak_allocated_bytes, "reserved": whole - context, "device": whole}


def measured_figures(readings: dict[str, int], estimate: MemoryEstimate, device: str) -> dict[str, list[int]]:
    """[measured, predicted] for every figure that was read."""
    predicted = predicted_figures(estimate, device)
    return {name: [int(readings[name]), predicted[name]] for name in predicted if readings.get(name) is not None}


def footprint(figures: dict[str, list[int]], estimate: MemoryEstimate) -> int | None:
    """The whole measured footprint, counted as device_figure counts the plan's (torch reserved gets the context added)."""
    for name in WHOLE:
        if name in figures:
            extra = estimate.breakdown_bytes.get("cuda_context", 0) if name == "reserved" else 0
            return figures[name][0] + extra
    return None


def corrected(estimate: MemoryEstimate, measurement: Measurement) -> MemoryEstimate:
    """`estimate` scaled by what `measurement` found beyond the model; unchanged when it found no more.

    The whole figure's ratio scales the footprint (device_figure; with torch reserved, the part
    without the context), the allocated figure's ratio peak_allocated; the difference is the
    breakdown's "measured_correction"."""
    whole = measurement.whole
    scale = max(1.0, measurement.ratio(whole) or 1.0) if whole else 1.0
    alloc_scale = max(1.0, measurement.ratio("allocated") or 1.0)
    if scale == 1.0 and alloc_scale == 1.0:
        return estimate
    context = estimate.breakdown_bytes.get("cuda_context", 0)
    before = device_figure(estimate)
    after = context + (before - context) * scale if whole == "reserved" else before * scale
    allocated = estimate.peak_allocated_bytes * alloc_scale
    after = max(after, before + allocated - estimate.peak_allocated_bytes)  # the reserve never falls below what is allocated
    extra = int(after - before)
    breakdown = {**estimate.breakdown_bytes, "measured_correction": extra}
    return MemoryEstimate(breakdown, int(allocated), estimate.peak_reserved_bytes + extra, estimate.budget_bytes)


def corrector(model: ModelSpec, hardware: Hardware, entries: dict[str, Entry]) -> Callable[[Settings, MemoryEstimate], MemoryEstimate] | None:
    """What make_plan(correct=…) calls on every candidate: its estimate corrected by the measurement of its key."""
    device = device_key(hardware)
    if not entries or device is None:
        return None
    versions = package_versions()

    def correct(settings: Settings, estimate: MemoryEstimate) -> MemoryEstimate:
        entry = entries.get(key_id(_key(device, versions, model, settings)))
        worst = entry.worst() if entry else None
        return corrected(estimate, worst) if worst else estimate

    return correct


def find(model: ModelSpec, settings: Settings, hardware: Hardware, entries: dict[str, Entry]) -> Measurement | None:
    key = correction_key(model, settings, hardware)
    entry = entries.get(key_id(key)) if key is not None else None
    return entry.worst() if entry else None


def note(measurement: Measurement, device: str = "cuda") -> str:
    """What a plan says about the measurement behind (or beside) its figures."""
    whole = measurement.whole or "rss"
    measured, predicted = measurement.figures[whole]
    ratio = measurement.ratio(whole) or 1.0
    shape = measurement.shape
    what = (
        f"measured {measured / GIB:.2f} GiB where {predicted / GIB:.2f} GiB was predicted "
        f"({LABELS[whole]}, seq_len {shape.get('seq_len')}, micro batch {shape.get('micro_batch')}, {measurement.source})"
    )
    here = "this machine" if device == "cpu" else "this card"
    if ratio > 1.0:
        return f"corrected by a measurement on {here} on {measurement.date}: {what}; this recipe's peaks are scaled by {ratio:.2f}"
    return f"a measurement on {here} on {measurement.date}: {what}; the plan keeps the memory model's larger figure"
