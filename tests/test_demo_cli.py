"""`gpudoctor demo`: check → plan → train --demo → compare → chat, chained over the real commands."""

from __future__ import annotations

import html
import json

import pytest


@pytest.mark.slow
def test_demo_runs_every_step_then_reuses_the_finished_run(cli, host, tmp_path, monkeypatch):
    """On a box without a GPU (the demo's own case): the check says so, the plan is a CPU plan, it trains."""
    host("no-gpu")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    output = tmp_path / "demo"
    first = cli("demo", "--output", output, "--max-steps", "3", "--compare-prompts", "1", "--prompt", "My Iris Webcam will not turn on.")
    assert first.exit_code == 0, first.stderr
    steps = [line for line in first.stdout.splitlines() if line[:4] in ("1/4 ", "2/4 ", "3/4 ", "4/4 ")]
    assert [s[:3] for s in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert "gpudoctor check (sizes in GiB" in first.stdout  # the check's own output
    both = first.stdout + first.stderr
    assert "Plan: " in both and "RAM (GiB = 1024³): peak" in both  # the planner's own output
    assert "trained 3 steps" in both
    assert "Writing model shards" not in both  # library progress bars stay quiet
    assert json.loads((output / "report.json").read_text())
    assert (output / "adapter_model.safetensors").is_file()
    compared = json.loads((output / "compare.json").read_text())
    assert compared["prompts"] == 1 and compared["answers"][0]["base"] and compared["answers"][0]["tuned"]
    assert f"open {(output / 'report.html').resolve()} in a browser" in first.stdout.replace("\n", "")
    assert html.escape(compared["answers"][0]["tuned"]) in (output / "report.html").read_text()
    answer = first.stdout.split("prompt: My Iris Webcam will not turn on.", 1)[1].strip()
    assert answer  # the adapter answered something

    again = cli("demo", "--output", output, "--compare-prompts", "0")
    assert again.exit_code == 0
    assert "already holds a finished demo run" in again.stdout
    assert "trained 3 steps" not in again.stdout + again.stderr and "Plan: " not in again.stdout + again.stderr


def test_retrain_refuses_a_folder_that_is_not_a_demo_run(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("gpudoctor.cli.main.run", _only_check_passes(), raising=True)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = cli("demo", "--output", other, "--retrain")
    assert result.exit_code == 2
    assert "holds something other than a demo run" in result.stderr
    assert (other / "notes.txt").read_text() == "keep me"


def _only_check_passes():
    from gpudoctor.cli import main

    real = main.run

    def fake(argv):
        if argv and argv[0] == "check":
            return 0
        return real(argv)

    return fake
