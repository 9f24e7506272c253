"""Real (non-padding) tokens/s: `gpudoctor train` against a plain hand-written QLoRA script, on this machine.

Same tiny Mistral-architecture model (the demo's shape, random weights, NF4 base), same data,
same seq_len, same micro batch, on two workloads: the demo's support.json (short replies) at
seq_len 256 and the public alpaca_en_demo.json (999 records, long outputs) at seq_len 512. The baseline is
the usual recipe: Trainer + peft + bitsandbytes NF4, prepare_model_for_kbit_training with its
default gradient checkpointing, every sample padded to max_length, no grouping. It runs twice:
(a) fp32 compute and (b) the recipe's usual bf16; gpudoctor runs in both dtypes too, and the
planner's own CPU pick (bf16 where the CPU has avx512_bf16/amx_bf16, else fp32) is compared with the
baseline's bf16.
Each side runs in its own process, --rounds times in turn; the best rate of each counts (on a
shared machine other work only ever slows a run down). One thread per run by default: with two
threads on a busy 2-core box OpenMP spin-waits and the figures swing several-fold. Usage:
    .venv/bin/python bench/train_throughput.py [--steps 8] [--rounds 2] [--threads N] [--data FILE --seq-len N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALPACA = REPO.parent / "shared" / "datasets" / "alpaca_en_demo.json"
SUPPORT = REPO / "gpudoctor" / "demo" / "support.json"
WARMUP_STEPS = 2  # the first optimizer steps (allocator, thread pools) are not timed


def baseline(model_dir: str, data: str, seq_len: int, micro_batch: int, steps: int, dtype_name: str) -> dict:
    """The hand-written script, as people usually write it."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = json.loads(Path(data).read_text(encoding="utf-8"))
    prompt = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{}\n\n### Response:\n"
    rows = []
    for r in records:
        instruction = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
        encoded = tokenizer(prompt.format(instruction) + r["output"] + tokenizer.eos_token, padding="max_length", truncation=True, max_length=seq_len)
        labels = [t if m else -100 for t, m in zip(encoded["input_ids"], encoded["attention_mask"])]
        rows.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels})

    counted = {"tokens": 0}

    def collate(batch):
        counted["tokens"] += sum(sum(b["attention_mask"]) for b in batch)
        return {k: torch.tensor([b[k] for b in batch]) for k in ("input_ids", "attention_mask", "labels")}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == WARMUP_STEPS:
                self.t0, self.tokens0 = time.perf_counter(), counted["tokens"]
            self.t1, self.tokens1 = time.perf_counter(), counted["tokens"]

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype)
    model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=micro_batch, gradient_accumulation_steps=1,
        max_steps=steps, learning_rate=2e-4, bf16=dtype_name == "bf16", use_cpu=True, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False,
    )  # fmt: skip
    clock = Clock()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[clock]).train()
    seconds = clock.t1 - clock.t0
    return {"tokens": clock.tokens1 - clock.tokens0, "seconds": seconds, "tokens_per_s": (clock.tokens1 - clock.tokens0) / seconds}


def run_gpudoctor(model_dir: str, data: str, seq_len: int, micro_batch: int, steps: int, work: Path, env: dict, dtype: str | None = None) -> dict:
    import shutil

    output = work / "gpudoctor-run"
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "gpudoctor", "train", "--model", model_dir, "--data", data, "--output", str(output),
        "--skip-check", "--gpu", "cpu", "--truncate", "--seq-len", str(seq_len), "--micro-batch", str(micro_batch),
        "--grad-accum", "1", "--lora-r", "16", "--max-steps", str(steps), "--save-steps", str(steps),
    ]  # fmt: skip
    if dtype:
        command += ["--compute-dtype", dtype]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    report = json.loads((output / "report.json").read_text())
    return {"tokens": report["tokens"], "seconds": report["tokens"] / report["tokens_per_s"], "tokens_per_s": report["tokens_per_s"], "settings": report["settings"]}


def compare(model_dir: str, data: str, seq_len: int, args: argparse.Namespace, work: Path) -> None:
    print(f"\ndata {Path(data).name}, seq_len {seq_len}, micro batch {args.micro_batch}, {args.steps} steps ({WARMUP_STEPS} untimed), best of {args.rounds}")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        runs = {}
        for dtype in ("fp32", "bf16"):
            command = [sys.executable, __file__, "--baseline", dtype, "--model-dir", model_dir, "--data", data, "--seq-len", str(seq_len),
                       "--micro-batch", str(args.micro_batch), "--steps", str(args.steps)]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            runs[f"baseline {dtype}"] = json.loads(out.strip().splitlines()[-1])
        for dtype in ("fp32", "bf16"):
            runs[f"gpudoctor {dtype}"] = run_gpudoctor(model_dir, data, seq_len, args.micro_batch, args.steps, work / f"{Path(data).stem}-{seq_len}", env, dtype)
        for name, result in runs.items():
            if name not in best or result["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = result
    for name, result in best.items():
        print(f"{name:>15}: {result['tokens_per_s']:8.0f} real tokens/s  ({result['tokens']} tokens in {result['seconds']:.1f} s)")
    rate = {name: result["tokens_per_s"] for name, result in best.items()}
    picked = planner_cpu_dtype()
    print(f"gpudoctor fp32 / baseline fp32 (same compute dtype): {rate['gpudoctor fp32'] / rate['baseline fp32']:.2f}×  (target ≥ 1.5×)")
    print(f"gpudoctor bf16 / baseline bf16 (same compute dtype): {rate['gpudoctor bf16'] / rate['baseline bf16']:.2f}×  (target ≥ 1.5×)")
    print(f"gpudoctor as planned ({picked}) / baseline bf16 (its usual settings): {rate['gpudoctor ' + picked] / rate['baseline bf16']:.2f}×  (target ≥ 5×)")
    settings = best[f"gpudoctor {picked}"]["settings"]
    print(f"gpudoctor settings: {settings['compute_dtype']}, packing {settings['packing']}, grad ckpt {settings['grad_ckpt']}, optimizer {settings['optimizer']}")


def planner_cpu_dtype() -> str:
    """The compute dtype `gpudoctor plan --gpu cpu` picks on this CPU (bf16 only with native bf16)."""
    from gpudoctor.plan.hardware import cpu_hardware

    return "bf16" if cpu_hardware().bf16 else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per run (1: steadiest on a shared machine)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--data", help="one dataset instead of the two default workloads")
    parser.add_argument("--baseline", choices=["fp32", "bf16"], help=argparse.SUPPRESS)  # internal: one baseline run
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.baseline:
        from gpudoctor.train.quiet import quiet_libraries

        quiet_libraries()
        print(json.dumps(baseline(args.model_dir, args.data, args.seq_len, args.micro_batch, args.steps, args.baseline)))
        return

    from gpudoctor.train.demo import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="gpudoctor-bench-"))
    model_dir = str(build_demo_model(work / "model"))
    print(f"model: the demo's (Mistral, hidden 256, 4 layers, GQA 8/2, NF4 base, LoRA r16 all-linear); {args.threads} threads per run, load average {os.getloadavg()[0]:.1f}")
    workloads = [(args.data, args.seq_len)] if args.data else [(str(SUPPORT), 256), (str(ALPACA), 512)]
    for data, seq_len in workloads:
        compare(model_dir, data, seq_len, args, work)


if __name__ == "__main__":
    main()
