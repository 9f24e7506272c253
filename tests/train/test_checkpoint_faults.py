"""Faults during a checkpoint save (issue 12): SIGKILL at several moments, a full disk, a double Ctrl-C,
corrupted checkpoint files. Each asserts the exit code, one line and no traceback, that nothing the run
had is lost (the previous checkpoint complete, the data untouched), and that `--resume` then ends at the
same step with the same losses as an uninterrupted run (within 1e-4).

The run is the tiny model for 3 steps with a checkpoint after every step; faults hit the save of
checkpoint-2, so checkpoint-1 is the one to fall back on. Faults are injected through the
GPUDOCTOR_INJECT_*_DURING_SAVE variables (callbacks.Faults, trainer.SaveFaults); SIGKILL runs in a
subprocess of the CLI, everything else in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.cli.main import run
from gpudoctor.train import checkpoints

pytestmark = pytest.mark.slow

STEPS = ("--skip-check", "--max-steps", "3", "--save-steps", "1", "--seq-len", "256", "--micro-batch", "2", "--grad-accum", "1", "--lora-r", "8")
FAULTS = ("KILL", "ENOSPC", "SIGINT", "INTERRUPT")


def args(model: Path, data: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), *STEPS, *more]


def one_error_line(stderr: str) -> str:
    """The error is the last line of stderr, the only one of its kind, and there is no traceback."""
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("gpudoctor: error: ")] == lines[-1:], stderr
    assert "Traceback" not in stderr
    return lines[-1]


def losses(out: Path) -> dict[int, float]:
    return {int(step): loss for step, loss in json.loads((out / "report.json").read_text())["losses"]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tiny_model, support_records, tmp_path_factory):
    """The data file and an uninterrupted run (the reference: checkpoints 1, 2, 3)."""
    folder = tmp_path_factory.mktemp("faults")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("XDG_CACHE_HOME", str(folder / "xdg"))
        for name in FAULTS:
            env.delenv(f"GPUDOCTOR_INJECT_{name}_DURING_SAVE", raising=False)
        assert run(args(tiny_model, data, folder / "reference")) == 0
    assert sorted(p.name for p in (folder / "reference" / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    return data, folder / "reference"


@pytest.fixture
def fresh(runs, cli_env, tmp_path):
    """A copy of the data file (a test checks it is untouched) and the reference's losses."""
    data, reference = runs
    copy = tmp_path / "support.json"
    shutil.copy(data, copy)
    return copy, losses(reference)


@pytest.fixture
def unfinished(runs, tmp_path):
    """A copy of the reference as if it had stopped after checkpoint-3 (no adapter yet; its run.yaml names the module's data)."""
    out = tmp_path / "out"
    shutil.copytree(runs[1], out)
    for name in ("adapter_model.safetensors", "adapter_config.json", "report.json"):
        (out / name).unlink(missing_ok=True)
    return out


def assert_fell_back_cleanly(out: Path, at: int) -> None:
    """checkpoint-<at> was never placed, checkpoint-1 is whole and is what a resume would use."""
    folder = out / "checkpoints"
    assert not (folder / f"checkpoint-{at}").exists()
    assert checkpoints.problem(folder / "checkpoint-1") is None
    assert checkpoints.resumable(out).checkpoint == folder / "checkpoint-1"


def resume_matches(cli, tiny_model, data: Path, out: Path, reference: dict[int, float], *, from_step: int) -> str:
    """--resume finishes at step 3 with the reference's losses after `from_step`; returns its stderr."""
    before = digest(data)
    result = cli(*args(tiny_model, data, out, "--resume"))
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"resuming from checkpoint-{from_step}" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and report["steps"] == 3
    after = losses(out)
    for step in range(from_step + 1, 4):
        assert after[step] == pytest.approx(reference[step], rel=1e-4, abs=1e-4), step
    assert digest(data) == before and (out / "adapter_model.safetensors").is_file()
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no leftovers
    return result.stderr


# after the weights, after optimizer.pt (a middle file), every file written but no marker, marked but not renamed
KILL_MOMENTS = ("1", "5", "last", "sealed")


def test_sigkill_at_every_moment_of_a_save_leaves_a_resumable_run(cli, tiny_model, fresh, tmp_path):
    """One run killed during the save of checkpoint-2, then a --resume killed there at the next moment, and
    so on; each start removes the previous one's partial save, saying so; the last --resume finishes."""
    data, reference = fresh
    out = tmp_path / "out"
    for number, moment in enumerate(KILL_MOMENTS):
        env = {**os.environ, "GPUDOCTOR_INJECT_KILL_DURING_SAVE": f"2:{moment}", "OMP_NUM_THREADS": "1"}
        again = ("--resume",) if number else ()
        killed = subprocess.run([sys.executable, "-m", "gpudoctor", *args(tiny_model, data, out, *again)], env=env, capture_output=True, text=True, timeout=600)
        assert killed.returncode == -9, killed.stderr
        assert "Traceback" not in killed.stderr
        assert (out / "checkpoints" / ".saving-checkpoint-2").is_dir(), moment  # it died mid-save
        assert_fell_back_cleanly(out, at=2)
        if number:
            assert "resuming from checkpoint-1" in killed.stderr and "removed" in killed.stderr and "unfinished save of checkpoint-2" in killed.stderr
        if moment in ("last", "sealed"):  # every file was written: the marker is what tells
            staged = out / "checkpoints" / ".saving-checkpoint-2" / "checkpoint-2"
            assert (staged / "trainer_state.json").is_file() and (staged / checkpoints.MARKER).is_file() == (moment == "sealed")
    (out / "checkpoints" / "notes.txt").write_text("mine")  # a user's file beside the checkpoints: never touched
    said = resume_matches(cli, tiny_model, data, out, reference, from_step=1)
    assert "removed" in said and ".saving-checkpoint-2" in said and "unfinished save" in said
    assert (out / "checkpoints" / "notes.txt").read_text() == "mine"


def test_full_disk_then_ctrl_c_twice_then_once_during_saves(cli, tiny_model, fresh, tmp_path, monkeypatch):
    """A full disk during the save of checkpoint-2: exit 1 and one line, the partial save removed, checkpoint-1
    kept. --resume, and two SIGINTs during that save: exit 130, the partial save discarded. --resume, and one
    SIGINT during it: the save finishes, exit 130. The last --resume finishes like the uninterrupted run."""
    data, reference = fresh
    out = tmp_path / "out"
    monkeypatch.setenv("GPUDOCTOR_INJECT_ENOSPC_DURING_SAVE", "2:5")
    result = cli(*args(tiny_model, data, out))
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "checkpoint-2" in line and str(out / "checkpoints") in line and "the disk is full" in line
    assert "removed the partial checkpoint" in line and "checkpoint-1 is kept" in line and "--resume" in line
    assert f"needs about {checkpoints.size_of(out / 'checkpoints' / 'checkpoint-1') / 1024**2:,.1f} MiB" in line
    assert not (out / "checkpoints" / ".saving-checkpoint-2").exists()
    assert_fell_back_cleanly(out, at=2)
    monkeypatch.delenv("GPUDOCTOR_INJECT_ENOSPC_DURING_SAVE")

    monkeypatch.setenv("GPUDOCTOR_INJECT_SIGINT_DURING_SAVE", "2:5:2")  # two SIGINTs after optimizer.pt
    result = cli(*args(tiny_model, data, out, "--resume"))
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "gpudoctor: interrupted" and "Traceback" not in result.stderr, result.stderr
    assert not (out / "checkpoints" / ".saving-checkpoint-2").exists()
    assert_fell_back_cleanly(out, at=2)

    monkeypatch.setenv("GPUDOCTOR_INJECT_SIGINT_DURING_SAVE", "2:1:1")  # one SIGINT after the weights
    result = cli(*args(tiny_model, data, out, "--resume"))
    assert result.exit_code == 130
    assert "interrupted at step 2" in one_error_line(result.stderr) and "--resume" in result.stderr
    assert checkpoints.resumable(out).checkpoint == out / "checkpoints" / "checkpoint-2"
    assert not (out / "checkpoints" / "checkpoint-3").exists()
    monkeypatch.delenv("GPUDOCTOR_INJECT_SIGINT_DURING_SAVE")
    resume_matches(cli, tiny_model, data, out, reference, from_step=2)


def test_a_second_ctrl_c_while_a_save_is_sealed_waits_for_it(cli, tiny_model, fresh, tmp_path, monkeypatch):
    data, _ = fresh
    out = tmp_path / "out"
    monkeypatch.setenv("GPUDOCTOR_INJECT_SIGINT_DURING_SAVE", "2:sealed:2")
    result = cli(*args(tiny_model, data, out))
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "gpudoctor: interrupted" and "Traceback" not in result.stderr
    assert checkpoints.resumable(out).checkpoint == out / "checkpoints" / "checkpoint-2"  # placed whole, then stopped
    assert not (out / "checkpoints" / ".saving-checkpoint-2").exists() and not (out / "checkpoints" / "checkpoint-3").exists()


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = {
    "truncated adapter": (lambda c: truncate(c / "adapter_model.safetensors"), "adapter_model.safetensors"),
    "0-byte rng_state": (lambda c: (c / "rng_state.pth").write_bytes(b""), "rng_state.pth"),
    "truncated optimizer": (lambda c: truncate(c / "optimizer.pt", 0.9), "optimizer.pt"),
    "bad trainer_state": (lambda c: (c / "trainer_state.json").write_text("{not json"), "trainer_state.json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint_is_skipped_with_the_reason(unfinished, damage):
    out = unfinished
    spoil, name = DAMAGE[damage]
    spoil(out / "checkpoints" / "checkpoint-3")
    choice = checkpoints.resumable(out)
    assert choice.checkpoint == out / "checkpoints" / "checkpoint-2"
    assert len(choice.skipped) == 1 and choice.skipped[0].startswith("skipped checkpoint-3: ") and name in choice.skipped[0]
    assert "\n" not in choice.skipped[0]
    (out / "checkpoints" / "checkpoint-3" / checkpoints.MARKER).unlink()  # a checkpoint saved without a marker is judged by its files alone
    assert checkpoints.resumable(out).checkpoint == out / "checkpoints" / "checkpoint-2"


def test_resume_falls_back_past_a_damaged_checkpoint(runs, cli, tiny_model, fresh, unfinished):
    """A 0-byte rng_state.pth once made --resume say "interrupted" (exit 130); now it is passed over, saying why."""
    _, reference = fresh
    (unfinished / "checkpoints" / "checkpoint-3" / "rng_state.pth").write_bytes(b"")
    said = resume_matches(cli, tiny_model, runs[0], unfinished, reference, from_step=2)
    assert "skipped checkpoint-3: rng_state.pth" in said


def test_no_loadable_checkpoint_is_one_line_naming_each(cli, runs, tiny_model, unfinished):
    out = unfinished
    for step in (1, 2, 3):
        (out / "checkpoints" / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"")
    result = cli(*args(tiny_model, runs[0], out, "--resume"))
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert all(f"skipped checkpoint-{step}: optimizer.pt" in line for step in (1, 2, 3)) and "--resume" in line
    assert all((out / "checkpoints" / f"checkpoint-{step}").is_dir() for step in (1, 2, 3))  # nothing deleted


def test_rotation_never_drops_the_only_complete_checkpoint(runs, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(runs[1] / "checkpoints" / "checkpoint-1", folder / "checkpoint-1")
    for step in (5, 6, 7):  # newer but incomplete: no marker, files missing
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"x")
    (folder / "mine.txt").write_text("user")
    assert checkpoints.rotate(folder, 1, keep=folder / "checkpoint-1") == []
    for step in (2, 3, 4):
        shutil.copytree(folder / "checkpoint-1", folder / f"checkpoint-{step}")
    removed = checkpoints.rotate(folder, 2, keep=folder / "checkpoint-4")
    assert sorted(p.name for p in removed) == ["checkpoint-1", "checkpoint-2"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-3", "checkpoint-4", "checkpoint-5", "checkpoint-6", "checkpoint-7", "mine.txt"]
