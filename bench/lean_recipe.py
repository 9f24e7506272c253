"""The lean QLoRA recipe against the old one, on the CPU with bf16 compute: peak bytes, loss curve, tokens/s.

Model: a Mistral-architecture model with random weights and a realistic 32,000-token vocabulary
(hidden 256, 4 layers: the demo's shape; --hidden-size for a wider one), NF4 base (bitsandbytes),
LoRA r=16 on all linear layers, bf16 compute. The lm_head rows of the ids the (demo's) tokenizer
makes share one direction, as a pretrained head's would, so that LoRA can lower the loss at all. Data: the public alpaca_en_demo.json (long replies; the shipped support.json if it is
missing), tokenized by gpudoctor (labels -100 outside the replies) and packed into rows of --seq-len
tokens (position_ids restart per sample), one row per micro batch.

Recipes (each change alone, then both):
  old       peft.prepare_model_for_kbit_training (embeddings, norms, lm_head upcast to fp32, so the
            residual stream and the checkpoints are fp32) + transformers' ForCausalLMLoss over full logits
  16bit     gpudoctor.train.model.prepare_for_training (everything in bf16) + transformers' loss
  chunked   the fp32 upcast + gpudoctor.train.loss (chunked cross-entropy, 1024 label tokens a chunk)
  lean      both: what `gpudoctor train` does now
Memory: one training step as the Trainer runs it (train mode, bf16 autocast, AdamW), after a warm-up
step, profiled with torch.profiler's memory timeline (the method of tests/plan/test_memory.py): the
peak of the bytes allocated during the step, on top of the parameters and optimizer state, which are
counted apart. Loss and speed: `old` and `lean` each train --steps optimizer steps through
gpudoctor's own Trainer set-up (gpudoctor.train.trainer), same seed, same rows in the same order,
--threads threads; tokens/s counts real tokens of the steps after the first two.
Usage:
    .venv/bin/python bench/lean_recipe.py [--seq-len 2048] [--steps 40] [--lr 2e-3] [--threads 1] [--no-grad-ckpt] [--memory-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ALPACA = REPO.parent / "shared" / "datasets" / "alpaca_en_demo.json"
SUPPORT = REPO / "gpudoctor" / "demo" / "support.json"
SHAPE = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2)
VOCAB = 32000
SEED = 1234
TIMED_AFTER = 2  # the first optimizer steps (allocator, thread pools) are not timed
MIB = 1024**2
UNUSED_SHIFT = 0.5  # see build_model


def build_model(folder: Path, shape: dict[str, int]) -> Path:
    """A random-weight MistralForCausalLM with a 32k vocabulary (safetensors) and the demo's tokenizer."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    from gpudoctor.train.demo import ASSETS, TOKENIZER_FILES

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(ASSETS / name, folder / name)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = MistralConfig(
        vocab_size=VOCAB, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape,
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = MistralForCausalLM(config)
    with torch.no_grad():
        # Random weights know nothing, and with a random lm_head no LoRA can say "not one of the 30,851 ids
        # the tokenizer never makes" (the loss would sit near ln 32000). A pretrained lm_head has such
        # shared directions; give the tokenizer's ids one (the unused rows stay random), so the loss can fall.
        direction = torch.randn(config.hidden_size)
        model.lm_head.weight[: len(tokenizer)] += UNUSED_SHIFT * direction / direction.norm()
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def settings_for(seq_len: int, grad_ckpt: bool):
    from gpudoctor.settings import Settings

    return Settings(
        method="qlora", quant="nf4", double_quant=True, compute_dtype="bf16", lora_r=16, lora_alpha=32, lora_dropout=0.0,
        lora_targets=["all-linear"], seq_len=seq_len, micro_batch=1, grad_accum=1, grad_ckpt=grad_ckpt,
        optimizer="adamw_torch", attn="sdpa", packing=True,
    )  # fmt: skip


def load(model_dir: Path, settings, recipe: str):
    """The model for one recipe: NF4 base + LoRA, with or without the fp32 upcast and the chunked loss."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from gpudoctor.train import loss, model as models

    torch.manual_seed(SEED)
    base = models.load_base(model_dir, settings)
    if recipe in ("16bit", "lean"):
        model = models.add_lora(base, settings)  # gpudoctor train's path
    else:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=settings.grad_ckpt, gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
        loss.install(model)
    if recipe in ("old", "16bit"):
        loss.uninstall(model)
    return model


def rows_for(model_dir: Path, seq_len: int):
    from gpudoctor.data.load import load_dataset
    from gpudoctor.train import model as models
    from gpudoctor.train.packing import pack
    from gpudoctor.train.tokenize import tokenize_dataset

    data = ALPACA if ALPACA.is_file() else SUPPORT
    tokenizer = models.load_tokenizer(model_dir)
    tokenized = tokenize_dataset(load_dataset(str(data)), tokenizer, seq_len, truncate=True)
    rows = pack(tokenized.samples, seq_len)
    rows.sort(key=lambda r: -len(r.input_ids))  # the fullest rows first: memory is measured on a full one
    return data, tokenizer, rows


def param_bytes(model) -> dict[str, int]:
    import torch

    parts = {"nf4": 0, "16bit": 0, "fp32 (not LoRA)": 0, "lora": 0}
    for name, p in model.named_parameters():
        size = p.numel() * p.element_size()
        if "lora_" in name:
            parts["lora"] += size
        elif p.dtype == torch.float32:
            parts["fp32 (not LoRA)"] += size
        elif p.dtype in (torch.bfloat16, torch.float16):
            parts["16bit"] += size
        else:
            parts["nf4"] += size
    return parts


def step_peak(model, batch) -> int:
    """Peak bytes allocated during one training step (forward under bf16 autocast, backward, AdamW step)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler import _memory_profiler as timeline_module

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # optimizer state exists before the measured step, as in every step after the first
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    _, sizes = timeline_module.MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return int(max(sum(s) for s in sizes))


def train_curve(model, rows, tokenizer, settings, steps: int, lr: float, workdir: Path) -> dict:
    """--steps optimizer steps through gpudoctor's Trainer set-up: the loss of each step and real tokens/s."""
    from transformers import TrainerCallback

    from gpudoctor.settings import TrainingOptions
    from gpudoctor.train.packing import RowCollator, RowDataset, TokenCounter
    from gpudoctor.train.trainer import Batching, build_trainer, training_arguments

    counter = TokenCounter()
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == TIMED_AFTER:
                clock["t0"], clock["cpu0"], clock["tokens0"] = time.perf_counter(), time.process_time(), counter.total
            clock["t1"], clock["cpu1"], clock["tokens1"] = time.perf_counter(), time.process_time(), counter.total

    training = TrainingOptions(epochs=100, lr=lr, save_steps=10**6, seed=SEED, warmup_ratio=0.0, lr_scheduler="constant", max_steps=steps, logging_steps=1)
    args = training_arguments(settings, training, Batching(1, 1), workdir / "checkpoints", on_gpu=False, has_eval=False)
    trainer = build_trainer(model, args, RowDataset(rows, count_tokens=True), None, RowCollator(tokenizer.pad_token_id, counter), [Clock()], workdir / "tb")
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # Each step's batch is collated before its step ends; the dataloader may prefetch one ahead on both sides alike.
    tokens = clock["tokens1"] - clock["tokens0"]
    # Per second of wall time, and per second of this process's CPU time (steadier on a shared machine).
    return {"losses": losses, "tokens_per_s": tokens / (clock["t1"] - clock["t0"]), "tokens_per_cpu_s": tokens / (clock["cpu1"] - clock["cpu0"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-3, help="constant learning rate of the loss curves (the demo's)")
    parser.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--hidden-size", type=int, default=SHAPE["hidden_size"], help="a wider model (intermediate 2.75x, 8 heads)")
    parser.add_argument("--memory-only", action="store_true", help="skip the loss curves")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from gpudoctor.train.quiet import quiet_libraries
    from gpudoctor.train.packing import RowCollator, RowDataset

    quiet_libraries()
    torch.set_num_threads(args.threads)
    settings = settings_for(args.seq_len, args.grad_ckpt)
    shape = dict(SHAPE)
    if args.hidden_size != SHAPE["hidden_size"]:
        shape.update(hidden_size=args.hidden_size, intermediate_size=args.hidden_size * 11 // 4)
    result: dict = {"lr": args.lr, "seq_len": args.seq_len, "grad_ckpt": args.grad_ckpt, "threads": args.threads, "vocab": VOCAB, "shape": shape}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = build_model(workdir / "model", shape)
        data, tokenizer, rows = rows_for(model_dir, args.seq_len)
        batch = RowCollator(tokenizer.pad_token_id)([RowDataset(rows[:1], count_tokens=False)[0]])
        labelled = int((batch["labels"][:, 1:] != -100).sum())
        print(f"data {data.name}: {len(rows)} packed rows; measured row: {batch['input_ids'].shape[1]} tokens, {labelled} with a label")
        print(f"model: Mistral {shape}, vocab {VOCAB}, NF4 + LoRA r=16 all-linear, bf16 compute, grad_ckpt={args.grad_ckpt}, {args.threads} thread(s)")
        result.update(data=data.name, rows=len(rows), measured_row_tokens=int(batch["input_ids"].shape[1]), measured_row_labels=labelled)

        print("\npeak of one training step (MiB allocated during the step; parameters counted apart)")
        memory = {}
        for recipe in ("old", "16bit", "chunked", "lean"):
            model = load(model_dir, settings, recipe)
            peak = step_peak(model, batch)
            params = param_bytes(model)
            memory[recipe] = {"step_peak_bytes": peak, "param_bytes": params}
            print(f"  {recipe:8s} step peak {peak / MIB:8.1f}   params: " + ", ".join(f"{k} {v / MIB:.1f}" for k, v in params.items()))
            del model
        old = memory["old"]["step_peak_bytes"]
        for recipe in ("16bit", "chunked", "lean"):
            saved = old - memory[recipe]["step_peak_bytes"]
            print(f"  {recipe:8s} saves {saved / MIB:7.1f} MiB of the step peak ({saved / old:.0%})")
        fp32_params = memory["old"]["param_bytes"]["fp32 (not LoRA)"] - memory["lean"]["param_bytes"]["fp32 (not LoRA)"]
        print(f"  and the static parameters: {fp32_params / MIB:.1f} MiB of fp32 embeddings/norms/lm_head become {memory['lean']['param_bytes']['16bit'] / MIB:.1f} MiB of bf16")
        result["memory"] = memory

        if not args.memory_only:
            curves = {}
            for recipe in ("old", "lean"):
                model = load(model_dir, settings, recipe)
                curves[recipe] = train_curve(model, rows, tokenizer, settings, args.steps, args.lr, workdir / recipe)
                del model
            a, b = curves["old"]["losses"], curves["lean"]["losses"]
            deltas = [abs(x - y) for x, y in zip(a, b)]
            print(f"\nloss over {len(a)} steps (same seed, same rows, lr {args.lr:g} constant)")
            print(f"  old:  first {a[0]:.4f}  final {a[-1]:.4f}")
            print(f"  lean: first {b[0]:.4f}  final {b[-1]:.4f}")
            print(f"  max |Δloss| {max(deltas):.4f} (step {deltas.index(max(deltas)) + 1}), mean |Δloss| {sum(deltas) / len(deltas):.4f}")
            print(
                f"tokens/s (real tokens, steps {TIMED_AFTER + 1}-{len(a)}, {args.threads} thread(s)): old {curves['old']['tokens_per_s']:.0f}, "
                f"lean {curves['lean']['tokens_per_s']:.0f}; per CPU-second: old {curves['old']['tokens_per_cpu_s']:.0f}, lean {curves['lean']['tokens_per_cpu_s']:.0f}"
            )
            result["curves"] = curves
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
