"""Reads profiles/compat.yaml: which driver a CUDA build needs, which bitsandbytes a backend needs.

Pure lookups over one data file; the doctor and the installers both ask here, so the numbers
live in exactly one place.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from gpudoctor.resources import profiles_dir


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The parsed compat.yaml."""
    with open(profiles_dir() / "compat.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def parse_version(version: str) -> Version:
    """A version as packaging reads it (PEP 440: '0.49.1rc1' sorts after '0.49.0', before '0.49.1');
    a local tag is dropped ('2.5.1+cu124' → 2.5.1). Driver strings that are not PEP 440 ('570.133.07')
    parse by their leading numbers."""
    try:
        return Version(Version(version).public)
    except InvalidVersion:
        numbers = re.match(r"\d+(\.\d+)*", version.strip())
        return Version(numbers.group(0) if numbers else "0")


def version_at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def min_driver_for_cuda(cuda_version: str) -> str | None:
    """Lowest NVIDIA Linux driver that runs a CUDA `cuda_version` (e.g. '12.8') runtime, or None if unknown.
    CUDA 11 on go by major (minor-version compatibility); older releases each by their own minimum."""
    major = cuda_version.split(".")[0]
    exact = table().get("cuda_driver_minimum_exact", {}).get(".".join(cuda_version.split(".")[:2]))
    value = exact or table()["cuda_driver_minimum"].get(major)
    return str(value) if value is not None else None


def minor_compatible(cuda_version: str) -> bool:
    """Whether a driver for any CUDA of this major runs this release (true from CUDA 11 on)."""
    return parse_version(cuda_version).major >= 11


def driver_cuda_runs(supported: str, runtime: str) -> bool:
    """A driver that supports CUDA `supported` runs a `runtime` build: same major from CUDA 11 on
    (minor-version compatibility), else only `runtime` ≤ `supported`."""
    if minor_compatible(runtime) and minor_compatible(supported):
        return parse_version(supported).major >= parse_version(runtime).major
    return version_at_least(supported, runtime)


def min_bitsandbytes(backend: str) -> str | None:
    """Lowest bitsandbytes release with a native library for backend 'cuda' | 'rocm' | 'cpu'."""
    value = table()["bitsandbytes_minimum"].get(backend)
    return str(value) if value is not None else None
