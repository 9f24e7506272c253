"""Reads profiles/compat.yaml: which driver a CUDA build needs, which bitsandbytes a backend needs.

Pure lookups over one data file; the doctor and the installers both ask here, so the numbers
live in exactly one place.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from gpudoctor.resources import profiles_dir


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The parsed compat.yaml."""
    with open(profiles_dir() / "compat.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def version_tuple(version: str) -> tuple[int, ...]:
    """'570.133.07' -> (570, 133, 7); non-numeric parts end the tuple ('2.5.1+cu124' -> (2, 5, 1))."""
    parts: list[int] = []
    for piece in version.replace("+", ".").replace("-", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits or digits != piece:
            if digits and piece.startswith(digits):
                parts.append(int(digits))
            break
        parts.append(int(digits))
    return tuple(parts)


def min_driver_for_cuda(cuda_version: str) -> str | None:
    """Lowest NVIDIA Linux driver that runs a CUDA `cuda_version` (e.g. '12.8') runtime, or None if unknown."""
    major = cuda_version.split(".")[0]
    value = table()["cuda_driver_minimum"].get(major)
    return str(value) if value is not None else None


def min_bitsandbytes(backend: str) -> str | None:
    """Lowest bitsandbytes release with a native library for backend 'cuda' | 'rocm' | 'cpu'."""
    value = table()["bitsandbytes_minimum"].get(backend)
    return str(value) if value is not None else None
