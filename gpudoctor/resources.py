"""Where the data that ships with gpudoctor lives: profiles/ and install/.

In a source checkout (or an editable install) they sit beside the package; a built wheel
carries them inside it as gpudoctor/_profiles and gpudoctor/_install (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def profiles_dir() -> Path:
    """The folder holding models/, gpus/ and compat.yaml."""
    return _first_existing(_PACKAGE / "_profiles", _PACKAGE.parent / "profiles")


def install_dir() -> Path:
    """The folder holding the shell installers (install-cuda.sh, install-rocm.sh)."""
    return _first_existing(_PACKAGE / "_install", _PACKAGE.parent / "install")
