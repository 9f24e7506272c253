"""Shared test fixtures: a recorded machine as "this machine", the CLI in-process at a fixed width with
colour off, and the datasets shipped in tests/fixtures/datasets.

The test host. No test reads the real machine's GPU, OS or driver state: for the whole session
every probe that is given no Sources — `gpudoctor check`, `plan --gpu auto`, train's preflight, in
this process or in a gpudoctor process a test starts — reads recorded machine $GPUDOCTOR_TEST_HOST
(tests/fixtures/machines/<name>, default "no-gpu"), through gpudoctor.probe.default_sources() and
GPUDOCTOR_PROBE_SOURCES. A test that depends on the host asks for one: `host("rtx-4090-ubuntu")`.
The user's ~/.cache is never read or written: XDG_CACHE_HOME points at a folder made for the session.
Real accelerators are hidden from torch too (CUDA_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES empty,
set before anything imports torch), so training tests run on the CPU on a GPU box as on CI.

    GPUDOCTOR_TEST_HOST=rtx-4090-ubuntu .venv/bin/python -m pytest   # the suite as on a healthy GPU box
"""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Before any import that could load torch.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["HIP_VISIBLE_DEVICES"] = ""
os.environ["GPUDOCTOR_PROBE_SOURCES"] = "machines:default_host_sources"
# gpudoctor's own cache (the remembered live check, memory corrections, the demo model) and the HF
# cache live in a folder of this session, never the user's ~/.cache (child Pythons inherit it).
SESSION_CACHE = None  # made by this process (child sessions share their parent's)
if "GPUDOCTOR_TEST_CACHE" not in os.environ:
    import tempfile

    SESSION_CACHE = os.environ["GPUDOCTOR_TEST_CACHE"] = os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gpudoctor-test-cache-")
# Child Pythons a test starts find `machines` (the factory above) on their path too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)

from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402
from machines import MACHINES, TEST_HOST_VARIABLE, current_host, fixture_sources  # noqa: E402

from gpudoctor.cli.main import run  # noqa: E402
from gpudoctor.probe import Sources  # noqa: E402

REPO = TESTS.parent
DATASETS = TESTS / "fixtures" / "datasets"


def pytest_report_header(config) -> str:
    return f"test host: {current_host()} (tests/fixtures/machines; set {TEST_HOST_VARIABLE} to change it)"


def pytest_unconfigure(config) -> None:
    if SESSION_CACHE is not None:
        import shutil

        shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def pytest_configure(config) -> None:
    name = os.environ.get(TEST_HOST_VARIABLE)
    if name and name not in MACHINES:
        raise pytest.UsageError(f"{TEST_HOST_VARIABLE}={name}: no such recorded machine; known: {', '.join(MACHINES)}")


@pytest.fixture
def host(monkeypatch):
    """`host("no-gpu")`: for this test, "this machine" is that recorded machine; returns its Sources."""

    def use(name: str) -> Sources:
        sources = fixture_sources(name)  # raises for an unknown machine
        monkeypatch.setenv(TEST_HOST_VARIABLE, name)
        return sources

    return use


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """A plain terminal: 100 columns, no colour, an empty home, cache and HF cache."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "50")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # the remembered live check, the demo model
    return tmp_path


@pytest.fixture
def cli(cli_env, capsys):
    """`cli("check", "--json")` runs gpudoctor in-process and returns exit code, stdout, stderr."""

    def invoke(*args: str) -> CliResult:
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def shipped_datasets() -> Path:
    """tests/fixtures/datasets: subsets of public fine-tuning data (see the README there)."""
    return DATASETS
