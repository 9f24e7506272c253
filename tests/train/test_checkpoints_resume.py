"""--resume on the tiny model: the chosen checkpoint is verified once (check_output's Choice is passed
through to the lines that say it), and the whole run's figures count each step once."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from gpudoctor.errors import EXIT_INTERRUPTED, GpudoctorError
from gpudoctor.train import checkpoints
from gpudoctor.train.callbacks import Faults
from gpudoctor.train.run import train

pytestmark = pytest.mark.slow


def console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def resumed(tiny_model, tiny_config, support_records, tmp_path_factory):
    """4 steps, a checkpoint after each: stopped by SIGINT at step 3, checkpoint-3's rng_state.pth emptied,
    then --resume (from checkpoint-2) to the end. Returns the config, the report, what the resume printed
    and how often each checkpoint was verified during it."""
    folder = tmp_path_factory.mktemp("resumed")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    config = tiny_config(tiny_model, data, folder / "run", max_steps=4, save_steps=1)
    with pytest.raises(GpudoctorError) as stopped:
        train(config, console=console(), faults=Faults(interrupt_at_step=3))
    assert stopped.value.exit_code == EXIT_INTERRUPTED
    (folder / "run" / "checkpoints" / "checkpoint-3" / "rng_state.pth").write_bytes(b"")
    verified: Counter[str] = Counter()
    problem = checkpoints.problem

    def counted(path: Path) -> str | None:
        verified[path.name] += 1
        return problem(path)

    out = console()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoints, "problem", counted)
        report = train(config, resume=True, console=out)
    return config, report, out.file.getvalue(), verified


def test_resume_verifies_each_checkpoint_once_and_says_which_it_passed_over(resumed):
    _, report, said, verified = resumed
    assert report.start_step == 2 and report.steps == 4
    assert dict(verified) == {"checkpoint-3": 1, "checkpoint-2": 1}
    lines = said.splitlines()
    skipped = next((i for i, line in enumerate(lines) if line.startswith("skipped checkpoint-3: rng_state.pth ")), None)
    assert skipped is not None, said
    assert lines[skipped].endswith("; resuming from the previous one")
    assert lines[skipped + 1] == "resuming from checkpoint-2 (complete, every file checked)"


def test_tokens_count_each_trained_row_once_across_a_resume(resumed):
    """The DataLoader reads one batch ahead; that batch never trains when a segment stops, and was counted."""
    from gpudoctor.train.packing import HeaviestFirst
    from gpudoctor.train.run import prepare

    config, report, _, _ = resumed
    lengths = [row.real_tokens for row in prepare(config, resume=True).train_rows]
    order = HeaviestFirst(lengths, 2, config.training.seed).order(0)  # the rows in the Trainer's order, 2 a step
    trained = [lengths[i] for i in order[: 2 * 4]]
    assert report.tokens == sum(trained)
    state = json.loads((Path(config.output) / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["Measure"]["attributes"]["tokens"] == sum(trained[:4])  # what the resume carried on from


def test_tensorboard_shows_each_step_once_after_steps_were_redone(resumed):
    """Step 3 was trained, then redone after the resume from checkpoint-2: the writer of the resumed segment
    purges steps from 3 on (SummaryWriter's purge_step), so TensorBoard holds the redone value only."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, report, _, _ = resumed
    events = EventAccumulator(str(Path(config.output) / "tb"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [e.step for e in scalars] == [1, 2, 3, 4]
    losses = dict(report.losses)
    assert all(e.value == pytest.approx(losses[e.step], abs=1e-5) for e in scalars)
