"""The run-setting flags `plan` and `train` share: one definition, one help text, one parser.

Each is a typer OptionInfo used as the default of a parameter in both commands; `fixed_settings`
turns the values given into the `fixed` mapping the planner keeps (None means: let it choose).
"""

from __future__ import annotations

from typing import Any

import typer

from gpudoctor.errors import BadInput

COMPUTE_DTYPES = ("bf16", "fp16", "fp32")

GPU = typer.Option(None, "--gpu", help="Plan for: auto (probe this machine, the default), cpu, or a GPU profile id such as rtx-4090.")
VRAM_GIB = typer.Option(None, "--vram-gib", help="Plan for this many GiB per GPU instead of the card's memory.")
GPUS = typer.Option(None, "--gpus", help="Number of GPUs (data parallel; >1 trains under accelerate launch).")
STRATEGY = typer.Option(None, "--strategy", help="ddp (full copy per GPU) or fsdp (sharded).")
METHOD = typer.Option(None, "--method", help="qlora (4-bit NF4 base) or lora (16-bit base).")
LORA_R = typer.Option(None, "--lora-r", help="LoRA rank.")
LORA_ALPHA = typer.Option(None, "--lora-alpha", help="LoRA alpha (default 2 x rank).")
LORA_DROPOUT = typer.Option(None, "--lora-dropout", help="Dropout on the LoRA inputs (default 0; 0.05-0.1 regularises a small dataset).")
LORA_TARGETS = typer.Option(None, "--lora-targets", help="all-linear or a comma list: q_proj,v_proj,...")
SEQ_LEN = typer.Option(None, "--seq-len", help="Tokens per sequence (row).")
MICRO_BATCH = typer.Option(None, "--micro-batch", help="Sequences per forward pass per GPU.")
GRAD_ACCUM = typer.Option(None, "--grad-accum", help="Micro batches per optimizer step.")
GRAD_CKPT = typer.Option(None, "--grad-ckpt/--no-grad-ckpt", help="Gradient checkpointing.", show_default=False)
OPTIMIZER = typer.Option(None, "--optimizer", help="adamw_torch, adamw_8bit, paged_adamw_8bit, paged_adamw_32bit.")
ATTN = typer.Option(None, "--attn", help="sdpa, flash or eager.")
COMPUTE_DTYPE = typer.Option(None, "--compute-dtype", help="bf16, fp16 or fp32 (default: what the hardware runs well).")
DOUBLE_QUANT = typer.Option(None, "--double-quant/--no-double-quant", help="QLoRA double quantization.", show_default=False)
PACKING = typer.Option(None, "--packing/--no-packing", help="Pack short records into full sequences.", show_default=False)


def lora_targets(value: str | None) -> list[str] | None:
    if value is None:
        return None
    targets = [part.strip() for part in value.split(",") if part.strip()]
    if not targets:
        raise BadInput("--lora-targets: give all-linear or a comma list such as q_proj,v_proj")
    return targets


def fixed_settings(**values: Any) -> dict[str, Any]:
    """The settings the user fixed (None dropped); `lora_targets` is the raw comma list."""
    dropout = values.get("lora_dropout")
    if dropout is not None and not 0 <= dropout < 1:
        raise BadInput(f"--lora-dropout: must be at least 0 and below 1 (got {dropout:g})")
    if values.get("compute_dtype") not in (None, *COMPUTE_DTYPES):
        raise BadInput(f"--compute-dtype {values['compute_dtype']}: use {', '.join(COMPUTE_DTYPES)}")
    if "lora_targets" in values:
        values["lora_targets"] = lora_targets(values["lora_targets"])
    fixed = {key: value for key, value in values.items() if value is not None}
    if fixed.get("method") == "lora":
        fixed["quant"] = None  # a 16-bit base: nothing is quantized
    return fixed
