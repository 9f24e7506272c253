"""Nothing in the suite depends on the machine it runs on: run as if on a healthy Ubuntu 24.04 + RTX 4090
box (GPUDOCTOR_TEST_HOST=rtx-4090-ubuntu, tests/conftest.py), every test has the outcome it has on the
default host (no-gpu, like CI): the same tests pass, the same few skip. (A test failing on both hosts
fails in its own right, not here: this test compares the two runs.)

Both runs are the whole suite but this file and most tests marked slow, side by side in two child pytest
sessions (about 45 s on 2 cores). The slow tests kept are the ones that train through the CLI
(tests/test_demo_cli.py, tests/train/test_cli.py): `demo` and `train` probe "this machine" to decide
between GPU and CPU. The others train through the library with explicit settings and never probe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from machines import TEST_HOST_VARIABLE

REPO = Path(__file__).resolve().parent.parent
GPU_HOST = "rtx-4090-ubuntu"
# -k matches module names too: every test not marked slow, and every test of the two CLI training modules.
SELECTION = "not slow or test_demo_cli.py or test_cli.py"


def start(host: str | None, folder: Path) -> tuple[subprocess.Popen, Path]:
    folder.mkdir()
    report = folder / "junit.xml"
    # each session its own host and its own cache folder (tests/conftest.py makes one when none is inherited)
    env = {k: v for k, v in os.environ.items() if k not in (TEST_HOST_VARIABLE, "GPUDOCTOR_TEST_CACHE")}
    env["OMP_NUM_THREADS"] = "1"  # two sessions side by side: one torch thread each, not two fighting for each core
    if host is not None:
        env[TEST_HOST_VARIABLE] = host
    argv = [
        sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", "-W", "ignore",
        "-k", SELECTION, "--ignore", str(Path(__file__).relative_to(REPO)),
        f"--basetemp={folder / 'tmp'}", f"--junitxml={report}",
    ]  # fmt: skip
    with (folder / "output.txt").open("w") as log:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), report


def outcomes(report: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from a junit report."""
    found = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return found


def test_the_suite_has_the_same_outcome_on_a_gpu_host_as_on_the_default_one(tmp_path):
    runs = {name: start(host, tmp_path / name) for name, host in (("default", None), (GPU_HOST, GPU_HOST))}
    results = {}
    try:
        for name, (process, report) in runs.items():
            code = process.wait(timeout=600)
            output = (tmp_path / name / "output.txt").read_text(errors="replace")
            assert code in (0, 1) and report.is_file(), f"pytest did not finish on the {name} host (exit {code}):\n{output[-4000:]}"
            results[name] = outcomes(report)
    finally:
        for process, _ in runs.values():
            process.kill()

    default, gpu = results["default"], results[GPU_HOST]
    assert len(default) > 500  # the whole suite ran, not a stray subset
    assert sorted(gpu) == sorted(default)
    changed = {test: f"{default[test]} on the default host, {gpu[test]} on {GPU_HOST}" for test in default if gpu[test] != default[test]}
    assert changed == {}  # skips (and expected failures, which junit also calls skipped) included
