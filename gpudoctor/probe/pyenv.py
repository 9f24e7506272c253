"""The Python environment, from package metadata only: nothing here imports torch.

The torch build flavour comes from the local version tag ("2.7.1+cu128" -> "cu128"); a wheel
without one (PyPI's default Linux torch) is named by the CUDA runtime it depends on.
"""

from __future__ import annotations

import re

from gpudoctor.probe.facts import PackageFacts, PythonFacts
from gpudoctor.probe.sources import Sources

PACKAGES = ("torch", "bitsandbytes", "transformers", "peft", "accelerate", "trl", "datasets", "flash-attn")


def torch_flavour(version: str, requires: list[str] | None = None) -> str | None:
    """"cu128" | "rocm6.4" | "cpu" | None, from the local tag or else torch's CUDA runtime requirement."""
    _, plus, local = version.partition("+")
    if plus:
        return local.lower()
    for line in requires or []:
        # PyPI's Linux torch pins e.g. "nvidia-cuda-runtime-cu12==12.8.90; platform_system == ..."
        match = re.match(r"nvidia-cuda-runtime(?:-cu\d+)?\s*==\s*(\d+)\.(\d+)", line)
        if match:
            return f"cu{match.group(1)}{match.group(2)}"
    return None


def probe_python(sources: Sources) -> PythonFacts:
    info = sources.python()
    facts = PythonFacts(
        executable=info.executable, version=info.version, in_venv=info.in_venv,
        env_kind=info.env_kind, externally_managed=info.externally_managed, python_headers=info.python_headers,
    )
    for name in PACKAGES:
        package = PackageFacts(name=name)
        try:
            package.version = sources.package_version(name)
            if name == "torch" and package.version:
                package.flavour = torch_flavour(package.version, sources.package_requires(name))
        except Exception as err:  # a broken dist-info (unreadable METADATA) is a fact, not a crash
            package.error = f"{type(err).__name__}: {err}"
        facts.packages[name] = package
    return facts
