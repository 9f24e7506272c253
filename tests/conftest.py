"""Shared test fixtures: run the CLI in-process at a fixed width with colour off; the datasets shipped in tests/fixtures/datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from gpudoctor.cli.main import run

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO / "tests" / "fixtures" / "datasets"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """A plain terminal: 100 columns, no colour, an empty home and HF cache."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "50")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
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
