"""Trainer callbacks: progress bar, losses, peak memory, the first-step check, signals, NaN guard and injected faults.

Faults (OOM, NaN, interrupt) can be injected at a step so the recovery paths are tested on CPU;
the CLI reads them from GPUDOCTOR_INJECT_OOM_AT_STEP (GPUDOCTOR_INJECT_OOM_RANK: on that rank only) /
_NAN_AT_STEP / _INTERRUPT_AT_STEP, and the
faults during a checkpoint save (SIGKILL, ENOSPC, SIGINTs) from GPUDOCTOR_INJECT_KILL_DURING_SAVE /
_ENOSPC_DURING_SAVE / _SIGINT_DURING_SAVE="<step>[:<n>|last|sealed[:<count>]]" (trainer.SaveFaults).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from gpudoctor.train import checkpoints, history, measure
from gpudoctor.train.packing import TokenCounter

GIB = 1024**3


@dataclass
class Faults:
    oom_at_step: int | None = None
    oom_rank: int | None = None  # accelerate launch: only this rank runs out (None: every one)
    nan_at_step: int | None = None
    interrupt_at_step: int | None = None
    # during the save of checkpoint <step>, after its <n>-th file ("last": all written, before the marker;
    # "sealed": marked, before the rename): SIGKILL, OSError(ENOSPC), or <count> SIGINTs (trainer.SaveFaults)
    kill_during_save: tuple[int, str] | None = None
    enospc_during_save: tuple[int, str] | None = None
    sigint_during_save: tuple[int, str, int] | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Faults:
        env = os.environ if environ is None else environ

        def step(name: str) -> int | None:
            value = env.get(f"GPUDOCTOR_INJECT_{name}_AT_STEP")
            return int(value) if value and value.isdigit() else None

        def during_save(name: str, default: str) -> tuple[int, str, int] | None:
            parts = (env.get(f"GPUDOCTOR_INJECT_{name}_DURING_SAVE") or "").split(":")  # <step>[:<n>|last|sealed[:<count>]]
            if not parts[0].isdigit():
                return None
            return int(parts[0]), (parts[1:2] or [default])[0], int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 2

        kill, enospc, sigint = during_save("KILL", "1"), during_save("ENOSPC", "2"), during_save("SIGINT", "2")
        rank = env.get("GPUDOCTOR_INJECT_OOM_RANK", "")
        return cls(
            step("OOM"), int(rank) if rank.isdigit() else None, step("NAN"), step("INTERRUPT"),
            kill_during_save=kill[:2] if kill else None, enospc_during_save=enospc[:2] if enospc else None, sigint_during_save=sigint,
        )  # fmt: skip


@dataclass
class RunLog:
    """What the run measured, shared by the callbacks and read into report.json.

    losses and eval_losses are the whole run's (the resumed checkpoint's log history, then this
    segment's); tokens and train_seconds this segment's, `carried` the totals before it (history.py)."""

    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0  # real tokens trained on since this Trainer began (its checkpoint's step)
    train_seconds: float = 0.0
    carried: history.Carried = field(default_factory=history.Carried)  # from the segments before
    trainers: int = 0  # Trainers begun in this process (more than one after an out-of-memory back-off)
    peak_allocated: int | None = None
    peak_reserved: int | None = None
    peak_rss: int | None = None
    stopped_by: str | None = None  # "signal" | "nan"
    nan_step: int | None = None
    last_good_dir: str | None = None
    start_step: int = 0
    end_step: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else None

    @property
    def run_tokens(self) -> int:
        """Real tokens over the whole run: the resumed checkpoint's total plus this segment's."""
        return self.carried.tokens + self.tokens

    @property
    def run_train_seconds(self) -> float:
        return self.carried.train_seconds + self.train_seconds

    @property
    def run_tokens_per_s(self) -> float | None:
        return self.run_tokens / self.run_train_seconds if self.run_train_seconds > 0 else None


def measure_memory(log: RunLog) -> None:
    import torch

    if torch.cuda.is_available():
        log.peak_allocated = max(log.peak_allocated or 0, torch.cuda.max_memory_allocated())
        log.peak_reserved = max(log.peak_reserved or 0, torch.cuda.max_memory_reserved())
    log.peak_rss = max(log.peak_rss or 0, measure.rss_peak())  # since training began (FirstStep resets it)


class Measure(TrainerCallback, ExportableState):
    """Losses per step, real tokens/s (from the collator's counter) and peak memory, over the whole run.

    On a resume the losses start from the checkpoint's log history and the totals from what `state()`
    left in its trainer_state.json (history.py). The Trainer saves `state()` in every checkpoint; it
    restores nothing itself (restore_callback_states_from_checkpoint stays False: on_train_begin reads it)."""

    def __init__(self, log: RunLog, counter: TokenCounter) -> None:
        self.log, self.counter = log, counter
        self._t0 = 0.0
        self._tokens0 = 0

    def state(self) -> dict[str, Any]:
        log = self.log
        totals = {"tokens": log.run_tokens, "train_seconds": round(log.run_train_seconds, 3), "resumes": log.carried.resumes}
        return {"args": {}, "attributes": totals}

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._tokens0 = time.perf_counter(), self.counter.total
        log = self.log
        log.start_step, log.end_step, log.tokens, log.train_seconds = state.global_step, state.global_step, 0, 0.0
        log.losses, log.eval_losses = history.from_log_history(state.log_history, "loss"), history.from_log_history(state.log_history, "eval_loss")
        log.carried = history.carried(state)
        if state.global_step and log.trainers == 0:  # a --resume (a later Trainer here is an out-of-memory back-off)
            log.carried.resumes.append(history.resume_point(state.global_step))
        log.trainers += 1
        state.stateful_callbacks[history.STATE_NAME] = self.state()  # a checkpoint made before gpudoctor kept totals has none

    def on_step_end(self, args, state, control, **kwargs):
        from gpudoctor.train.distributed import summed

        self.log.tokens = summed(self.counter.total - self._tokens0)  # accelerate launch: every rank's tokens
        self.log.train_seconds = time.perf_counter() - self._t0
        self.log.end_step = state.global_step
        measure_memory(self.log)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.log.losses.append((state.global_step, float(logs["loss"])))
        if "eval_loss" in logs:
            self.log.eval_losses.append((state.global_step, float(logs["eval_loss"])))


class FirstStep(TrainerCallback):
    """Peaks counted from the start of training; after the first optimizer step, `check` (run.py's
    comparison with the plan, which raises measure's OverBudget to re-plan before step 2).

    The first step is the worst case: its micro batches hold the longest rows, full
    (gpudoctor.train.packing.HeaviestFirst), so an out-of-memory comes at step 1 rather than later."""

    def __init__(self, device: str, check: Callable[[], None] | None = None) -> None:
        self.device, self.check = device, check

    def on_train_begin(self, args, state, control, **kwargs):
        measure.reset_peaks(self.device)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and self.check is not None:
            self.check()


class PeakWatch(TrainerCallback):
    """The peak of every figure measure reads, over all steps since training began (plan --verify)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peaks: dict[str, int] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        measure.reset_peaks(self.device)

    def on_step_end(self, args, state, control, **kwargs):
        for name, value in measure.read_peaks(self.device).items():
            self.peaks[name] = max(self.peaks.get(name, 0), value)


class Progress(TrainerCallback):
    """A rich progress bar: step, loss, real tokens/s, ETA, and GPU memory where there is a GPU."""

    def __init__(self, console: Any, log: RunLog) -> None:
        self.console, self.log = console, log
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self.progress = Bar(
            TextColumn("step"), MofNCompleteColumn(), BarColumn(bar_width=24),
            TextColumn("{task.fields[status]}"), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False, refresh_per_second=4,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")

    def _status(self) -> str:
        parts = []
        if self.log.losses:
            parts.append(f"loss {self.log.losses[-1][1]:.3f}")
        rate = self.log.tokens_per_s
        if rate:
            parts.append(f"{rate:,.0f} tok/s")
        if self.log.peak_reserved:
            parts.append(f"GPU {self.log.peak_reserved / GIB:.1f} GiB")
        return " · ".join(parts)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, status=self._status())

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, status=self._status())
            self.progress.stop()
            self.progress = None


class StopOnSignal(TrainerCallback):
    """SIGINT/SIGTERM: finish the current step, save a checkpoint, stop. A second signal aborts at once."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            if checkpoints.GUARD.defer():  # sealing, placing or discarding a checkpoint: abort when that ends
                return
            raise KeyboardInterrupt  # while a checkpoint's files are written, that save is discarded on the way out
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        from gpudoctor.train.distributed import agreed

        if agreed(self.received is not None):  # accelerate launch: every rank stops at the step any rank got it
            self.log.stopped_by = "signal"
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        from gpudoctor.train.distributed import agreed

        if agreed(self.received is not None) and state.global_step < state.max_steps:  # it came during this save, now complete: stop
            self.log.stopped_by = "signal"
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class NanGuard(TrainerCallback):
    """Stop when the loss turns NaN/inf and save the last LoRA weights that gave a finite loss.

    The weights at the start of step N produced step N's loss; when that loss is finite they are
    the last good state (named after step N-1, the optimizer step that made them).
    """

    def __init__(self, log: RunLog, model: Any, output_dir: str) -> None:
        self.log, self.model, self.output_dir = log, model, output_dir
        self._before: tuple[int, dict[str, Any]] | None = None
        self._good: tuple[int, dict[str, Any]] | None = None

    def _snapshot(self) -> dict[str, Any]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(self.model).items()}

    def on_step_begin(self, args, state, control, **kwargs):
        self._before = (state.global_step, self._snapshot())

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if math.isfinite(loss):
            self._good = self._before
            return
        self.log.stopped_by, self.log.nan_step = "nan", state.global_step
        control.should_training_stop = True
        control.should_save = False
        if self._good is not None:
            from peft import set_peft_model_state_dict

            step, weights = self._good
            target = os.path.join(self.output_dir, f"last-good-step-{step}")
            current = self._snapshot()
            set_peft_model_state_dict(self.model, weights)
            self.model.save_pretrained(target)
            set_peft_model_state_dict(self.model, current)
            self.log.last_good_dir = target


class InjectFaults(TrainerCallback):
    """Raise an out-of-memory error, poison a LoRA weight, or send SIGINT at a chosen step (tests)."""

    def __init__(self, faults: Faults, model: Any) -> None:
        self.faults, self.model = faults, model

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step + 1  # the step about to run, 1-based like the progress bar
        if self.faults.oom_at_step == step and self.faults.oom_rank in (None, int(os.environ.get("RANK", "0"))):
            import torch

            self.faults.oom_at_step = None  # once: the retried run must get past it
            raise torch.OutOfMemoryError(f"injected out-of-memory at step {step}")
        if self.faults.nan_at_step == step:
            import torch

            with torch.no_grad():
                for name, param in self.model.named_parameters():
                    if "lora_B" in name:
                        param.fill_(float("nan"))
                        break
        if self.faults.interrupt_at_step == step:
            self.faults.interrupt_at_step = None
            os.kill(os.getpid(), signal.SIGINT)
