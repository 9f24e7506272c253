"""The Hugging Face Trainer for a run: TrainingArguments from the plan's settings, our callbacks in place of tqdm."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.settings import Settings, TrainingOptions

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


def build_trainer(model: Any, args: Any, train_rows: Any, eval_rows: Any, collator: Any, callbacks: list[Any], tb_dir: Path) -> Any:
    from transformers import PrinterCallback, ProgressCallback, Trainer
    from transformers.integrations import TensorBoardCallback

    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(tb_dir)  # instead of <output_dir>/runs/<date>
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=collator,
        callbacks=[tensorboard, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer
