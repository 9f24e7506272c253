"""One training run from a RunConfig, as named steps: prepare → build_model → start_run_folder → fit → finish.

prepare finds everything that can be wrong with the data, the model and the output folder and
writes nothing; build_model loads the NF4 base and adds LoRA (a model that cannot load stops
there, still before anything is written); start_run_folder writes run.yaml and the token cache;
fit runs the Trainer, halving the micro batch on out-of-memory; finish saves the adapter and
tokenizer, writes report.json and loss.png, and turns an interrupt or a NaN loss into its exit.

The first optimizer step is the worst case (its micro batches hold the longest rows, full:
packing.HeaviestFirst). After it fit reads the peak (measure.py), compares it with the memory
model's figures for the batching that ran, records the correction later plans use
(plan.corrections), and when the footprint passes the share of the budget a plan may use it
re-plans before step 2: a smaller micro batch, more accumulation, the same effective batch, from
the start (the out-of-memory back-off's path).

The steps hand each other plain values (Prepared, Fitted), so each can be run and tested alone.
"""

from __future__ import annotations

import gc
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpudoctor.errors import EXIT_INTERRUPTED, BadInput, GpudoctorError, ProblemFound
from gpudoctor.plan.runconfig import write_run_config
from gpudoctor.settings import RunConfig, Settings, TrainingOptions
from gpudoctor.train import adapter_check, checkpoints, distributed, history, measure, runfolder
from gpudoctor.train.outputdir import check_output, place_saved
from gpudoctor.train.packing import HeaviestFirst, Row, RowCollator, RowDataset, TokenCounter, pack, unpacked
from gpudoctor.train.report import TrainReport, versions, write_loss_plot, write_report
from gpudoctor.train.report_html import write_report_html
from gpudoctor.train.request import refuse_big_model_on_cpu
from gpudoctor.train.tokenize import Sample, Tokenized
from gpudoctor.train.trainer import Batching, optimizer_name
from gpudoctor.types import GIB

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from gpudoctor.data.records import Dataset
    from gpudoctor.plan.types import Hardware
    from gpudoctor.train.callbacks import Faults, RunLog
    from gpudoctor.types import ModelSpec


@dataclass
class Prepared:
    """A run's checked inputs, gathered without writing anything."""

    config: RunConfig
    model_dir: Path
    output: Path
    resume_from: checkpoints.Choice  # the checkpoint to resume from (None: a new start), verified once, and the newer ones passed over
    device: str  # "cuda" | "rocm" | "cpu"
    dataset: Dataset
    tokenizer: Any
    tokenized: Tokenized
    train_rows: list[Row]
    eval_rows: list[Row]
    notes: list[str]  # for report.json, in the order they arose
    spec: ModelSpec | None = None  # the model's architecture numbers, for the memory model
    hardware: Hardware | None = None  # what the first step is judged against (its budget)
    said: list[str] = field(default_factory=list)  # lines about the run folder, for the console once it is locked
    data_record: dict[str, Any] | None = None  # runfolder.data_record: what --resume checks the data against
    restart_epoch: bool = False  # --resume-changed-data on changed data: the Trainer does not skip into the epoch
    folder_state: Any = None  # runfolder.folder_state when the folder was checked: compared again under the lock

    @property
    def checkpoint(self) -> Path | None:
        return self.resume_from.checkpoint


@dataclass
class Fitted:
    """What the Trainer loop left: the model as far as it trained, the log, the batching it ended with."""

    model: Any
    log: RunLog
    steps: int  # the Trainer's global step at the end
    batching: Batching
    backoffs: list[dict[str, int]]  # one {step, micro_batch, grad_accum} per out-of-memory
    final_eval_loss: float | None = None
    replans: list[dict[str, int]] = field(default_factory=list)  # one {step, micro_batch, grad_accum} per first step over the budget
    measured: list[str] = field(default_factory=list)  # what each first step measured against the plan
    gather: Callable[[], dict[str, Any]] | None = None  # FSDP: the full state dict, a collective every rank joins (rank 0 gets it)

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
    hardware: Hardware | None = None,
    corrections_file: Path | None = None,
    resume_changed_data: bool = False,
) -> TrainReport:
    """Train `config`; return the report (also written to <output>/report.json).

    Raises BadInput (exit 2) for bad data/model/output before writing anything, ProblemFound
    (exit 1) when the machine cannot run it or the loss turns NaN, and a GpudoctorError with
    exit code 130 after saving a checkpoint when SIGINT/SIGTERM arrived. `console` (a rich
    Console) shows the progress bar, the first step's measurement and the out-of-memory messages.
    `hardware` is the plan's (its budget judges the first step; default: this machine);
    `corrections_file` is where the first step's measurement is recorded (None: nowhere).
    The run folder is locked from after prepare to the end, on every way out (runfolder.py).
    """
    from gpudoctor.train.quiet import quiet_libraries

    started = time.perf_counter()
    quiet_libraries()
    distributed.join()  # accelerate launch: every process of every node, before anything takes time
    config = distributed.without_launch(config)
    prepared = prepare(config, resume=resume, force=force, trust_remote_code=trust_remote_code, truncate=truncate, hardware=hardware, resume_changed_data=resume_changed_data)
    with locked(prepared, console):
        model = build_model(prepared, trust_remote_code=trust_remote_code)
        initial_adapter = adapter_check.snapshot(model)
        if prepared.spec is None:  # the memory model did not know the model: count the built adapter
            console.print(check_space(prepared, sum(p.numel() for p in model.parameters() if p.requires_grad)))
        start_run_folder(prepared, resume=resume)
        log_start(prepared)
        try:
            fitted = fit(prepared, model, console, faults, corrections_file=corrections_file)
        except BaseException as err:
            log_stopped(prepared, err)
            raise
        report = finish(prepared, fitted, started=started, planned_peak_bytes=planned_peak_bytes)
        adapter_check.check_moved(initial_adapter, fitted.model, report, prepared.output)  # an adapter that changes nothing is exit 1
        return report


@contextmanager
def locked(prepared: Prepared, console: Any) -> Iterator[None]:
    """Hold the run folder's lock (not taken by the other workers of `accelerate launch`); check the
    folder again under it (another run may have come and gone since prepare) and say what prepare
    found about it. Released on every way out; a SIGKILL leaves a stale lock the next run takes over."""
    if not runfolder.main_process():
        yield
        return
    lock = runfolder.acquire_lock(prepared.output, console.print)
    try:
        runfolder.check_unchanged(prepared.output, prepared.folder_state)
        for line in prepared.said:
            console.print(line)
        yield
    finally:
        runfolder.release_lock(lock)


# 1. Prepare: everything that can be wrong with the inputs, before anything is written.


def prepare(
    config: RunConfig, *, resume: bool = False, force: bool = False, trust_remote_code: bool = False, truncate: bool = False, hardware: Hardware | None = None,
    resume_changed_data: bool = False,
) -> Prepared:
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
    models.check_tokenizer_files(model_dir)
    models.check_seq_len(model_dir, settings.seq_len)
    output, said = Path(str(config.output)), []
    runfolder.check_not_over_data(output, config.data)
    runfolder.check_writable(output)
    runfolder.check_lock(output)
    state = runfolder.folder_state(output)
    distributed.check_resume_world(output, settings.gpus, resume=resume, nodes=settings.nodes)
    resume_from = check_output(output, config, resume=resume, allow_changed_data=resume_changed_data, notes=said)
    device = device_name()
    if device == "cpu" and not force:
        refuse_big_model_on_cpu(str(model_dir))
    dataset = load_dataset(str(config.data))
    tokenizer = models.load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    tokenized = tokenize_cached(dataset, tokenizer, str(model_dir), settings.seq_len, truncate=truncate, cache_dir=output / "cache")
    samples, held_out = split_eval(tokenized.samples, training.val_size, training.seed, str(config.data))
    train_rows, eval_rows = arrange(samples, settings), arrange(held_out, settings)
    record = runfolder.data_record(str(config.data), settings, training, truncate=truncate)
    restart = runfolder.check_resumed_data(output, record, resume=resume, allow_changed=resume_changed_data, notes=said)
    notes = [*said, *input_notes(settings, tokenized, len(samples), len(train_rows), device)]
    spec, hardware = judged_against(config, model_dir, device, hardware)
    prepared = Prepared(config, model_dir, output, resume_from, device, dataset, tokenizer, tokenized, train_rows, eval_rows, notes, spec, hardware, said, record, restart, state)
    if spec is not None:
        from gpudoctor.plan.memory import lora_params

        said.append(check_space(prepared, lora_params(spec, settings)))
    return prepared


def check_space(prepared: Prepared, trainable: int) -> str:
    """runfolder.check_space for this run: its optimizer, the Trainer's save_total_limit, the checkpoints there."""
    from gpudoctor.train.trainer import training_arguments

    config, on_gpu = prepared.config, prepared.device != "cpu"
    batching = Batching(config.settings.micro_batch, config.settings.grad_accum)
    args = training_arguments(config.settings, config.training, batching, prepared.output / "checkpoints", on_gpu=on_gpu, has_eval=bool(prepared.eval_rows))
    existing = [p for p in (prepared.output / "checkpoints").glob("checkpoint-*") if p.is_dir()]
    per_epoch = max(1, math.ceil(len(prepared.train_rows) / batching.micro_batch) // batching.grad_accum)  # as the Trainer counts
    steps = config.training.max_steps or math.ceil(config.training.epochs * per_epoch)
    done = int(prepared.checkpoint.name.rsplit("-", 1)[1]) if prepared.checkpoint else 0
    saves = math.ceil(steps / args.save_steps) - done // args.save_steps  # every save_steps, and at the end
    cache = 0 if prepared.tokenized.from_cache else 16 * sum(len(s.input_ids) for s in prepared.tokenized.samples)
    return runfolder.check_space(
        prepared.output, trainable=trainable, optimizer=optimizer_name(config.settings.optimizer, on_gpu), saves=max(0, saves),
        keep=args.save_total_limit or 0, existing=len(existing), extra=runfolder.tokenizer_bytes(prepared.model_dir) + cache,
    )  # fmt: skip


def judged_against(config: RunConfig, model_dir: Path, device: str, hardware: Hardware | None) -> tuple[ModelSpec | None, Hardware | None]:
    """The model's architecture numbers (read as `plan` reads --model, else from the folder) and the
    hardware the first step is judged against: the plan's when the caller has one, else this machine's
    (on the CPU the budget counts what this process already holds). None where it cannot be told."""
    from gpudoctor.plan import hardware as hardware_module
    from gpudoctor.profiles import load_model

    spec = None
    for name in dict.fromkeys((str(config.model), str(model_dir))):
        try:
            spec = load_model(name)
            break
        except GpudoctorError:
            continue
    if hardware is None:
        try:
            if device == "cpu":
                hardware = hardware_module.cpu_hardware()
                hardware.budget_bytes += measure.rss_now()
            else:
                from gpudoctor.probe import probe_system

                hardware = hardware_module.hardware_from_facts(probe_system(live=False))
        except Exception:  # the check is a guard, never a reason not to train
            hardware = None
    return spec, hardware


def check_config(config: RunConfig) -> None:
    """A run needs data and an output folder; several GPUs train under `accelerate launch`."""
    if not config.data:
        raise BadInput("no training data: pass --data FILE (Alpaca or ShareGPT JSON/JSONL)")
    if not config.output:
        raise BadInput("no output folder: pass --output DIR")
    if config.settings.world_size > 1 and "LOCAL_RANK" not in os.environ:  # accelerate launch sets LOCAL_RANK per worker
        raise ProblemFound("--gpus > 1 or --nodes > 1 runs under `accelerate launch`; start it with `gpudoctor train run.yaml`")


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
    if not runfolder.main_process():  # accelerate launch: rank 0 writes the run folder
        return
    if not resume or prepared.restart_epoch:
        write_run_config(prepared.config, prepared.output / "run.yaml")
    if prepared.data_record is not None and (not resume or prepared.restart_epoch or runfolder.read_data_record(prepared.output) is None):
        runfolder.write_data_record(prepared.output, prepared.data_record)
    tokenized = prepared.tokenized
    if not tokenized.from_cache and tokenized.cache_file:
        save_cache(tokenized, Path(tokenized.cache_file))


# 3. Fit: the Trainer loop; the first step checked against the plan; on out-of-memory halve the micro batch.


def fit(prepared: Prepared, model: Any, console: Any, faults: Faults | None = None, *, corrections_file: Path | None = None) -> Fitted:
    """Train to the end (or to a signal or NaN); after an out-of-memory error continue from the newest
    checkpoint (or from the start, with the initial LoRA weights) with the same effective batch; after
    a first step over the budget start again with the micro batch that fits what it measured."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from gpudoctor.train.callbacks import Faults, RunLog

    settings = prepared.config.settings
    faults, backoffs = faults or Faults(), distributed.backoffs_given()  # a relaunch after an out-of-memory on some rank
    initial_lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    batching, replans, measured = Batching(settings.micro_batch, settings.grad_accum), [], []
    if backoffs:
        batching, faults = Batching(backoffs[-1]["micro_batch"], backoffs[-1]["grad_accum"]), replace(faults, oom_at_step=None)
    log, counter, checkpoint = RunLog(), TokenCounter(), prepared.checkpoint
    if runfolder.main_process():
        checkpoints.clean_leftovers(prepared.output, console.print)  # what a crash mid-save left
        checkpoints.announce(prepared.resume_from, console.print)
    while True:
        check = first_step_check(prepared, batching, console, measured, corrections_file)
        trainer, callbacks = make_trainer(prepared, model, batching, log, counter, console, faults, check)
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            break
        except Exception as err:
            leave = distributed_exit(err, trainer, batching)
            if leave is not None:
                close_callbacks(trainer, callbacks)
                raise leave from None
            if isinstance(err, measure.OverBudget):
                batching, checkpoint = back_off(trainer, callbacks, batching, replans, prepared, console, to=Batching(*err.target), why=err.why)
            elif is_out_of_memory(err):
                batching, checkpoint = back_off(trainer, callbacks, batching, backoffs, prepared, console)
            else:
                close_callbacks(trainer, callbacks)  # the progress bar and the signal handlers, before the one line
                raise
            if checkpoint is None:
                set_peft_model_state_dict(model, initial_lora)
            model.zero_grad(set_to_none=True)
            del trainer
            release_memory()
    fitted = Fitted(model, log, trainer.state.global_step, batching, backoffs, replans=replans, measured=measured, gather=sharded_gather(trainer))
    fitted.final_eval_loss = final_eval_loss(trainer, fitted, has_eval=bool(prepared.eval_rows))
    return fitted


def first_step_check(prepared: Prepared, batching: Batching, console: Any, measured: list[str], corrections_file: Path | None) -> Callable[[], None] | None:
    """What FirstStep calls after step 1: read the peak, compare it with the memory model's figures for
    `batching`, record the correction, say it, and raise measure.OverBudget when a smaller micro batch
    is needed. None when the model or the hardware is unknown (nothing to compare with), and under
    `accelerate launch` (several processes would have to agree on a re-plan)."""
    if prepared.spec is None or prepared.hardware is None or prepared.config.settings.world_size > 1:
        return None
    check = measure.StepCheck(prepared.spec, prepared.hardware, corrections_file)
    budget = prepared.hardware.budget_bytes

    def run_check() -> None:
        settings = replace(prepared.config.settings, micro_batch=batching.micro_batch, grad_accum=batching.grad_accum)
        judged = measure.judge(check, settings, measure.read_peaks(prepared.device))
        if not judged.measurement.figures:
            return
        said = [f"step 1 (the longest rows, micro batch {batching.micro_batch}, seq_len {settings.seq_len}): {measure.figures_text(judged.measurement)}"]
        target = measure.smaller_batching(check, judged) if judged.over else None
        if judged.over and target is None:
            footprint = (judged.footprint or 0) / GIB
            said.append(
                f"step 1 peaked at {footprint:.2f} GiB, over the {judged.usable / GIB:.2f} GiB a run may use, at micro batch 1: "
                f"going on; if it runs out of memory lower --seq-len (now {settings.seq_len}) or turn on --grad-ckpt"
            )
        for line in said:
            console.print(line)
        measured.extend(said)
        if target is not None:
            raise measure.OverBudget(judged, target, budget)

    return run_check


def make_trainer(
    prepared: Prepared, model: Any, batching: Batching, log: RunLog, counter: TokenCounter, console: Any, faults: Faults, check: Callable[[], None] | None = None
) -> tuple[Any, list[Any]]:
    """A Trainer for `batching` and its callbacks (measure, first-step check, progress bar, signals, NaN guard,
    injected faults), drawing its rows in the Trainer's seeded order with the heaviest first (HeaviestFirst)."""
    from gpudoctor.train.callbacks import FirstStep, InjectFaults, Measure, NanGuard, Progress, StopOnSignal
    from gpudoctor.train.trainer import build_trainer, training_arguments

    config, output, on_gpu = prepared.config, prepared.output, prepared.device != "cpu"
    args = training_arguments(config.settings, config.training, batching, output / "checkpoints", on_gpu=on_gpu, has_eval=bool(prepared.eval_rows))
    args.ignore_data_skip = prepared.restart_epoch  # --resume-changed-data: the new data's epoch starts from its first row
    callbacks = [
        Measure(log, counter), FirstStep(prepared.device, check), Progress(console, log), StopOnSignal(log),
        NanGuard(log, model, str(output)), InjectFaults(faults, model),
    ]  # fmt: skip
    train_rows = RowDataset(prepared.train_rows, count_tokens=True)
    eval_rows = RowDataset(prepared.eval_rows, count_tokens=False) if prepared.eval_rows else None
    collator = RowCollator(prepared.tokenizer.pad_token_id, counter)
    trainer = build_trainer(model, args, train_rows, eval_rows, collator, callbacks, output / "tb", faults=faults)
    lengths = [row.real_tokens for row in prepared.train_rows]
    front = batching.micro_batch * batching.grad_accum * max(1, int(args.world_size))  # the rows of one optimizer step
    seed = args.data_seed if args.data_seed is not None else args.seed
    trainer._get_train_sampler = lambda dataset=None: HeaviestFirst(lengths, front, seed)  # the Trainer's own hook
    return trainer, callbacks


def distributed_exit(err: BaseException, trainer: Any, batching: Batching) -> BaseException | None:
    """Under accelerate launch, what every rank leaves with after an out-of-memory error on any of them: the
    rank that ran out tells the others (they fail in the collective it left) and its parent relaunches them
    all with half the micro batch (distributed.AgreedOutOfMemory). None: not distributed, or another error."""
    if distributed.world_size() <= 1:
        return None
    if is_out_of_memory(err):
        return distributed.tell_out_of_memory(trainer.state.global_step + 1, batching.micro_batch, batching.grad_accum)
    return distributed.peer_out_of_memory()


def sharded_gather(trainer: Any) -> Callable[[], dict[str, Any]] | None:
    """Under FSDP, accelerate's gathering of the sharded weights into one state dict (every rank must call it);
    None otherwise (each rank holds the whole adapter)."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None or getattr(accelerator, "distributed_type", None) is None or accelerator.distributed_type.value != "FSDP":
        return None
    return lambda: accelerator.get_state_dict(trainer.model_wrapped)


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def back_off(
    trainer: Any, callbacks: list[Any], batching: Batching, backoffs: list[dict[str, int]], prepared: Prepared, console: Any,
    *, to: Batching | None = None, why: str | None = None,
) -> tuple[Batching, Path | None]:  # fmt: skip
    """After an out-of-memory error, or (`to`, `why`) a first step over the budget: close the progress bar
    and signal handlers, record the new batching in `backoffs` and say so; return it and the checkpoint to
    go on from (a re-plan starts again, so its first step is measured again). ProblemFound for an
    out-of-memory error at micro batch 1."""
    step = trainer.state.global_step + (0 if to else 1)
    close_callbacks(trainer, callbacks)
    if to is None:
        if batching.micro_batch <= 1:
            raise ProblemFound(
                f"out of memory at step {step} with micro batch 1; lower --seq-len (now {prepared.config.settings.seq_len}) "
                "or turn on --grad-ckpt, then pass --resume"
            ) from None
        to = Batching(batching.micro_batch // 2, batching.grad_accum * 2)
    backoffs.append({"step": step, "micro_batch": to.micro_batch, "grad_accum": to.grad_accum})
    checkpoint = None if why else checkpoints.resumable(prepared.output).checkpoint
    where = f"from {checkpoint.name}" if checkpoint else "from the start"
    console.print(
        f"{why or f'out of memory at step {step}'}: micro batch → {to.micro_batch}, gradient accumulation → "
        f"{to.grad_accum} (effective batch unchanged); continuing {where}"
    )
    return to, checkpoint


def close_callbacks(trainer: Any, callbacks: list[Any]) -> None:
    """Stop the progress bar and restore the signal handlers of a Trainer that left train() with an exception."""
    from gpudoctor.train.callbacks import Progress, StopOnSignal

    for callback in callbacks:
        if isinstance(callback, (Progress, StopOnSignal)):
            callback.on_train_end(trainer.args, trainer.state, trainer.control)


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
        save_adapter(prepared, fitted)
    report = build_report(prepared, fitted, duration_s=round(time.perf_counter() - started, 2), planned_peak_bytes=planned_peak_bytes)
    if runfolder.main_process():
        write_report(report, prepared.output)
        write_loss_plot(report, prepared.output / "loss.png")
        write_report_html(prepared.output)  # report.html, the run as one page; `gpudoctor compare` rewrites it
        history.append_line(prepared.output, history.end_text(
            status=report.status, steps=report.steps, start_step=report.start_step, tokens=report.tokens,
            train_seconds=report.train_seconds or 0.0, checkpoint=report.checkpoint,
        ))  # fmt: skip
    distributed.finish_together()
    raise_for_status(report, fitted.log, prepared.config.training)
    return report


def save_adapter(prepared: Prepared, fitted: Fitted) -> None:
    """The adapter and tokenizer into the run folder, written by rank 0; under FSDP every rank first takes part
    in gathering the sharded weights (fitted.gather), which rank 0 then saves."""
    state = fitted.gather() if fitted.gather is not None else None
    if not runfolder.main_process():
        return
    place_saved(lambda folder: fitted.model.save_pretrained(folder, safe_serialization=True, state_dict=state), prepared.output)
    place_saved(prepared.tokenizer.save_pretrained, prepared.output)


def log_start(prepared: Prepared) -> None:
    """train.log's line for this segment's start (each segment appends; history.py)."""
    config = prepared.config
    if not runfolder.main_process():
        return
    history.append_line(prepared.output, history.start_text(
        model=str(prepared.model_dir), data=str(config.data), settings=config.settings, training=config.training,
        device=prepared.device, checkpoint=prepared.checkpoint,
    ))  # fmt: skip


def log_stopped(prepared: Prepared, err: BaseException) -> None:
    """train.log's line for a segment that training left with an exception (its one line is the CLI's)."""
    if not runfolder.main_process():
        return
    what = "stopped by a second signal" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}: {err}"
    began = f"resumed from {prepared.checkpoint.name}" if prepared.checkpoint else "started at step 0"
    history.append_line(prepared.output, f"{what} (this segment {began})")


def build_report(prepared: Prepared, fitted: Fitted, *, duration_s: float, planned_peak_bytes: int | None) -> TrainReport:
    """The TrainReport of the run; the planner's peak for these settings when the caller had none."""
    config, log, batching = prepared.config, fitted.log, fitted.batching
    newest = checkpoints.newest_complete(prepared.output)
    return TrainReport(
        output=str(prepared.output), model=str(prepared.model_dir), data=str(config.data),
        settings=asdict(replace(config.settings, micro_batch=batching.micro_batch, grad_accum=batching.grad_accum)),
        training=asdict(config.training), device=prepared.device, status=fitted.status, steps=fitted.steps,
        start_step=log.start_step, records=len(prepared.dataset.records), train_rows=len(prepared.train_rows),
        eval_rows=len(prepared.eval_rows), packed=config.settings.packing, truncated=prepared.tokenized.truncated,
        duration_s=duration_s, tokens=log.run_tokens, tokens_per_s=round(log.run_tokens_per_s, 1) if log.run_tokens_per_s else None,
        planned_peak_bytes=planned_peak_bytes if planned_peak_bytes is not None else planned_peak(prepared),
        measured_peak_allocated_bytes=log.peak_allocated, measured_peak_reserved_bytes=log.peak_reserved,
        measured_peak_rss_bytes=log.peak_rss,
        losses=[[s, v] for s, v in history.by_step(log.losses)], eval_losses=[[s, v] for s, v in history.by_step(log.eval_losses)],
        final_eval_loss=fitted.final_eval_loss, oom_backoffs=fitted.backoffs,
        notes=[*prepared.notes, *fitted.measured, *backoff_notes(fitted), *history_notes(log)],
        checkpoint=str(newest) if newest else None, versions=versions(),
        train_seconds=round(log.run_train_seconds, 3), resumes=list(log.carried.resumes),
        world_size=distributed.world_size(), strategy=distributed.strategy_of(config.settings),
        rank_peak_bytes=distributed.gathered(log.peak_reserved or log.peak_rss or 0),
    )  # fmt: skip


def history_notes(log: RunLog) -> list[str]:
    """What report.json should say about the run's history across --resume."""
    if log.carried.known:
        return []
    return [f"tokens and train seconds count from step {log.start_step}: checkpoint-{log.start_step} holds no totals of the steps before it"]


def backoff_notes(fitted: Fitted) -> list[str]:
    b, notes = fitted.batching, []
    if fitted.replans:
        notes.append(f"step 1 measured over the budget {len(fitted.replans)}×: re-planned before step 2, finished with micro batch {b.micro_batch}, gradient accumulation {b.grad_accum}")
    if fitted.backoffs:
        notes.append(f"out of memory {len(fitted.backoffs)}×: finished with micro batch {b.micro_batch}, gradient accumulation {b.grad_accum}")
    return notes


def planned_peak(prepared: Prepared) -> int | None:
    """The memory model's peak for exactly these settings on the hardware the run was judged against."""
    if prepared.spec is None or prepared.hardware is None:
        return None
    from gpudoctor.plan.memory import estimate

    try:
        return int(estimate(prepared.spec, prepared.config.settings, prepared.hardware).peak_reserved_bytes)
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
