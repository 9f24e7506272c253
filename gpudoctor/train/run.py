"""One training run from a RunConfig, as named steps: prepare → build_model → start_run_folder → fit → finish.

prepare finds everything that can be wrong with the data, the model and the output folder and
writes nothing; build_model loads the NF4 base and adds LoRA (a model that cannot load stops
there, still before anything is written); start_run_folder writes run.yaml and the token cache;
fit runs the Trainer, halving the micro batch on out-of-memory; finish saves the adapter and
tokenizer, writes report.json and loss.png, and turns an interrupt or a NaN loss into its exit.
The steps hand each other plain values (Prepared, Fitted), so each can be run and tested alone.
"""

from __future__ import annotations

import gc
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpudoctor.errors import EXIT_INTERRUPTED, BadInput, GpudoctorError, ProblemFound
from gpudoctor.plan.runconfig import write_run_config
from gpudoctor.settings import RunConfig, Settings, TrainingOptions
from gpudoctor.train.outputdir import check_output, newest_checkpoint, place_saved
from gpudoctor.train.packing import Row, RowCollator, RowDataset, TokenCounter, pack, unpacked
from gpudoctor.train.report import TrainReport, versions, write_loss_plot, write_report
from gpudoctor.train.request import refuse_big_model_on_cpu
from gpudoctor.train.tokenize import Sample, Tokenized
from gpudoctor.train.trainer import Batching, optimizer_name

if TYPE_CHECKING:
    from gpudoctor.data.records import Dataset
    from gpudoctor.train.callbacks import Faults, RunLog


@dataclass
class Prepared:
    """A run's checked inputs, gathered without writing anything."""

    config: RunConfig
    model_dir: Path
    output: Path
    checkpoint: Path | None  # the one to resume from
    device: str  # "cuda" | "rocm" | "cpu"
    dataset: Dataset
    tokenizer: Any
    tokenized: Tokenized
    train_rows: list[Row]
    eval_rows: list[Row]
    notes: list[str]  # for report.json, in the order they arose


@dataclass
class Fitted:
    """What the Trainer loop left: the model as far as it trained, the log, the batching it ended with."""

    model: Any
    log: RunLog
    steps: int  # the Trainer's global step at the end
    batching: Batching
    backoffs: list[dict[str, int]]  # one {step, micro_batch, grad_accum} per out-of-memory
    final_eval_loss: float | None = None

    @property
    def status(self) -> str:
        """finished, interrupted (SIGINT/SIGTERM) or nan: report.json's status."""
        return {"signal": "interrupted", "nan": "nan"}.get(self.log.stopped_by or "", "finished")


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    force: bool = False,
    console: Any,
    trust_remote_code: bool = False,
    truncate: bool = False,
    faults: Faults | None = None,
    planned_peak_bytes: int | None = None,
) -> TrainReport:
    """Train `config`; return the report (also written to <output>/report.json).

    Raises BadInput (exit 2) for bad data/model/output before writing anything, ProblemFound
    (exit 1) when the machine cannot run it or the loss turns NaN, and a GpudoctorError with
    exit code 130 after saving a checkpoint when SIGINT/SIGTERM arrived. `console` (a rich
    Console) shows the progress bar and the out-of-memory messages.
    """
    from gpudoctor.train.quiet import quiet_libraries

    started = time.perf_counter()
    quiet_libraries()
    prepared = prepare(config, resume=resume, force=force, trust_remote_code=trust_remote_code, truncate=truncate)
    model = build_model(prepared, trust_remote_code=trust_remote_code)
    start_run_folder(prepared, resume=resume)
    fitted = fit(prepared, model, console, faults)
    return finish(prepared, fitted, started=started, planned_peak_bytes=planned_peak_bytes)


# 1. Prepare: everything that can be wrong with the inputs, before anything is written.


def prepare(config: RunConfig, *, resume: bool = False, force: bool = False, trust_remote_code: bool = False, truncate: bool = False) -> Prepared:
    """Check the config, the model folder, the output folder and the data; tokenize and build rows.

    Raises BadInput/ProblemFound naming what is wrong; writes nothing (the token cache is saved later).
    """
    from gpudoctor.data.load import load_dataset
    from gpudoctor.train import model as models
    from gpudoctor.train.tokenize import tokenize_cached

    check_config(config)
    settings, training = config.settings, config.training
    model_dir = models.resolve_model_dir(config.model)
    models.check_weights(model_dir)
    output = Path(str(config.output))
    checkpoint = check_output(output, config, resume=resume)
    device = device_name()
    if device == "cpu" and not force:
        refuse_big_model_on_cpu(str(model_dir))
    dataset = load_dataset(str(config.data))
    tokenizer = models.load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    tokenized = tokenize_cached(dataset, tokenizer, str(model_dir), settings.seq_len, truncate=truncate, cache_dir=output / "cache")
    samples, held_out = split_eval(tokenized.samples, training.val_size, training.seed, str(config.data))
    train_rows, eval_rows = arrange(samples, settings), arrange(held_out, settings)
    notes = input_notes(settings, tokenized, len(samples), len(train_rows), device)
    return Prepared(config, model_dir, output, checkpoint, device, dataset, tokenizer, tokenized, train_rows, eval_rows, notes)


def check_config(config: RunConfig) -> None:
    """A run needs data and an output folder; several GPUs train under `accelerate launch`."""
    if not config.data:
        raise BadInput("no training data: pass --data FILE (Alpaca or ShareGPT JSON/JSONL)")
    if not config.output:
        raise BadInput("no output folder: pass --output DIR")
    if config.settings.gpus > 1 and "LOCAL_RANK" not in os.environ:  # accelerate launch sets LOCAL_RANK per worker
        raise ProblemFound("--gpus > 1 runs under `accelerate launch`; start it with `gpudoctor train run.yaml --gpus N`")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return "rocm" if torch.version.hip else "cuda"
    return "cpu"


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


def arrange(samples: list[Sample], settings: Settings) -> list[Row]:
    """Rows for the Trainer: samples packed into seq_len rows, or one per row."""
    return pack(samples, settings.seq_len) if settings.packing else unpacked(samples)


def input_notes(settings: Settings, tokenized: Tokenized, samples: int, rows: int, device: str) -> list[str]:
    """What report.json should say about how the inputs were turned into rows."""
    notes = []
    if tokenized.truncated:
        notes.append(f"--truncate cut {tokenized.truncated} records to {settings.seq_len} tokens ({tokenized.dropped} left with no response were dropped)")
    if settings.packing:
        notes.append(
            f"packed {samples} samples into {rows} rows of ≤{settings.seq_len} tokens; "
            "position_ids restart per sample, so attention never crosses samples"
        )
    if tokenized.from_cache:
        notes.append(f"tokens from cache {tokenized.cache_file}")
    if optimizer_name(settings.optimizer, device != "cpu") != optimizer_name(settings.optimizer, True):
        notes.append(f"optimizer {settings.optimizer} needs a GPU; using adamw_torch on the CPU")
    return notes


# 2. Build the model: NF4 base + LoRA (a model that cannot load stops here, before anything is written).


def build_model(prepared: Prepared, *, trust_remote_code: bool = False) -> Any:
    """The base model (NF4 for qlora) with a fresh LoRA adapter, initialised with the run's seed."""
    import torch

    from gpudoctor.train import model as models

    settings = prepared.config.settings
    torch.manual_seed(prepared.config.training.seed)
    return models.add_lora(models.load_base(prepared.model_dir, settings, trust_remote_code=trust_remote_code), settings)


def start_run_folder(prepared: Prepared, *, resume: bool = False) -> None:
    """The first writes: the folder, run.yaml (a resumed run keeps its own) and the token cache."""
    from gpudoctor.train.tokenize import save_cache

    prepared.output.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_run_config(prepared.config, prepared.output / "run.yaml")
    tokenized = prepared.tokenized
    if not tokenized.from_cache and tokenized.cache_file:
        save_cache(tokenized, Path(tokenized.cache_file))


# 3. Fit: the Trainer loop; on out-of-memory halve the micro batch, double accumulation, go on.


def fit(prepared: Prepared, model: Any, console: Any, faults: Faults | None = None) -> Fitted:
    """Train to the end (or to a signal or NaN); after an out-of-memory error continue from the newest
    checkpoint (or from the start, with the initial LoRA weights) with the same effective batch."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from gpudoctor.train.callbacks import Faults, RunLog

    settings = prepared.config.settings
    faults = faults or Faults()
    initial_lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    batching, backoffs = Batching(settings.micro_batch, settings.grad_accum), []
    log, counter, checkpoint = RunLog(), TokenCounter(), prepared.checkpoint
    while True:
        trainer, callbacks = make_trainer(prepared, model, batching, log, counter, console, faults)
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            break
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            batching, checkpoint = back_off(trainer, callbacks, batching, backoffs, prepared, console)
            if checkpoint is None:
                set_peft_model_state_dict(model, initial_lora)
            model.zero_grad(set_to_none=True)
            del trainer
            release_memory()
    fitted = Fitted(model, log, trainer.state.global_step, batching, backoffs)
    fitted.final_eval_loss = final_eval_loss(trainer, fitted, has_eval=bool(prepared.eval_rows))
    return fitted


def make_trainer(prepared: Prepared, model: Any, batching: Batching, log: RunLog, counter: TokenCounter, console: Any, faults: Faults) -> tuple[Any, list[Any]]:
    """A Trainer for `batching` and its callbacks: measure, progress bar, signals, NaN guard, injected faults."""
    from gpudoctor.train.callbacks import InjectFaults, Measure, NanGuard, Progress, StopOnSignal
    from gpudoctor.train.trainer import build_trainer, training_arguments

    config, output, on_gpu = prepared.config, prepared.output, prepared.device != "cpu"
    args = training_arguments(config.settings, config.training, batching, output / "checkpoints", on_gpu=on_gpu, has_eval=bool(prepared.eval_rows))
    callbacks = [Measure(log, counter), Progress(console, log), StopOnSignal(log), NanGuard(log, model, str(output)), InjectFaults(faults, model)]
    train_rows = RowDataset(prepared.train_rows, count_tokens=True)
    eval_rows = RowDataset(prepared.eval_rows, count_tokens=False) if prepared.eval_rows else None
    collator = RowCollator(prepared.tokenizer.pad_token_id, counter)
    return build_trainer(model, args, train_rows, eval_rows, collator, callbacks, output / "tb"), callbacks


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def back_off(trainer: Any, callbacks: list[Any], batching: Batching, backoffs: list[dict[str, int]], prepared: Prepared, console: Any) -> tuple[Batching, Path | None]:
    """After an out-of-memory error: close the progress bar and signal handlers, record the halved micro
    batch in `backoffs` and say so; return it and the checkpoint to go on from. ProblemFound at micro batch 1."""
    from gpudoctor.train.callbacks import Progress, StopOnSignal

    step = trainer.state.global_step + 1
    for callback in callbacks:
        if isinstance(callback, (Progress, StopOnSignal)):
            callback.on_train_end(trainer.args, trainer.state, trainer.control)
    if batching.micro_batch <= 1:
        raise ProblemFound(
            f"out of memory at step {step} with micro batch 1; lower --seq-len (now {prepared.config.settings.seq_len}) "
            "or turn on --grad-ckpt, then pass --resume"
        ) from None
    batching = Batching(batching.micro_batch // 2, batching.grad_accum * 2)
    backoffs.append({"step": step, "micro_batch": batching.micro_batch, "grad_accum": batching.grad_accum})
    checkpoint = newest_checkpoint(prepared.output)
    where = f"from {checkpoint.name}" if checkpoint else "from the start"
    console.print(
        f"out of memory at step {step}: micro batch → {batching.micro_batch}, gradient accumulation → "
        f"{batching.grad_accum} (effective batch unchanged); continuing {where}"
    )
    return batching, checkpoint


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def final_eval_loss(trainer: Any, fitted: Fitted, *, has_eval: bool) -> float | None:
    """The eval loss after a finished run's last step: the Trainer's own when it evaluated there, else one more evaluation."""
    if not has_eval or fitted.status != "finished":
        return None
    log = fitted.log
    if log.eval_losses and log.eval_losses[-1][0] == fitted.steps:
        return log.eval_losses[-1][1]
    return float(trainer.evaluate()["eval_loss"])


# 4. Finish: adapter, tokenizer, report.json, loss.png, and the exit for an interrupt or a NaN loss.


def finish(prepared: Prepared, fitted: Fitted, *, started: float, planned_peak_bytes: int | None = None) -> TrainReport:
    """Save the adapter and tokenizer (a finished run only), write report.json and loss.png, then raise
    for an interrupted run (exit 130) or a NaN loss (ProblemFound). `started` is the run's perf_counter()."""
    if fitted.status == "finished":
        place_saved(lambda folder: fitted.model.save_pretrained(folder, safe_serialization=True), prepared.output)
        place_saved(prepared.tokenizer.save_pretrained, prepared.output)
    report = build_report(prepared, fitted, duration_s=round(time.perf_counter() - started, 2), planned_peak_bytes=planned_peak_bytes)
    write_report(report, prepared.output)
    write_loss_plot(report, prepared.output / "loss.png")
    raise_for_status(report, fitted.log, prepared.config.training)
    return report


def build_report(prepared: Prepared, fitted: Fitted, *, duration_s: float, planned_peak_bytes: int | None) -> TrainReport:
    """The TrainReport of the run; the planner's peak for these settings when the caller had none."""
    config, log, batching = prepared.config, fitted.log, fitted.batching
    newest = newest_checkpoint(prepared.output)
    return TrainReport(
        output=str(prepared.output), model=str(prepared.model_dir), data=str(config.data),
        settings=asdict(replace(config.settings, micro_batch=batching.micro_batch, grad_accum=batching.grad_accum)),
        training=asdict(config.training), device=prepared.device, status=fitted.status, steps=fitted.steps,
        start_step=log.start_step, records=len(prepared.dataset.records), train_rows=len(prepared.train_rows),
        eval_rows=len(prepared.eval_rows), packed=config.settings.packing, truncated=prepared.tokenized.truncated,
        duration_s=duration_s, tokens=log.tokens, tokens_per_s=round(log.tokens_per_s, 1) if log.tokens_per_s else None,
        planned_peak_bytes=planned_peak_bytes if planned_peak_bytes is not None else planned_peak(config, prepared.device),
        measured_peak_allocated_bytes=log.peak_allocated, measured_peak_reserved_bytes=log.peak_reserved,
        measured_peak_rss_bytes=log.peak_rss,
        losses=[[s, v] for s, v in log.losses], eval_losses=[[s, v] for s, v in log.eval_losses],
        final_eval_loss=fitted.final_eval_loss, oom_backoffs=fitted.backoffs, notes=[*prepared.notes, *backoff_notes(fitted)],
        checkpoint=str(newest) if newest else None, versions=versions(),
    )  # fmt: skip


def backoff_notes(fitted: Fitted) -> list[str]:
    if not fitted.backoffs:
        return []
    b = fitted.batching
    return [f"out of memory {len(fitted.backoffs)}×: finished with micro batch {b.micro_batch}, gradient accumulation {b.grad_accum}"]


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


def raise_for_status(report: TrainReport, log: RunLog, training: TrainingOptions) -> None:
    """An interrupted run exits 130 (continue with --resume); a NaN loss is a ProblemFound naming the last good weights."""
    if report.status == "interrupted":
        raise GpudoctorError(
            f"interrupted at step {report.steps}; checkpoint saved in {report.checkpoint}; continue with --resume",
            exit_code=EXIT_INTERRUPTED,
        )
    if report.status == "nan":
        saved = f"the last good LoRA weights are in {log.last_good_dir}" if log.last_good_dir else "no step had a finite loss"
        raise ProblemFound(f"the loss became NaN at step {log.nan_step}; {saved}; lower --lr (now {training.lr:g}) and start again")
