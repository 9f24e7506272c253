"""The installer scripts and the test stand-in are shellcheck clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fakebox import INSTALL, STANDIN

pytestmark = pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (sudo apt-get install shellcheck; .ci/run installs it)",
)


def test_installers_are_shellcheck_clean():
    scripts = sorted(str(p) for p in INSTALL.glob("*.sh"))
    assert len(scripts) == 3
    done = subprocess.run(["shellcheck", "--external-sources", *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_stand_in_is_shellcheck_clean():
    done = subprocess.run(["shellcheck", str(STANDIN)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
