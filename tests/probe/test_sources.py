"""The real command runner and the Sources defaults: short timeouts, missing tools as FileNotFoundError."""

from __future__ import annotations

import sys

import pytest

from gpudoctor.probe.sources import Sources, run_command


def test_runs_with_the_c_locale():
    code, stdout, stderr = run_command([sys.executable, "-c", "import os; print(os.environ['LC_ALL'])"], 10)
    assert (code, stdout, stderr) == (0, "C\n", "")


def test_missing_tool_and_timeout():
    with pytest.raises(FileNotFoundError):
        run_command(["gpudoctor-no-such-tool"], 1)
    with pytest.raises(TimeoutError, match="did not answer within 0.2 s"):
        run_command([sys.executable, "-c", "import time; time.sleep(5)"], 0.2)


def test_paths_are_read_under_the_root(tmp_path):
    assert Sources(root=tmp_path).path("/sys/class/drm") == tmp_path / "sys" / "class" / "drm"
    assert Sources().path("/proc/meminfo").as_posix() == "/proc/meminfo"
