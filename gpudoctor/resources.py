"""Where things live: the data that ships with gpudoctor (profiles/, install/) and the cache folders
(gpudoctor's own and the Hugging Face cache, resolved by huggingface_hub's rules).

In a source checkout (or an editable install) they sit beside the package; a built wheel
carries them inside it as gpudoctor/_profiles and gpudoctor/_install (see pyproject.toml).
"""

from __future__ import annotations

import os
import re
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
    return Path(_home(environ)) / ".cache"


def hf_home(environ: Mapping[str, str] = os.environ) -> Path:
    """huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
    (huggingface_hub/constants.py, which also expands ~ and $VARS)."""
    default = os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join(_home(environ), ".cache"), "huggingface")
    return Path(_expand(environ.get("HF_HOME") or default, environ))


def hf_hub_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """Where huggingface_hub keeps downloaded repos: $HF_HUB_CACHE, else the legacy
    $HUGGINGFACE_HUB_CACHE, else HF_HOME/hub (huggingface_hub/constants.py). Read at call time, so
    the doctor's disk check, token counting and training look in one folder."""
    chosen = environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE") or str(hf_home(environ) / "hub")
    return Path(_expand(chosen, environ))


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def _expand(path: str, environ: Mapping[str, str]) -> str:
    """os.path.expandvars(os.path.expanduser(path)) against `environ` rather than the process's."""
    if path == "~" or path.startswith("~/"):
        path = _home(environ) + path[1:]
    return re.sub(r"\$(\w+|\{[^}]*\})", lambda m: environ.get(m.group(1).strip("{}"), m.group(0)), path)


def gpudoctor_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where gpudoctor keeps what it can rebuild: the demo model, the remembered live check."""
    return user_cache_dir(environ) / "gpudoctor"


def profiles_dir() -> Path:
    """The folder holding models/, gpus/ and compat.yaml."""
    return _first_existing(_PACKAGE / "_profiles", _PACKAGE.parent / "profiles")


def install_dir() -> Path:
    """The folder holding the shell installers (install-cuda.sh, install-rocm.sh)."""
    return _first_existing(_PACKAGE / "_install", _PACKAGE.parent / "install")
