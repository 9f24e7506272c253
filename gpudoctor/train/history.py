"""The whole run's history across --resume: losses by step, resume points, tokens and train seconds, and train.log.

A resumed Trainer restores state.log_history from the checkpoint's trainer_state.json: the losses
of every step up to that checkpoint, from every earlier segment of the run, and none of the steps
after it that a killed segment trained but never saved (they are trained again). That is the
history the report starts from. What the log history does not hold (the real tokens trained on,
the seconds spent training, where the run was resumed) travels the same way: callbacks.Measure is
an ExportableState, so the Trainer writes its totals into every checkpoint's trainer_state.json
(stateful_callbacks["Measure"]) and the resumed segment adds its own to the totals of the
checkpoint it started from. Tokens and train seconds are therefore summed over the segments up to
the checkpoint each resume started from: work that was lost and redone is counted once.

train.log in the run folder gets one line when a segment starts and one when it ends (appended,
one write per line, never rewritten), so every segment of the run can be read there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "Measure"  # the key of callbacks.Measure in TrainerState.stateful_callbacks
TRAIN_LOG = "train.log"


@dataclass
class Carried:
    """What a checkpoint carries over from the segments before it."""

    tokens: int = 0
    train_seconds: float = 0.0
    resumes: list[dict[str, Any]] = field(default_factory=list)
    known: bool = True  # False: a checkpoint without gpudoctor's totals (tokens and seconds count from its step)


def by_step(pairs: list[tuple[int, float]] | list[list[float]]) -> list[tuple[int, float]]:
    """One value per step, in step order; the later of two values for a step wins (the redone step)."""
    kept: dict[int, float] = {}
    for step, value in pairs:
        kept[int(step)] = float(value)
    return sorted(kept.items())


def from_log_history(log_history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every entry of the Trainer's log history that has `key` ("loss", "eval_loss")."""
    return by_step([(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry])


def carried(state: Any) -> Carried:
    """The totals of the checkpoint a Trainer state was restored from; nothing for a run from step 0."""
    if not state.global_step:
        return Carried()
    stored = (state.stateful_callbacks or {}).get(STATE_NAME)
    attributes = stored.get("attributes") if isinstance(stored, dict) else None
    if not isinstance(attributes, dict):
        return Carried(known=False)
    return Carried(
        tokens=int(attributes.get("tokens", 0)),
        train_seconds=float(attributes.get("train_seconds", 0.0)),
        resumes=[dict(r) for r in attributes.get("resumes", [])],
    )


def resume_point(step: int) -> dict[str, Any]:
    """report.json's record of a --resume from checkpoint-<step> (the Trainer's name for it), now."""
    return {"at_step": step, "from_checkpoint": f"checkpoint-{step}", "time": now()}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def append_line(folder: Path, text: str) -> bool:
    """Append one line to <folder>/train.log: one write to a file opened for appending (O_APPEND), so a line
    is whole or absent and earlier lines are never touched; the file is created with the user's umask.
    False when it could not be written (a full disk): the log is a record, never a reason to stop a run.
    Under `accelerate launch` only the main process (RANK 0) writes it."""
    if os.environ.get("RANK", "0") != "0":
        return False
    line = f"{now()} {' '.join(text.split())}\n".encode()
    try:
        fd = os.open(folder / TRAIN_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError:
        return False
    try:
        written = os.write(fd, line)
        os.fsync(fd)
        return written == len(line)
    except OSError:
        return False
    finally:
        os.close(fd)


def start_text(*, model: str, data: str, settings: Any, training: Any, device: str, checkpoint: Path | None) -> str:
    """train.log's line for a segment's start: what it trains, how, and from where."""
    where = f"resumed from {checkpoint.name}" if checkpoint else "started"
    return (
        f"{where}: model {model}, data {data}, device {device}, {settings.method} r={settings.lora_r} alpha={settings.lora_alpha} "
        f"seq_len {settings.seq_len}, micro batch {settings.micro_batch} × accumulation {settings.grad_accum}, "
        f"lr {training.lr:g}, epochs {training.epochs:g}, max_steps {training.max_steps or '-'}, seed {training.seed}"
    )


def end_text(*, status: str, steps: int, start_step: int, tokens: int, train_seconds: float, checkpoint: str | None) -> str:
    """train.log's line for a segment's end: its status and the step it reached."""
    saved = f", newest checkpoint {Path(checkpoint).name}" if checkpoint else ""
    return f"{status} at step {steps} (this segment from step {start_step}); run so far: {tokens} tokens in {train_seconds:.1f} s of training{saved}"
