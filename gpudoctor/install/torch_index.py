"""Which PyTorch wheel index (cu130, cu128, rocm6.4, cpu, …) fits this machine, and which bitsandbytes.

Pure decisions over SystemFacts and the tables in profiles/compat.yaml (torch_cuda_indexes,
torch_rocm_indexes); nothing is imported or installed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpudoctor import compat
from gpudoctor.compat import parse_version
from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.probe.facts import GpuFacts, SystemFacts


@dataclass
class WheelChoice:
    tag: str  # "cu128" | "rocm6.4" | "cpu"
    backend: str  # "cuda" | "rocm" | "cpu"
    index_url: str
    torch_requirement: str  # "torch", or "torch<2.10" where an older index needs an older torch
    bitsandbytes_requirement: str  # "bitsandbytes>=0.50.0"
    reason: str  # one line: why this index
    notes: list[str] = field(default_factory=list)


def cuda_indexes() -> list[dict[str, Any]]:
    return list(compat.table()["torch_cuda_indexes"])


def rocm_indexes() -> list[dict[str, Any]]:
    return list(compat.table()["torch_rocm_indexes"])


def known_tags() -> list[str]:
    return [entry["tag"] for entry in cuda_indexes() + rocm_indexes()] + ["cpu"]


def choice_for_tag(tag: str, reason: str | None = None, notes: list[str] | None = None) -> WheelChoice:
    """The WheelChoice for an index named by the user (`--index cu128`) or picked below."""
    entries = {entry["tag"]: (backend, entry) for backend, table in (("cuda", cuda_indexes()), ("rocm", rocm_indexes())) for entry in table}
    if tag == "cpu":
        backend, entry = "cpu", {}
    elif tag in entries:
        backend, entry = entries[tag]
    else:
        raise BadInput(f"--index {tag}: unknown wheel index; choose one of {', '.join(known_tags())} (compat.yaml torch_*_indexes)")
    minimum = str(entry.get("bitsandbytes") or compat.min_bitsandbytes(backend) or "0")
    return WheelChoice(
        tag=tag,
        backend=backend,
        index_url=compat.table()["torch_index_url"].format(tag=tag),
        torch_requirement=str(entry.get("torch", "torch")),
        bitsandbytes_requirement=f"bitsandbytes>={minimum}",
        reason=reason or f"the {tag} index was asked for",
        notes=list(notes or []),
    )


def choose_index(facts: SystemFacts) -> WheelChoice:
    """The wheel index for the GPU training uses (doctor.selection.training_gpus, the card `check`
    judges and `plan` plans for): CUDA by driver, ROCm by release, else CPU."""
    from gpudoctor.doctor.selection import training_gpus

    gpus = training_gpus(facts)
    gpu = gpus[0] if gpus else None
    if gpu is None:
        return choice_for_tag("cpu", "no NVIDIA or AMD GPU was found")
    if gpu.vendor == "nvidia":
        return _choose_cuda(gpu)
    if gpu.vendor == "amd":
        return _choose_rocm(gpu, facts.host.rocm_version)
    return choice_for_tag("cpu", f"GPU vendor '{gpu.vendor}' has no PyTorch wheel index here")


def _fits_compute_capability(entry: dict[str, Any], capability: str | None) -> bool:
    if not capability:
        return True
    have = parse_version(capability)
    low, high = entry.get("min_compute_capability"), entry.get("max_compute_capability")
    return (low is None or have >= parse_version(str(low))) and (high is None or have <= parse_version(str(high)))


def _choose_cuda(gpu: GpuFacts) -> WheelChoice:
    driver, native = gpu.driver_version, gpu.cuda_driver_version
    if not driver and not native:
        raise ProblemFound(
            f"{gpu.name}: no NVIDIA driver answered, so no CUDA wheel can be chosen; "
            "run 'gpudoctor install-cuda' first, or pass --index cu128 (or cpu)"
        )
    for entry in cuda_indexes():
        if not _fits_compute_capability(entry, gpu.compute_capability):
            continue
        if native:
            fits = parse_version(native) >= parse_version(str(entry["cuda"]))
            how = f"driver {driver or '?'} supports CUDA {native}"
        else:
            fits = parse_version(driver or "0") >= parse_version(str(entry["min_driver"]))
            how = f"driver {driver} >= {entry['min_driver']}"
        if fits:
            return choice_for_tag(entry["tag"], f"{gpu.name}: {how}, so CUDA {entry['cuda']} wheels ({entry['tag']})")
    # Older drivers still run CUDA 12.x under minor-version compatibility (compat.yaml cuda_driver_minimum).
    floor = compat.min_driver_for_cuda("12")
    fallback = [e for e in cuda_indexes() if str(e["cuda"]).startswith("12.") and _fits_compute_capability(e, gpu.compute_capability)]
    if driver and floor and fallback and parse_version(driver) >= parse_version(floor):
        entry = fallback[-1]
        return choice_for_tag(
            entry["tag"],
            f"{gpu.name}: driver {driver} is older than {entry['tag']} wants ({entry['min_driver']}) but >= {floor}",
            [f"{entry['tag']} runs on driver {driver} under CUDA minor-version compatibility; "
             f"'gpudoctor install-cuda' updates the driver for full support"],
        )
    raise ProblemFound(
        f"{gpu.name}: driver {driver or '?'} is too old for any PyTorch CUDA wheel in compat.yaml "
        f"(CUDA 12 needs >= {floor}); run 'gpudoctor install-cuda', or pass --index cpu"
    )


def _choose_rocm(gpu: GpuFacts, rocm_version: str | None) -> WheelChoice:
    entries = rocm_indexes()
    if not rocm_version:
        entry = entries[0]
        return choice_for_tag(
            entry["tag"],
            f"{gpu.name}: ROCm is not installed, so the newest ROCm wheels ({entry['tag']})",
            ["the wheels bring their own ROCm libraries but need the amdgpu driver and the render group: "
             "'gpudoctor install-rocm' sets both up"],
        )
    have = parse_version(rocm_version).release[:2]
    for entry in entries:  # newest first: the same release, else the nearest older one
        if parse_version(str(entry["rocm"])).release[:2] <= have:
            return choice_for_tag(entry["tag"], f"{gpu.name}: ROCm {rocm_version} is installed, so {entry['tag']} wheels")
    oldest = entries[-1]
    raise ProblemFound(
        f"{gpu.name}: ROCm {rocm_version} is older than any PyTorch ROCm wheel in compat.yaml "
        f"(oldest {oldest['rocm']}); run 'gpudoctor install-rocm', or pass --index {oldest['tag']}"
    )
