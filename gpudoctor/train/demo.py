"""The built-in demo: a tiny Mistral-architecture model with random weights and the shipped support data.

The model is made at run time from the tokenizer shipped in gpudoctor/demo/, saved as
safetensors, and then loaded through the same NF4 path as any real model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from typing import Any

from gpudoctor.plan.types import Plan

from gpudoctor.settings import RunConfig, TrainingOptions

ASSETS = Path(__file__).resolve().parent.parent / "demo"
DATA = ASSETS / "support.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# Sized so the demo trains in about a minute on a 2-core CPU (fp32 compute, NF4 base weights).
MODEL_SHAPE = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2)
DEMO_SEED = 1234


def build_demo_model(folder: str | Path, *, seed: int = DEMO_SEED, shape: dict[str, int] | None = None) -> Path:
    """Write a random-weight MistralForCausalLM (safetensors) plus the shipped tokenizer into `folder`."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    from gpudoctor.atomic import safetensors_follow_umask
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    safetensors_follow_umask()  # model.safetensors would be 0600 (safetensors#782)

    folder = Path(folder)
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(ASSETS / name, folder / name)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = MistralConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **(shape or MODEL_SHAPE),
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config)
    staging = folder / ".staging"
    model.save_pretrained(str(staging), safe_serialization=True)
    for path in staging.iterdir():
        path.replace(folder / path.name)
    staging.rmdir()
    return folder


def prepare_demo(workdir: str | Path) -> tuple[str, str]:
    """(model folder, data path) for the demo, the model built under workdir/demo-model."""
    model_dir = build_demo_model(Path(workdir) / "demo-model")
    return str(model_dir), str(DATA)


def demo_fixed() -> dict[str, Any]:
    """The demo's own knobs; the planner fills in the rest for this hardware (compute dtype, optimizer)."""
    return dict(
        method="qlora", quant="nf4", double_quant=True, lora_r=16, lora_alpha=32, lora_dropout=0.0,
        lora_targets=["all-linear"], seq_len=256, micro_batch=4, grad_accum=1, grad_ckpt=False, attn="sdpa", packing=True,
    )


def demo_training() -> TrainingOptions:
    return TrainingOptions(epochs=20, lr=2e-3, val_size=16, save_steps=50, seed=DEMO_SEED, warmup_ratio=0.05)


def demo_config(workdir: str | Path, output: str | Path, hardware: Any = None, fixed: dict[str, Any] | None = None) -> tuple[RunConfig, Plan]:
    """The demo's RunConfig and the Plan behind it: prepares the model, plans for `hardware`
    (default: what the probe finds, else the CPU), keeps the user's `fixed` settings over the demo's."""
    from gpudoctor.plan.hardware import hardware_for
    from gpudoctor.plan.planner import make_plan
    from gpudoctor.profiles import load_model

    model_dir, data = prepare_demo(workdir)
    wanted = {**demo_fixed(), **{k: v for k, v in (fixed or {}).items() if v is not None}}
    plan = make_plan(load_model(model_dir), hardware or hardware_for("auto"), wanted, effective_batch=wanted["micro_batch"] * wanted["grad_accum"])
    return RunConfig(model=model_dir, data=data, output=str(output), settings=plan.settings, training=demo_training()), plan
