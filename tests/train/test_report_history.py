"""The report keeps the whole run across --resume: losses once per step, resume points, summed tokens/seconds, train.log."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpudoctor.errors import EXIT_INTERRUPTED, GpudoctorError
from gpudoctor.train import history
from gpudoctor.train.callbacks import Faults
from gpudoctor.train.report import TrainReport, loss_figure
from gpudoctor.train.run import train

pytestmark = pytest.mark.slow

STEPS = 6
EVAL_ROWS = 4  # held out: the Trainer evaluates at every checkpoint (steps 2, 4, 6)


def quiet_console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=100)


def interrupted(config, at_step: int, *, resume: bool = False) -> None:
    with pytest.raises(GpudoctorError) as err:
        train(config, resume=resume, console=quiet_console(), faults=Faults(interrupt_at_step=at_step))
    assert err.value.exit_code == EXIT_INTERRUPTED and f"at step {at_step}" in str(err.value)


def saved_report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def log_lines(folder: Path) -> list[str]:
    return (folder / history.TRAIN_LOG).read_text(encoding="utf-8").splitlines()


def assert_whole_run(saved: dict, reference: dict) -> None:
    """Steps 1..N once each, in order, each loss the uninterrupted run's (within 1e-4)."""
    steps = [int(step) for step, _ in saved["losses"]]
    assert steps == list(range(1, STEPS + 1))
    expected = dict((int(s), v) for s, v in reference["losses"])
    for step, loss in saved["losses"]:
        assert loss == pytest.approx(expected[int(step)], abs=1e-4), step
    assert [int(s) for s, _ in saved["eval_losses"]] == [2, 4, 6]
    for (_, got), (_, want) in zip(saved["eval_losses"], reference["eval_losses"]):
        assert got == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def data(support_records, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("history-data") / "support.json"
    path.write_text(json.dumps(support_records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference_folder(tiny_model, tiny_config, data, tmp_path_factory) -> Path:
    """One uninterrupted 6-step run (checkpoints and evals every 2 steps); copy it before changing it."""
    folder = tmp_path_factory.mktemp("history-reference") / "run"
    train(tiny_config(tiny_model, data, folder, val_size=EVAL_ROWS), console=quiet_console())
    return folder


@pytest.fixture(scope="module")
def reference(reference_folder) -> dict:
    """report.json of the uninterrupted run."""
    return saved_report(reference_folder)


@pytest.fixture(scope="module")
def resumed_once(tiny_model, tiny_config, data, tmp_path_factory) -> SimpleNamespace:
    """Interrupted at step 3, then --resume to the end; what the folder held in between."""
    folder = tmp_path_factory.mktemp("history-once") / "run"
    config = tiny_config(tiny_model, data, folder, val_size=EVAL_ROWS)
    interrupted(config, 3)
    first, first_png = saved_report(folder), (folder / "loss.png").read_bytes()
    first_mtime = (folder / "loss.png").stat().st_mtime_ns
    time.sleep(0.05)  # mtimes apart even on coarse clocks
    train(config, resume=True, console=quiet_console())
    return SimpleNamespace(folder=folder, first=first, first_png=first_png, first_mtime=first_mtime, final=saved_report(folder))


def test_report_after_a_resume_holds_every_step_once_with_the_uninterrupted_losses(resumed_once, reference):
    first, final = resumed_once.first, resumed_once.final
    assert [int(s) for s, _ in first["losses"]] == [1, 2, 3] and first["status"] == "interrupted"
    assert final["status"] == "finished" and final["steps"] == STEPS and final["start_step"] == 3
    assert_whole_run(final, reference)
    # step 3's loss is the first segment's (it was saved in checkpoint-3), not a second value
    assert final["losses"][2][1] == pytest.approx(first["losses"][2][1], abs=1e-6)


def test_report_marks_the_resume_point(resumed_once):
    final = resumed_once.final
    assert [(r["at_step"], r["from_checkpoint"]) for r in final["resumes"]] == [(3, "checkpoint-3")]
    assert time.strptime(final["resumes"][0]["time"], "%Y-%m-%dT%H:%M:%S%z")
    assert resumed_once.first["resumes"] == []


def test_tokens_and_train_seconds_are_summed_over_the_segments(resumed_once, reference):
    first, final = resumed_once.first, resumed_once.final
    assert 0 < first["tokens"] < final["tokens"]
    assert 0 < first["train_seconds"] < final["train_seconds"]
    assert final["tokens_per_s"] == pytest.approx(final["tokens"] / final["train_seconds"], rel=0.02)
    # a batch counts once it has trained, not when accelerate reads it ahead: the segments add up exactly
    assert final["tokens"] == reference["tokens"]


def test_loss_png_is_drawn_again_for_the_whole_run(resumed_once):
    png = resumed_once.folder / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_mtime_ns > resumed_once.first_mtime
    assert png.read_bytes() != resumed_once.first_png


def test_train_log_keeps_both_segments(resumed_once):
    lines = log_lines(resumed_once.folder)
    assert len(lines) == 4, lines
    assert " started: " in lines[0] and "max_steps 6" in lines[0] and "lr 0.005" in lines[0]
    assert "interrupted at step 3" in lines[1]
    assert "resumed from checkpoint-3" in lines[2]
    assert "finished at step 6" in lines[3] and "from step 3" in lines[3]


def test_tensorboard_holds_both_segments_in_one_folder(resumed_once, reference):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = resumed_once.folder / "tb"
    assert len([p for p in tb.iterdir() if "tfevents" in p.name]) == 2  # one file per segment, same folder
    events = EventAccumulator(str(tb))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [e.step for e in scalars] == list(range(1, STEPS + 1))
    expected = dict((int(s), v) for s, v in reference["losses"])
    assert all(e.value == pytest.approx(expected[e.step], abs=1e-4) for e in scalars)


def test_two_resumes_in_a_row(tiny_model, tiny_config, data, reference, tmp_path):
    folder = tmp_path / "run"
    config = tiny_config(tiny_model, data, folder, val_size=EVAL_ROWS)
    interrupted(config, 2)
    interrupted(config, 4, resume=True)
    middle = saved_report(folder)
    assert [int(s) for s, _ in middle["losses"]] == [1, 2, 3, 4] and middle["start_step"] == 2
    train(config, resume=True, console=quiet_console())
    final = saved_report(folder)
    assert_whole_run(final, reference)
    assert [(r["at_step"], r["from_checkpoint"]) for r in final["resumes"]] == [(2, "checkpoint-2"), (4, "checkpoint-4")]
    assert middle["tokens"] < final["tokens"] and middle["train_seconds"] < final["train_seconds"]
    lines = log_lines(folder)
    assert [line.split(" ", 1)[1].split(":")[0].split(" (")[0] for line in lines] == [
        "started", "interrupted at step 2", "resumed from checkpoint-2", "interrupted at step 4",
        "resumed from checkpoint-4", "finished at step 6",
    ]  # fmt: skip


def test_steps_after_the_checkpoint_are_redone_not_counted_twice(tiny_model, tiny_config, data, reference_folder, reference, tmp_path):
    """A segment killed after step 6 but before checkpoint-6 was complete: --resume goes on from checkpoint-4,
    redoes steps 5 and 6, and the report holds each once (the redone value), with the resume at 4."""
    folder = tmp_path / "run"
    shutil.copytree(reference_folder, folder)  # a run is known by model, data and settings, not by its folder
    config = tiny_config(tiny_model, data, folder, val_size=EVAL_ROWS)
    killed = saved_report(folder)
    shutil.rmtree(folder / "checkpoints" / "checkpoint-6")
    train(config, resume=True, console=quiet_console())
    final = saved_report(folder)
    assert_whole_run(final, reference)
    assert [r["at_step"] for r in final["resumes"]] == [4] and final["start_step"] == 4
    # tokens: checkpoint-4's total plus steps 5-6 once more, not the killed segment's steps 5-6 as well
    assert killed["tokens"] == reference["tokens"] == final["tokens"]
    # TensorBoard: the killed segment's event file keeps its steps 5-6, the resumed one purges them
    # (SummaryWriter's purge_step) and writes them again, so each step shows once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))


# The pieces, without training.


def test_by_step_keeps_one_value_per_step_and_the_later_one_wins():
    assert history.by_step([(2, 0.5), (1, 0.9), (2, 0.4), (3, 0.3)]) == [(1, 0.9), (2, 0.4), (3, 0.3)]


def test_log_history_gives_losses_and_eval_losses_by_step():
    log_history = [
        {"loss": 2.0, "step": 1}, {"loss": 1.5, "step": 2}, {"eval_loss": 1.7, "step": 2},
        {"train_runtime": 3.0, "step": 2},
    ]  # fmt: skip
    assert history.from_log_history(log_history, "loss") == [(1, 2.0), (2, 1.5)]
    assert history.from_log_history(log_history, "eval_loss") == [(2, 1.7)]


def test_carried_totals_come_from_the_checkpoint_state_or_are_marked_unknown():
    stored = {history.STATE_NAME: {"args": {}, "attributes": {"tokens": 120, "train_seconds": 4.5, "resumes": [{"at_step": 2}]}}}
    got = history.carried(SimpleNamespace(global_step=4, stateful_callbacks=stored))
    assert (got.tokens, got.train_seconds, got.resumes, got.known) == (120, 4.5, [{"at_step": 2}], True)
    older = history.carried(SimpleNamespace(global_step=4, stateful_callbacks={"TrainerControl": {}}))
    assert (older.tokens, older.known) == (0, False)
    fresh = history.carried(SimpleNamespace(global_step=0, stateful_callbacks=stored))  # a run from step 0 carries nothing
    assert (fresh.tokens, fresh.resumes, fresh.known) == (0, [], True)


def test_train_log_appends_whole_lines_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        assert history.append_line(tmp_path, "first\nsegment")
        assert history.append_line(tmp_path, "second")
    finally:
        os.umask(old)
    lines = log_lines(tmp_path)
    assert [line.split(" ", 1)[1] for line in lines] == ["first segment", "second"]  # one line each, in order
    assert (tmp_path / history.TRAIN_LOG).stat().st_mode & 0o777 == 0o640
    assert not history.append_line(tmp_path / "missing", "x")  # a log it cannot write never stops the run


def test_loss_plot_draws_a_line_at_each_resume():
    report = TrainReport(
        output="out", model="m", data="d.json", settings={}, training={}, device="cpu", status="finished", steps=6,
        start_step=4, records=1, train_rows=1, eval_rows=0, packed=True, truncated=0, duration_s=1.0, tokens=1,
        tokens_per_s=None, planned_peak_bytes=None, measured_peak_allocated_bytes=None, measured_peak_reserved_bytes=None,
        measured_peak_rss_bytes=None, losses=[[s, 1.0 / s] for s in range(1, 7)],
        resumes=[{"at_step": 2, "from_checkpoint": "checkpoint-2", "time": ""}, {"at_step": 4, "from_checkpoint": "checkpoint-4", "time": ""}],
    )  # fmt: skip
    axes = loss_figure(report).axes[0]
    vertical = sorted(line.get_xdata()[0] for line in axes.lines if len(set(line.get_xdata())) == 1)
    assert vertical == [2, 4]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["training loss", "resumed"]
