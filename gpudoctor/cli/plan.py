"""`gpudoctor plan`: which settings fit this card, what each part of memory takes, how long the run takes.

Thin shell: parse flags, build ModelSpec / Hardware / DataStats, call the planner, render.
Imports nothing heavy: no torch, transformers or datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from gpudoctor.cli import run_options as opts
from gpudoctor.cli.output import console, print_json
from gpudoctor.errors import EXIT_PROBLEM, BadInput, ProblemFound
from gpudoctor.plan.types import GIB, DataStats, ModelSpec, Plan, TrainingOptions

BAR_WIDTH = 40
EMIT_FORMATS = ("gpudoctor", "axolotl")
COMPONENT_LABELS = {
    "base_weights": "base weights",
    "base_16bit": "embeddings, lm_head, norms",
    "lora_weights": "LoRA weights (fp32)",
    "lora_grads": "LoRA gradients",
    "optimizer": "optimizer states",
    "ddp_buckets": "DDP gradient buckets",
    "fsdp_gather": "FSDP gathered layers",
    "activations": "activations kept for backward",
    "logits": "logits and loss",
    "layer_backward": "one layer's recompute + backward",
    "optimizer_step": "optimizer step temporaries",
    "allocator_overhead": "allocator fragmentation",
    "cuda_context": "CUDA context",
}


def register(app: typer.Typer) -> None:
    app.command("plan", help="Plan a LoRA/QLoRA run that fits the GPU: settings, memory per component, time.")(plan_command)


def plan_command(
    model: Optional[str] = typer.Option(None, "--model", help="Profile id (see --list), a local model folder or a config.json path."),
    list_profiles: bool = typer.Option(False, "--list", help="List the model and GPU profiles and exit."),
    gpu: Optional[str] = opts.GPU,
    vram_gib: Optional[float] = opts.VRAM_GIB,
    gpus: Optional[int] = opts.GPUS,
    strategy: Optional[str] = opts.STRATEGY,
    method: Optional[str] = opts.METHOD,
    lora_r: Optional[int] = opts.LORA_R,
    lora_alpha: Optional[int] = opts.LORA_ALPHA,
    lora_dropout: Optional[float] = opts.LORA_DROPOUT,
    lora_targets: Optional[str] = opts.LORA_TARGETS,
    seq_len: Optional[int] = opts.SEQ_LEN,
    micro_batch: Optional[int] = opts.MICRO_BATCH,
    grad_accum: Optional[int] = opts.GRAD_ACCUM,
    grad_ckpt: Optional[bool] = opts.GRAD_CKPT,
    optimizer: Optional[str] = opts.OPTIMIZER,
    attn: Optional[str] = opts.ATTN,
    compute_dtype: Optional[str] = opts.COMPUTE_DTYPE,
    double_quant: Optional[bool] = opts.DOUBLE_QUANT,
    packing: Optional[bool] = opts.PACKING,
    effective_batch: int = typer.Option(16, "--effective-batch", help="Sequences per optimizer step to keep."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset file: size seq_len to its token lengths."),
    epochs: float = typer.Option(3.0, "--epochs", help="Epochs, for the time estimate and the emitted config."),
    output: Optional[str] = typer.Option(None, "--output", help="Run folder written into the emitted config."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    emit: Optional[str] = typer.Option(None, "--emit", help="Print a config instead: gpudoctor (run.yaml) or axolotl."),
) -> None:
    from gpudoctor.plan.hardware import hardware_for
    from gpudoctor.plan.planner import make_plan
    from gpudoctor.profiles import load_model

    if list_profiles:
        render_profiles()
        return
    if model is None:
        raise BadInput("--model: name a model profile (see --list), a local model folder or a config.json path")
    if emit is not None and emit not in EMIT_FORMATS:
        raise BadInput(f"--emit: unknown format '{emit}'; use one of {', '.join(EMIT_FORMATS)}")
    if epochs <= 0:
        raise BadInput(f"--epochs: must be more than 0 (got {epochs:g})")
    spec = load_model(model)
    gpu = gpu or "auto"
    hardware = hardware_for(gpu, vram_gib, gpus)
    fixed = opts.fixed_settings(
        method=method, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, seq_len=seq_len, micro_batch=micro_batch,
        grad_accum=grad_accum, grad_ckpt=grad_ckpt, optimizer=optimizer, attn=attn, compute_dtype=compute_dtype,
        double_quant=double_quant, packing=packing, gpus=gpus, strategy=strategy, lora_targets=lora_targets,
    )  # fmt: skip
    stats = data_stats(data, spec) if data is not None else None
    tokens_total = None
    plan = make_plan(spec, hardware, fixed, stats, effective_batch)
    if stats is not None and plan.estimate is not None:
        tokens_total = int(plan.estimate.tokens_total * epochs)
        plan = make_plan(spec, hardware, fixed, stats, effective_batch, tokens_total)

    if gpu == "auto":
        _note_probe(plan, fixed)

    if emit is not None:
        if not plan.fits:
            raise ProblemFound(f"{spec.name} does not fit {hardware.name} with these settings; " + "; ".join(plan.suggestions))
        _emit(plan, emit, data, output, epochs)
        return
    if as_json:
        from gpudoctor.plan.report import plan_to_json

        print_json(json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False))
    else:
        render(plan)
    if not plan.fits:
        raise typer.Exit(EXIT_PROBLEM)



def _note_probe(plan: Plan, fixed: dict[str, Any]) -> None:
    """Say what `--gpu auto` found when it matters: no GPU at all, or more GPUs than planned for."""
    hw = plan.hardware
    if hw.source == "reference":
        plan.notes.insert(0, "no GPU was found, so --vram-gib plans for a GPU with that memory; name your card with --gpu for its own speed")
    elif hw.device == "cpu":
        plan.notes.insert(0, "no GPU was found (run `gpudoctor check` to see why), so this plan is for the CPU; --gpu NAME plans for a card")
    elif hw.gpus > plan.settings.gpus and "gpus" not in fixed:
        plan.notes.insert(0, f"{hw.gpus} GPUs of this kind were found; --gpus {hw.gpus} plans for all of them")




def data_stats(path: str, spec: ModelSpec) -> DataStats:
    """Token lengths of a dataset file, counted with the model folder's tokenizer.json when it has one."""
    from gpudoctor.data.load import load_dataset
    from gpudoctor.data.stats import compute_stats

    tokenizer = None
    if spec.local_path is not None and (Path(spec.local_path) / "tokenizer.json").is_file():
        tokenizer = str(Path(spec.local_path))
    return compute_stats(load_dataset(path), tokenizer)


def _emit(plan: Plan, emit: str, data: str | None, output: str | None, epochs: float) -> None:
    from gpudoctor.plan.emit import emit_axolotl, emit_gpudoctor

    training = TrainingOptions(epochs=epochs)
    text = emit_gpudoctor(plan, data, output, training) if emit == "gpudoctor" else emit_axolotl(plan, data, output, training)
    print_json(text)


def render_profiles() -> None:
    """The shipped model and GPU profiles, as two tables."""
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import list_gpus, list_models, load_gpu, load_model

    out = console()
    models = Table(title="Models (--model)", title_justify="left", box=None, padding=(0, 1))
    for column in ("id", "params", "vocab", "max seq", "licence", "gated", "hub id"):
        models.add_column(column, justify="right" if column in ("params", "vocab", "max seq") else "left", no_wrap=column != "hub id", overflow="fold")
    for name in list_models():
        spec = load_model(name)
        licence = spec.licence or ""
        models.add_row(
            name, f"{total_params(spec) / 1e9:.1f}B", f"{spec.vocab_size:,}", f"{spec.max_position_embeddings:,}",
            licence.split(" (")[0], "yes" if "gated" in licence else "no", spec.hub_id or "",
        )  # fmt: skip
    gpus = Table(title="GPUs (--gpu)", title_justify="left", box=None, padding=(0, 1))
    for column in ("id", "name", "GiB", "bf16 TFLOP/s", "bf16", "flash-attn"):
        gpus.add_column(column, justify="right" if column in ("GiB", "bf16 TFLOP/s") else "left")
    for name in list_gpus():
        spec = load_gpu(name)
        gpus.add_row(name, spec.display_name, f"{spec.vram_gib:g}", f"{spec.peak_bf16_tflops:g}", "yes" if spec.bf16 else "no", "yes" if spec.flash_attn_train else "no")
    out.print(models)
    out.print()
    out.print(gpus)


def render(plan: Plan) -> None:
    """The human-readable plan: settings, memory bars against the budget, time, reasons, omissions."""
    out = console()
    hw = plan.hardware
    verdict = "fits" if plan.fits else "does NOT fit"
    out.print(Text.assemble(("Plan: ", "bold"), f"{plan.model.name} on {hw.name} — {verdict}"))
    out.print()
    out.print(_settings_table(plan))
    out.print()
    out.print(_memory_table(plan))
    out.print()
    for line in _time_lines(plan):
        out.print(line)
    if plan.coverage is not None:
        cov = plan.coverage
        out.print(
            f"Data: {cov.records} records; {cov.percentile:.0%} fit in {cov.covering_seq_len} tokens (longest {cov.longest}); "
            f"{cov.cut_records} would be cut at seq_len {plan.settings.seq_len}. Token counts: {cov.tokenizer}."
        )
    if plan.suggestions:
        out.print()
        out.print(_bullets("What would fit:", plan.suggestions))
    out.print()
    out.print(_bullets("Why:", plan.notes))
    out.print(_bullets("Not counted:", plan.not_counted))


def _bullets(title: str, lines: list[str]) -> Table:
    """A titled list whose wrapped lines stay indented under their bullet."""
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None, padding=0)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for line in lines:
        table.add_row("  - ", line)
    return table


def _settings_table(plan: Plan) -> Table:
    s = plan.settings
    table = Table(title="Settings", title_justify="left", show_header=False, box=None, padding=(0, 2))
    quant = f"{s.quant}, double quant {'on' if s.double_quant else 'off'}" if s.method == "qlora" else "16-bit base"
    targets = ",".join(s.lora_targets)
    rows = [
        ("method", f"{s.method} ({quant}), compute {s.compute_dtype}"),
        ("LoRA", f"r {s.lora_r}, alpha {s.lora_alpha}, dropout {s.lora_dropout:g}, targets {targets}"),
        ("seq_len", str(s.seq_len)),
        ("batch", f"micro batch {s.micro_batch} x grad accum {s.grad_accum}" + (f" x {s.gpus} GPUs ({s.strategy})" if s.gpus > 1 else "")),
        ("grad checkpointing", "on" if s.grad_ckpt else "off"),
        ("optimizer", s.optimizer),
        ("attention", s.attn),
        ("packing", "on" if s.packing else "off"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _memory_table(plan: Plan) -> Table:
    memory = plan.memory
    budget = memory.budget_bytes or 1
    share = memory.peak_reserved_bytes / budget
    where = "RAM" if plan.hardware.device == "cpu" else "Memory per GPU"
    title = f"{where} (GiB = 1024³): peak {memory.peak_reserved_bytes / GIB:.1f} of {budget / GIB:.1f} GiB ({share:.0%})"
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("")
    quant_label = "base weights (NF4)" if plan.settings.method == "qlora" else "base weights (16-bit)"
    for key, value in memory.breakdown_bytes.items():
        if value <= 0:
            continue
        label = quant_label if key == "base_weights" else COMPONENT_LABELS.get(key, key)
        if key == "cuda_context":
            label = {"cpu": "Python process (torch, transformers)", "rocm": "HIP context"}.get(plan.hardware.device, label)
        if key == "base_16bit" and plan.settings.method == "qlora":
            label += " (fp32)"
        table.add_row(label, f"{value / GIB:.2f}", f"{value / budget:.0%}", "█" * min(BAR_WIDTH, max(1, round(BAR_WIDTH * value / budget))))
    table.add_row("peak allocated (torch)", f"{memory.peak_allocated_bytes / GIB:.2f}", f"{memory.peak_allocated_bytes / budget:.0%}", "")
    total = "peak with the process" if plan.hardware.device == "cpu" else "peak reserved + context"
    table.add_row(total, f"{memory.peak_reserved_bytes / GIB:.2f}", f"{share:.0%}", _budget_bar(share))
    return table


def _budget_bar(share: float) -> str:
    filled = min(BAR_WIDTH, round(BAR_WIDTH * share))
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _time_lines(plan: Plan) -> list[str]:
    estimate = plan.estimate
    if estimate is None:
        return [f"Time: unknown — no TFLOP/s figure for {plan.hardware.name}; pass --gpu NAME of a similar card"]
    basis = "your data x epochs" if estimate.tokens_basis == "data" else "a reference run; pass --data for yours"
    speed = (
        f"Time: ~{estimate.tokens_per_s:,.0f} tokens/s "
        f"({plan.hardware.peak_tflops:g} peak TFLOP/s x {estimate.utilisation:.0%} assumed utilisation)"
    )
    if plan.hardware.device == "cpu":
        speed += " — a rough CPU figure"
    return [speed, f"      {estimate.hours:,.1f} h for {estimate.tokens_total:,} tokens ({basis})"]
