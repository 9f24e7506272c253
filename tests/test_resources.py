"""The one Hugging Face cache resolver agrees with huggingface_hub's own, for every variable it honours."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpudoctor.resources import hf_home, hf_hub_cache

CASES = [
    {"HOME": "/h"},
    {"HOME": "/h", "XDG_CACHE_HOME": "/c"},
    {"HOME": "/h", "XDG_CACHE_HOME": "/c", "HF_HOME": "/y"},
    {"HOME": "/h", "HF_HOME": "~/hf"},
    {"HOME": "/h", "HF_HOME": "/y", "HF_HUB_CACHE": "/x/hub"},
    {"HOME": "/h", "HUGGINGFACE_HUB_CACHE": "/legacy"},
    {"HOME": "/h", "HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HUB_CACHE": "/new"},
    {"HOME": "/h", "DISKS": "/mnt/big", "HF_HOME": "$DISKS/hf"},
]


def huggingface_hubs_own(environ: dict[str, str]) -> tuple[str, str]:
    """HF_HOME and HF_HUB_CACHE as huggingface_hub computes them in a process with exactly `environ`."""
    code = "import json; from huggingface_hub import constants as c; print(json.dumps([c.HF_HOME, c.HF_HUB_CACHE]))"
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    return tuple(json.loads(done.stdout))


@pytest.mark.parametrize("environ", CASES, ids=lambda e: ",".join(sorted(k for k in e if k != "HOME")) or "defaults")
def test_hf_cache_matches_huggingface_hub(environ):
    assert (str(hf_home(environ)), str(hf_hub_cache(environ))) == huggingface_hubs_own(environ)
