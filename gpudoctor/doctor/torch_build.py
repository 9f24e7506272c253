"""Which PyTorch build is installed (CUDA, ROCm or CPU, and the runtime it was built for), and which bitsandbytes.

The live subprocess (torch.version.cuda / .hip) is the best witness; without it the wheel's local
tag says the same ('2.7.1+cu128', '2.7.1+rocm6.3', '2.7.1+cpu'). A PyPI wheel with no tag is a CUDA
build on Linux x86-64, but its CUDA version is then unknown until the live check runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudoctor.probe.facts import SystemFacts


@dataclass(frozen=True)
class TorchBuild:
    version: str
    kind: str | None  # "cuda" | "rocm" | "cpu" | None (cannot tell)
    runtime: str | None  # "12.8" for CUDA, "6.4" for ROCm
    evidence: str  # "live" | "wheel tag" | "default PyPI wheel"


def torch_build(facts: SystemFacts) -> TorchBuild | None:
    """The installed torch build, or None when torch is not installed."""
    package = facts.python.packages.get("torch")
    live = facts.python.live
    version = (package.version if package else None) or (live.torch_version if live else None)
    if version is None:
        return None
    if live is not None and live.ran and live.torch_version and not live.torch_error:
        if live.hip_version:
            return TorchBuild(version, "rocm", _major_minor(live.hip_version), "live")
        if live.cuda_version:
            return TorchBuild(version, "cuda", _major_minor(live.cuda_version), "live")
        return TorchBuild(version, "cpu", None, "live")
    flavour = (package.flavour if package else None) or _local_tag(version)
    if flavour:
        if flavour == "cpu":
            return TorchBuild(version, "cpu", None, "wheel tag")
        cuda = re.fullmatch(r"cu(\d+?)(\d)", flavour)
        if cuda:
            return TorchBuild(version, "cuda", f"{cuda.group(1)}.{cuda.group(2)}", "wheel tag")
        rocm = re.fullmatch(r"rocm(\d+(?:\.\d+)*)", flavour)
        if rocm:
            return TorchBuild(version, "rocm", _major_minor(rocm.group(1)), "wheel tag")
        return TorchBuild(version, None, None, "wheel tag")
    return TorchBuild(version, "cuda", None, "default PyPI wheel")


def bitsandbytes_version(facts: SystemFacts) -> str | None:
    """The installed bitsandbytes version (package metadata, else what the live check imported), or None."""
    package = facts.python.packages.get("bitsandbytes")
    live = facts.python.live
    return (package.version if package else None) or (live.bnb_version if live else None)


def _local_tag(version: str) -> str | None:
    return version.split("+", 1)[1] if "+" in version else None


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
