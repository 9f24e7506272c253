"""Where the data that ships with gpudoctor lives: profiles/ and install/.

In a source checkout (or an editable install) they sit beside the package; a built wheel
carries them inside it as gpudoctor/_profiles and gpudoctor/_install (see pyproject.toml).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def user_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_CACHE_HOME, else $HOME/.cache (the XDG base-directory default)."""
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"])
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".cache"


def gpudoctor_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where gpudoctor keeps what it can rebuild: the demo model, the remembered live check."""
    return user_cache_dir(environ) / "gpudoctor"


def profiles_dir() -> Path:
    """The folder holding models/, gpus/ and compat.yaml."""
    return _first_existing(_PACKAGE / "_profiles", _PACKAGE.parent / "profiles")


def install_dir() -> Path:
    """The folder holding the shell installers (install-cuda.sh, install-rocm.sh)."""
    return _first_existing(_PACKAGE / "_install", _PACKAGE.parent / "install")
