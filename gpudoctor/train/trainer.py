"""The Hugging Face Trainer for a run: TrainingArguments from the plan's settings, our callbacks in place of tqdm.

The Trainer's checkpoints are made crash-safe by CrashSafeSaves (checkpoints.py has the format):
each is written aside, sealed and renamed into place, and a failed write stops the run in one line.
A batch's real tokens count once its step has run (CountsTokens), not when the DataLoader reads it ahead.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.atomic import safetensors_follow_umask
from gpudoctor.settings import Settings, TrainingOptions
from gpudoctor.train import checkpoints
from gpudoctor.train.packing import TOKENS

# gpudoctor.settings.OPTIMIZERS (aliases are resolved when settings are read) → transformers' `optim`
# values. bitsandbytes' 8-bit and paged optimizers need a GPU; on the CPU they become plain AdamW
# (which the planner picks there anyway).
OPTIMIZERS = {
    "adamw_torch": "adamw_torch",
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
}
GPU_ONLY_OPTIMIZERS = {"adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"}


@dataclass
class Batching:
    """The two numbers OOM back-off changes; their product (the effective batch) stays."""

    micro_batch: int
    grad_accum: int


def optimizer_name(name: str, on_gpu: bool) -> str:
    """transformers' `optim` for one of gpudoctor.settings.OPTIMIZERS, on a GPU or on the CPU."""
    if not on_gpu and name in GPU_ONLY_OPTIMIZERS:
        return "adamw_torch"
    return OPTIMIZERS[name]


def training_arguments(
    settings: Settings, training: TrainingOptions, batching: Batching, checkpoints: Path, *, on_gpu: bool, has_eval: bool
) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=batching.micro_batch,
        per_device_eval_batch_size=batching.micro_batch,
        gradient_accumulation_steps=batching.grad_accum,
        # model.prepare_for_training already turned checkpointing on when asked; the Trainer must not redo it
        gradient_checkpointing=False,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps if training.max_steps else -1,
        learning_rate=training.lr,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        optim=optimizer_name(settings.optimizer, on_gpu),
        bf16=settings.compute_dtype == "bf16",
        fp16=settings.compute_dtype == "fp16",
        use_cpu=not on_gpu,
        logging_steps=training.logging_steps,
        logging_nan_inf_filter=False,  # a NaN must reach the NaN guard, not be averaged away
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=3,  # --resume needs only the newest; three guard against a half-written one
        eval_strategy="steps" if has_eval else "no",
        eval_steps=training.save_steps if has_eval else None,
        seed=training.seed,
        data_seed=training.seed,
        report_to="none",  # TensorBoard is added by hand so its folder is ours (tb/)
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=on_gpu,
        save_only_model=False,
        label_names=["labels"],
    )


def build_trainer(
    model: Any, args: Any, train_rows: Any, eval_rows: Any, collator: Any, callbacks: list[Any], tb_dir: Path, *, faults: Any = None
) -> Any:
    """A Trainer with crash-safe checkpoints (`faults`: callbacks.Faults, whose *_during_save fire in its saves)
    whose safetensors files (checkpoints, the NaN guard's last good weights) get the umask's mode."""
    from transformers import PrinterCallback, ProgressCallback

    safetensors_follow_umask()
    tensorboard = tensorboard_class()()
    tensorboard.logging_dir = str(tb_dir)  # instead of <output_dir>/runs/<date>
    trainer = trainer_class()(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=collator,
        callbacks=[tensorboard, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.save_faults = faults
    trainer.token_counter = getattr(collator, "counter", None)
    return trainer


@functools.cache
def tensorboard_class() -> type:
    """transformers' TensorBoardCallback whose writer purges the steps after the one training begins at:
    a resume from checkpoint-N (or an out-of-memory back-off) redoes the steps after N, and TensorBoard
    then shows the redone values once instead of the earlier segment's as well."""
    from transformers.integrations import TensorBoardCallback

    def on_train_begin(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.tb_writer is None and state.is_world_process_zero:
            from torch.utils.tensorboard import SummaryWriter

            self.tb_writer = SummaryWriter(log_dir=self.logging_dir, purge_step=state.global_step + 1)
        return TensorBoardCallback.on_train_begin(self, args, state, control, **kwargs)

    return type("ResumedTensorBoard", (TensorBoardCallback,), {"on_train_begin": on_train_begin})


@functools.cache
def trainer_class() -> type:
    from transformers import Trainer

    return type("GpudoctorTrainer", (CountsTokens, CrashSafeSaves, Trainer), {})


class CountsTokens:
    """Trainer mixin: a batch's real tokens (packing.TOKENS, put in by the collator) are taken out before
    the forward and added to `token_counter` once its step has run, so only batches that trained count."""

    token_counter: Any = None  # packing.TokenCounter

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        tokens = inputs.pop(TOKENS, 0)
        loss = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if self.token_counter is not None:
            self.token_counter.total += int(tokens)
        return loss


class CrashSafeSaves:
    """Trainer mixin: checkpoint-N is written into checkpoints/.saving-checkpoint-N/, sealed (files fsync'd,
    then the marker) and renamed into place, then older complete ones are rotated out; whatever stops a save
    (an exception, a second SIGINT) discards the partial folder, and a failed write is one ProblemFound line."""

    save_faults: Any = None  # callbacks.Faults
    _staging_root: str | None = None

    def _get_output_dir(self, trial: Any) -> str:
        return self._staging_root or super()._get_output_dir(trial)  # type: ignore[misc]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        if not self.args.should_save:  # type: ignore[attr-defined]  # accelerate launch: rank 0 writes the one checkpoint
            self.store_flos()  # type: ignore[attr-defined]  # the one collective of a DDP save: every rank takes part
            return
        root = Path(super()._get_output_dir(trial))  # type: ignore[misc]
        step = self.state.global_step  # type: ignore[attr-defined]
        name = f"checkpoint-{step}"
        staging, final = root / f".saving-{name}", root / name
        hooks = SaveFaults(self.save_faults, step, staging / name)
        try:
            with checkpoints.GUARD.protected():
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
            self._staging_root = str(staging)
            with hooks.patched():
                super()._save_checkpoint(model, trial)  # type: ignore[misc]  # its rotation sees only this one
            self._staging_root = None
            with checkpoints.GUARD.protected():
                checkpoints.seal(staging / name, step, before_marker=lambda: hooks.at("last"))
                hooks.at("sealed")
                checkpoints.place(staging / name, final)
                staging.rmdir()
        except BaseException as err:
            self._staging_root = None
            needed = self._checkpoint_bytes(root)
            with checkpoints.GUARD.protected():
                checkpoints.discard(staging)
            if isinstance(err, Exception) and checkpoints.is_write_failure(err):
                raise checkpoints.save_failed(err, root, step, needed) from None
            raise
        checkpoints.rotate(root, self.args.save_total_limit, keep=final)  # type: ignore[attr-defined]

    def _checkpoint_bytes(self, root: Path) -> int:
        """The newest complete checkpoint's size, else adapter + two Adam moments of the trainable weights."""
        for _, path in checkpoints.listed(root):
            if checkpoints.complete(path):
                return checkpoints.size_of(path)
        trainable = sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)  # type: ignore[attr-defined]
        return 3 * trainable + 64 * 1024


class SaveFaults:
    """Tests' faults at a moment of one checkpoint's save (callbacks.Faults.*_during_save): after its n-th file
    is written (checked after each torch.save / safetensors save), "last" (every file written, before the
    marker) or "sealed" (marked, before the rename). Each fires once."""

    def __init__(self, faults: Any, step: int, folder: Path) -> None:
        self.faults, self.folder = faults, folder
        self.plans: list[tuple[str, str, int]] = []
        for kind in ("kill", "enospc", "sigint"):
            spec = getattr(faults, f"{kind}_during_save", None) if faults is not None else None
            if spec and spec[0] == step:
                self.plans.append((kind, spec[1], spec[2] if len(spec) > 2 else 1))
                setattr(faults, f"{kind}_during_save", None)

    def at(self, moment: str) -> None:
        for plan in list(self.plans):
            kind, when, count = plan
            due = when == moment if when in ("last", "sealed") else moment == "file" and len(checkpoints.files_in(self.folder)) >= int(when)
            if due:
                self.plans.remove(plan)
                self.fire(kind, count)

    def fire(self, kind: str, count: int) -> None:
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(self.folder))
        for _ in range(count if kind == "sigint" else 0):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs before the next one is sent

    @contextmanager
    def patched(self) -> Iterator[None]:
        """While the Trainer writes the files: torch.save and the safetensors writers call at("file") after each."""
        if not any(when not in ("last", "sealed") for _, when, _ in self.plans):
            yield
            return
        import peft.peft_model
        import safetensors.torch
        import torch

        targets = [(torch, "save"), (safetensors.torch, "save_file"), (peft.peft_model, "safe_save_file")]
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr in targets]
        for owner, attr, original in saved:
            setattr(owner, attr, self._after(original))
        try:
            yield
        finally:
            for owner, attr, original in saved:
                setattr(owner, attr, original)

    def _after(self, original: Any) -> Any:
        def write(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.at("file")
            return result

        return write
