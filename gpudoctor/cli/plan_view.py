"""How a Plan and the shipped profiles look on a terminal: the tables `plan` and `train` print.

Rendering only: every function takes the console to print on and computes nothing the plan
does not already hold.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gpudoctor.plan.types import Plan
from gpudoctor.types import GIB

BAR_WIDTH = 40
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
    "allocator_overhead": "allocator cache (free blocks)",
    "cuda_context": "CUDA context",
}
# The three peaks at the bottom of the memory table, by device: what torch allocates, what its caching
# allocator reserves, what the device shows (the figure the plan fits in its budget).
PEAK_LABELS = {
    "cuda": ("peak allocated (torch)", "peak reserved (torch cache)", "device used (nvidia-smi)"),
    "rocm": ("peak allocated (torch)", "peak reserved (torch cache)", "device used (amd-smi)"),
    "cpu": ("peak allocated (torch)", "peak allocated (no cache on the CPU)", "peak with the process (RSS)"),
}


def render_profiles(out: Console) -> None:
    """The shipped model and GPU profiles, as two tables."""
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import list_gpus, list_models, load_gpu, load_model

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


def render(plan: Plan, out: Console) -> None:
    """The human-readable plan: settings, memory bars against the budget, time, reasons, omissions."""
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
        ("batch", f"micro batch {s.micro_batch} x grad accum {s.grad_accum}" + (f" x {s.world_size} GPUs ({s.strategy})" if s.world_size > 1 else "") + (f", {s.gpus} on each of {s.nodes} nodes" if s.nodes > 1 else "")),
        ("grad checkpointing", "on" if s.grad_ckpt else "off"),
        ("optimizer", s.optimizer),
        ("attention", s.attn),
        ("packing", "on" if s.packing else "off"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _memory_table(plan: Plan) -> Table:
    from gpudoctor.plan.memory import device_used_bytes

    memory = plan.memory
    budget = memory.budget_bytes or 1
    used = device_used_bytes(memory)
    share = used / budget
    where = "RAM" if plan.hardware.device == "cpu" else "Memory per GPU"
    title = f"{where} (GiB = 1024³): peak {used / GIB:.1f} of {budget / GIB:.1f} GiB ({share:.0%})"
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("")
    for key, value in memory.breakdown_bytes.items():
        if value <= 0:
            continue
        table.add_row(_component_label(plan, key), f"{value / GIB:.2f}", f"{value / budget:.0%}", "█" * min(BAR_WIDTH, max(1, round(BAR_WIDTH * value / budget))))
    allocated, reserved, device = PEAK_LABELS.get(plan.hardware.device, PEAK_LABELS["cuda"])
    table.add_row(allocated, f"{memory.peak_allocated_bytes / GIB:.2f}", f"{memory.peak_allocated_bytes / budget:.0%}", "")
    table.add_row(reserved, f"{memory.peak_reserved_bytes / GIB:.2f}", f"{memory.peak_reserved_bytes / budget:.0%}", "")
    table.add_row(device, f"{used / GIB:.2f}", f"{share:.0%}", _budget_bar(share))
    return table


def _component_label(plan: Plan, key: str) -> str:
    if key == "base_weights":
        return "base weights (NF4)" if plan.settings.method == "qlora" else "base weights (16-bit)"
    if key == "cuda_context":
        return {"cpu": "Python process (torch, transformers)", "rocm": "HIP context"}.get(plan.hardware.device, COMPONENT_LABELS[key])
    if key == "base_16bit":
        return f"embeddings, head, norms ({_leftover_dtype(plan)})"
    if key == "lora_weights":
        adapters = plan.memory.breakdown_bytes.get("lora_weights", 0)
        return "LoRA weights" + (" (fp32)" if adapters and adapters >= 4 * _trainable(plan) * 0.99 else " (16-bit)")
    return COMPONENT_LABELS.get(key, key)


def _trainable(plan: Plan) -> float:
    from gpudoctor.plan.memory import lora_params

    shards = plan.settings.world_size if plan.settings.strategy == "fsdp" else 1
    return lora_params(plan.model, plan.settings) / shards


def _leftover_dtype(plan: Plan) -> str:
    """fp32, 16-bit or mixed: the bytes per weight the plan counts for embeddings, lm_head and norms."""
    from gpudoctor.plan.memory import param_counts

    counts = param_counts(plan.model)
    shards = plan.settings.world_size if plan.settings.strategy == "fsdp" else 1
    per_weight = plan.memory.breakdown_bytes.get("base_16bit", 0) * shards / max(1, counts["embeddings"] + counts["other"])
    if per_weight > 3.95:
        return "fp32"
    return "16-bit" if per_weight < 2.001 else "mixed"


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
