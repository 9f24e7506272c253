"""One training run from a RunConfig: validate everything, then tokenize, pack, load, train, report.

Reads top to bottom: checks that write nothing → data → model → Trainer (with OOM back-off) →
adapter, tokenizer, report.json, loss.png. Interrupts and NaN losses stop with a checkpoint.
"""

from __future__ import annotations

import gc
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from gpudoctor.errors import EXIT_INTERRUPTED, BadInput, GpudoctorError, ProblemFound
from gpudoctor.plan.runconfig import write_run_config
from gpudoctor.settings import RunConfig
from gpudoctor.train.outputdir import check_output, newest_checkpoint, place_saved
from gpudoctor.train.request import refuse_big_model_on_cpu
from gpudoctor.train.report import TrainReport, versions, write_loss_plot, write_report

def split_eval(samples: list[Any], val_size: float, seed: int, source: str) -> tuple[list[Any], list[Any]]:
    """Hold out val_size (a fraction < 1, or a count ≥ 1) records, chosen with the run's seed."""
    if val_size <= 0:
        return samples, []
    count = int(val_size) if val_size >= 1 else max(1, round(len(samples) * val_size))
    if count >= len(samples):
        raise BadInput(f"--val-size {val_size:g}: {source} has only {len(samples)} usable records; hold out fewer")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return "rocm" if torch.version.hip else "cuda"
    return "cpu"


def planned_peak(config: RunConfig, device: str) -> int | None:
    """The planner's peak for exactly these settings, when the planner is installed and knows the model."""
    try:
        from gpudoctor.plan import hardware as hardware_module
        from gpudoctor.plan.memory import estimate
        from gpudoctor.profiles import load_model
    except ImportError:
        return None
    try:
        model = load_model(config.model)
        hardware = hardware_module.cpu_hardware() if device == "cpu" else None
        if hardware is None:
            from gpudoctor.probe import probe_system

            hardware = hardware_module.hardware_from_facts(probe_system(live=False))
        return int(estimate(model, config.settings, hardware).peak_reserved_bytes)
    except Exception:  # the planner's view is informative here, never a reason to stop
        return None


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    force: bool = False,
    console: Any = None,
    trust_remote_code: bool = False,
    truncate: bool = False,
    faults: Any = None,
    planned_peak_bytes: int | None = None,
) -> TrainReport:
    """Train `config`; return the report (also written to <output>/report.json).

    Raises BadInput (exit 2) for bad data/model/output before writing anything, ProblemFound
    (exit 1) when the machine cannot run it or the loss turns NaN, and a GpudoctorError with
    exit code 130 after saving a checkpoint when SIGINT/SIGTERM arrived.
    """
    from gpudoctor.cli.output import err_console
    from gpudoctor.data.load import load_dataset
    from gpudoctor.train import model as models
    from gpudoctor.train.quiet import quiet_libraries
    from gpudoctor.train.tokenize import save_cache, tokenize_cached

    started = time.perf_counter()
    quiet_libraries()
    console = console or err_console()
    if not config.data:
        raise BadInput("no training data: pass --data FILE (Alpaca or ShareGPT JSON/JSONL)")
    if not config.output:
        raise BadInput("no output folder: pass --output DIR")
    settings, training = config.settings, config.training
    if settings.gpus > 1 and "LOCAL_RANK" not in os.environ:  # accelerate launch sets LOCAL_RANK per worker
        raise ProblemFound("--gpus > 1 runs under `accelerate launch`; start it with `gpudoctor train run.yaml --gpus N`")

    # 1. Everything that can be wrong with the inputs, before anything is written.
    model_dir = models.resolve_model_dir(config.model)
    models.check_weights(model_dir)
    output = Path(config.output)
    checkpoint = check_output(output, config, resume=resume)
    device = device_name()
    if device == "cpu" and not force:
        refuse_big_model_on_cpu(str(model_dir))
    dataset = load_dataset(config.data)
    tokenizer = models.load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    tokenized = tokenize_cached(dataset, tokenizer, str(model_dir), settings.seq_len, truncate=truncate, cache_dir=output / "cache")
    train_samples, eval_samples = split_eval(tokenized.samples, training.val_size, training.seed, config.data)

    # 2. Model: NF4 base + LoRA (a model that cannot load stops here, before anything is written).
    import torch

    from gpudoctor.train.callbacks import Faults, InjectFaults, Measure, NanGuard, Progress, RunLog, StopOnSignal
    from gpudoctor.train.trainer import Batching, build_trainer, optimizer_name, training_arguments

    torch.manual_seed(training.seed)
    model = models.add_lora(models.load_base(model_dir, settings, trust_remote_code=trust_remote_code), settings)
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    initial_lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    # 3. Write the resolved config and the token cache; build rows.
    from gpudoctor.train.packing import RowCollator, RowDataset, TokenCounter, pack, unpacked

    output.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_run_config(config, output / "run.yaml")
    if not tokenized.from_cache and tokenized.cache_file:
        save_cache(tokenized, Path(tokenized.cache_file))
    arrange = (lambda s: pack(s, settings.seq_len)) if settings.packing else unpacked
    train_rows, eval_rows = arrange(train_samples), arrange(eval_samples) if eval_samples else []
    notes = []
    if tokenized.truncated:
        notes.append(f"--truncate cut {tokenized.truncated} records to {settings.seq_len} tokens ({tokenized.dropped} left with no response were dropped)")
    if settings.packing:
        notes.append(
            f"packed {len(train_samples)} samples into {len(train_rows)} rows of ≤{settings.seq_len} tokens; "
            "position_ids restart per sample, so attention never crosses samples"
        )
    if tokenized.from_cache:
        notes.append(f"tokens from cache {tokenized.cache_file}")
    if optimizer_name(settings.optimizer, device != "cpu") != optimizer_name(settings.optimizer, True):
        notes.append(f"optimizer {settings.optimizer} needs a GPU; using adamw_torch on the CPU")

    # 4. Train; on out-of-memory halve the micro batch, double accumulation, resume from the last checkpoint.
    faults = faults or Faults()
    batching = Batching(settings.micro_batch, settings.grad_accum)
    backoffs: list[dict[str, int]] = []
    counter = TokenCounter()
    log = RunLog()
    checkpoints = output / "checkpoints"
    while True:
        args = training_arguments(settings, training, batching, checkpoints, on_gpu=device != "cpu", has_eval=bool(eval_rows))
        callbacks = [Measure(log, counter), Progress(console, log), StopOnSignal(log), NanGuard(log, model, str(output)), InjectFaults(faults, model)]
        trainer = build_trainer(
            model, args, RowDataset(train_rows, count_tokens=True), RowDataset(eval_rows, count_tokens=False) if eval_rows else None,
            RowCollator(tokenizer.pad_token_id, counter), callbacks, output / "tb",
        )
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            break
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            step = trainer.state.global_step + 1
            for callback in callbacks:
                if isinstance(callback, (Progress, StopOnSignal)):
                    callback.on_train_end(args, trainer.state, trainer.control)
            if batching.micro_batch <= 1:
                raise ProblemFound(
                    f"out of memory at step {step} with micro batch 1; lower --seq-len (now {settings.seq_len}) "
                    "or turn on --grad-ckpt, then pass --resume"
                ) from None
            batching = Batching(batching.micro_batch // 2, batching.grad_accum * 2)
            backoffs.append({"step": step, "micro_batch": batching.micro_batch, "grad_accum": batching.grad_accum})
            checkpoint = newest_checkpoint(output)
            where = f"from {checkpoint.name}" if checkpoint else "from the start"
            console.print(
                f"out of memory at step {step}: micro batch → {batching.micro_batch}, gradient accumulation → "
                f"{batching.grad_accum} (effective batch unchanged); continuing {where}"
            )
            if checkpoint is None:
                set_peft_model_state_dict(model, initial_lora)
            model.zero_grad(set_to_none=True)
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if backoffs:
        notes.append(
            f"out of memory {len(backoffs)}×: finished with micro batch {batching.micro_batch}, gradient accumulation {batching.grad_accum}"
        )

    # 5. Outputs.
    status = {"signal": "interrupted", "nan": "nan"}.get(log.stopped_by or "", "finished")
    final_eval = None
    if status == "finished":
        if eval_rows and log.eval_losses and log.eval_losses[-1][0] == trainer.state.global_step:
            final_eval = log.eval_losses[-1][1]  # the Trainer already evaluated the final step
        elif eval_rows:
            final_eval = float(trainer.evaluate()["eval_loss"])
        place_saved(lambda folder: model.save_pretrained(folder, safe_serialization=True), output)
        place_saved(tokenizer.save_pretrained, output)
    newest = newest_checkpoint(output)
    report = TrainReport(
        output=str(output), model=str(model_dir), data=str(config.data),
        settings=asdict(replace(settings, micro_batch=batching.micro_batch, grad_accum=batching.grad_accum)),
        training=asdict(training), device=device, status=status, steps=trainer.state.global_step,
        start_step=log.start_step, records=len(dataset.records), train_rows=len(train_rows), eval_rows=len(eval_rows),
        packed=settings.packing, truncated=tokenized.truncated, duration_s=round(time.perf_counter() - started, 2),
        tokens=log.tokens, tokens_per_s=round(log.tokens_per_s, 1) if log.tokens_per_s else None,
        planned_peak_bytes=planned_peak_bytes if planned_peak_bytes is not None else planned_peak(config, device),
        measured_peak_allocated_bytes=log.peak_allocated, measured_peak_reserved_bytes=log.peak_reserved,
        measured_peak_rss_bytes=log.peak_rss,
        losses=[[s, v] for s, v in log.losses], eval_losses=[[s, v] for s, v in log.eval_losses],
        final_eval_loss=final_eval, oom_backoffs=backoffs, notes=notes,
        checkpoint=str(newest) if newest else None, versions=versions(),
    )
    write_report(report, output)
    write_loss_plot(report, output / "loss.png")
    if status == "interrupted":
        raise GpudoctorError(
            f"interrupted at step {report.steps}; checkpoint saved in {newest}; continue with --resume",
            exit_code=EXIT_INTERRUPTED,
        )
    if status == "nan":
        saved = f"the last good LoRA weights are in {log.last_good_dir}" if log.last_good_dir else "no step had a finite loss"
        raise ProblemFound(f"the loss became NaN at step {log.nan_step}; {saved}; lower --lr (now {training.lr:g}) and start again")
    return report
