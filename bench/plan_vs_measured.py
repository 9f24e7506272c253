"""Train a few real steps of the planned settings and print measured peak memory against the prediction.

Run on a machine with a CUDA GPU (random weights of the model's architecture; nothing is downloaded):

    .venv/bin/python bench/plan_vs_measured.py --model mistral-7b --budgets 16,24,48 --steps 2

(every recipe below at every budget: 9 runs of a 7B model, about 5 minutes on an H100/H200; --timeout
bounds each run.)

For each budget it plans with `make_plan`, caps this process at the budget with
torch.cuda.set_per_process_memory_fraction, builds the model as transformers + bitsandbytes would
(NF4 Linear4bit projections, or bf16 for --method lora), sets it up as the recipe does and adds LoRA,
trains `steps` optimizer steps of random tokens with the Hugging Face Trainer, and prints the three
peaks, measured and planned: torch's allocated, torch's reserved, and reserved plus the CUDA context
(what nvidia-smi shows, the figure a plan fits in its budget). Each budget runs in its own subprocess
so one OOM or one allocator history cannot colour the next.

--recipes (default all three): gpudoctor: norms, embeddings and lm_head stay in the compute dtype and
the loss is gpudoctor's chunked cross-entropy (gpudoctor/train/loss.py), through the Trainer;
peft-prepared: peft.prepare_model_for_kbit_training (everything that is not 4-bit in fp32) and
transformers' own loss through the Trainer (the Hugging Face QLoRA recipe TRL < 0.26 and Axolotl start
from), planned as memory.Recipe with fp32 norms, embeddings and lm_head; fsdp-qlora: Answer.AI's
recipe on one GPU: the model and bf16 adapters without autocast, transformers' loss, its own loop
that keeps the model output through backward (train.py), planned with recipe fsdp-qlora.

`--device cpu` runs the same code path on the CPU (fp32, no memory cap) for a tiny model, to check
the script itself (`--model tiny` or `--model small`); there the measured figure is the process's
peak resident memory, and the allocator is glibc's, not CUDA's caching allocator.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.plan.planner import make_plan  # noqa: E402
from gpudoctor.plan.types import Hardware  # noqa: E402
from gpudoctor.settings import RECIPES, Settings  # noqa: E402
from gpudoctor.types import GIB, ModelSpec  # noqa: E402
from gpudoctor.profiles import load_model  # noqa: E402

# model_type -> transformers config class name
CONFIG_CLASSES = {
    "llama": "LlamaConfig",
    "mistral": "MistralConfig",
    "qwen2": "Qwen2Config",
    "phi3": "Phi3Config",
    "gemma2": "Gemma2Config",
}
BENCH_RECIPES = ("gpudoctor", "peft-prepared", "fsdp-qlora")
HF_OPTIM = {"adamw_8bit": "adamw_bnb_8bit", "adamw_torch": "adamw_torch", "paged_adamw_8bit": "paged_adamw_8bit", "paged_adamw_32bit": "paged_adamw_32bit"}


def hf_config(spec: ModelSpec, attn: str):
    import transformers

    kind = getattr(transformers, CONFIG_CLASSES.get(spec.architecture, "LlamaConfig"))
    values = dict(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        vocab_size=spec.vocab_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        use_cache=False,
    )
    if spec.head_dim:
        values["head_dim"] = spec.head_dim
    config = kind(**values)
    config._attn_implementation = {"flash": "flash_attention_2"}.get(attn, attn)
    return config


def build_model(spec: ModelSpec, settings: Settings, device: str):
    """Random weights laid out as from_pretrained(quantization_config=BitsAndBytesConfig(...)) would."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings.compute_dtype]
    with init_empty_weights():  # parameters on the meta device, buffers (rotary inv_freq) real
        model = AutoModelForCausalLM.from_config(hf_config(spec, settings.attn), dtype=dtype)
    quantize = settings.method == "qlora"
    if quantize:
        import bitsandbytes as bnb
    layers = model.model.layers
    for layer in layers:
        for name, child in list(layer.named_modules()):
            if not isinstance(child, torch.nn.Linear):
                continue
            parent = layer.get_submodule(name.rsplit(".", 1)[0]) if "." in name else layer
            attr = name.rsplit(".", 1)[-1]
            weight = torch.randn(child.out_features, child.in_features, dtype=dtype, device=device) * 0.02
            bias = torch.zeros(child.out_features, dtype=dtype, device=device) if child.bias is not None else None
            if quantize:
                new = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=bias is not None, compute_dtype=dtype,
                    compress_statistics=settings.double_quant, quant_type=settings.quant or "nf4", device="meta",
                )  # fmt: skip
                new.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=settings.double_quant, quant_type=settings.quant or "nf4").to(device)
                if bias is not None:
                    new.bias = torch.nn.Parameter(bias, requires_grad=False)
            else:
                new = torch.nn.Linear(child.in_features, child.out_features, bias=bias is not None, device="meta", dtype=dtype)
                new.weight = torch.nn.Parameter(weight, requires_grad=False)
                if bias is not None:
                    new.bias = torch.nn.Parameter(bias, requires_grad=False)
            setattr(parent, attr, new)
            del weight
    # Everything else (embeddings, lm_head, norms) is still on meta: materialise it on the device.
    for module in model.modules():
        for key, param in list(module._parameters.items()):
            if param is not None and param.device.type == "meta":
                value = torch.ones(param.shape, dtype=dtype, device=device) if param.dim() == 1 else torch.randn(param.shape, dtype=dtype, device=device) * 0.02
                module._parameters[key] = torch.nn.Parameter(value, requires_grad=False)
        for key, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[key] = buffer.to(device)
    if spec.tie_word_embeddings:
        model.tie_weights()
    if quantize:
        model.is_loaded_in_4bit = True
    return model


def add_lora(model, settings: Settings, names: list[str], recipe: str = "gpudoctor"):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if settings.method == "qlora" and recipe == "peft-prepared":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.grad_ckpt, gradient_checkpointing_kwargs={"use_reentrant": False})
    elif settings.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets = names if settings.lora_targets == ["all-linear"] else settings.lora_targets
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if recipe == "fsdp-qlora":  # its quant_storage is bf16, so peft gives the adapters the base dtype
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings.compute_dtype]
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.data = param.data.to(dtype)
    if recipe == "gpudoctor":
        from gpudoctor.train import loss as lean_loss

        lean_loss.install(model)  # chunked cross-entropy; the leftovers were never upcast
    return model


def planned_recipe(recipe: str):
    """The memory model's Recipe for what this script builds (None: the plan's own, settings.recipe)."""
    if recipe != "peft-prepared":
        return None
    from gpudoctor.plan import memory

    versions = memory.installed_versions(("transformers",))
    return memory.Recipe("peft-prepared", memory.hf_loss(versions.transformers), norm=4, embed=4, lm_head=4)


def own_loop_steps(model, ids, settings: Settings, steps: int, device: str) -> None:
    """fsdp_qlora's train.py loop on one GPU: no autocast, the output kept until after backward."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for step in range(steps):
        batch = ids[step * settings.micro_batch : (step + 1) * settings.micro_batch].to(device)
        output = model(input_ids=batch, labels=batch)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        del output


def train_steps(model, settings: Settings, vocab: int, steps: int, device: str, recipe: str = "gpudoctor") -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    rows = settings.micro_batch * steps
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (rows, settings.seq_len), generator=generator)
    if recipe == "fsdp-qlora":
        own_loop_steps(model, ids, settings, steps, device)
        return
    dataset = [{"input_ids": row, "labels": row.clone(), "attention_mask": torch.ones_like(row)} for row in ids]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=settings.micro_batch,
            gradient_accumulation_steps=1,  # accumulation does not change the per-step peak
            max_steps=steps,
            learning_rate=1e-4,
            optim=HF_OPTIM.get(settings.optimizer, settings.optimizer),
            bf16=settings.compute_dtype == "bf16",
            fp16=settings.compute_dtype == "fp16",
            gradient_checkpointing=False,  # already set up by add_lora, as gpudoctor train does
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=device == "cpu",
            dataloader_pin_memory=False,
            remove_unused_columns=False,
        )
        Trainer(model=model, args=args, train_dataset=dataset).train()


def run_one(spec: ModelSpec, budget_gib: float, method: str, steps: int, device: str, recipe: str = "gpudoctor") -> dict:
    """Plan for `budget_gib`, cap the process there, train, and measure."""
    import torch

    from gpudoctor.plan import memory
    from gpudoctor.plan.memory import linear_names

    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        hardware = Hardware(device="cuda", name=props.name, budget_bytes=int(budget_gib * GIB), bf16=torch.cuda.is_bf16_supported(), flash_attn=False, peak_tflops=None)
    else:
        hardware = Hardware(device="cpu", name="CPU", budget_bytes=int(budget_gib * GIB), peak_tflops=None, source="cpu")
    plan = make_plan(spec, hardware, {"method": method, "recipe": recipe if recipe in RECIPES else "trl"})
    settings = plan.settings
    custom = planned_recipe(recipe)
    estimate = plan.memory if custom is None else memory.estimate(spec, settings, hardware, recipe=custom)
    result = {"budget_gib": budget_gib, "recipe": recipe, "settings": {k: getattr(settings, k) for k in ("seq_len", "micro_batch", "grad_ckpt", "optimizer", "attn", "compute_dtype")}}
    result["predicted"] = {
        "fits": plan.fits,
        "peak_allocated_gib": estimate.peak_allocated_bytes / GIB,
        "peak_reserved_gib": estimate.peak_reserved_bytes / GIB,
        "peak_reserved_plus_context_gib": memory.device_used_bytes(estimate) / GIB,
    }
    if not plan.fits:
        result["measured"] = "not run: the plan does not fit"
        return result
    if device == "cuda":
        torch.cuda.init()
        torch.zeros(1, device="cuda")  # create the context
        _, total = torch.cuda.mem_get_info()
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget_gib * GIB / total))
    try:
        model = add_lora(build_model(spec, settings, device), settings, linear_names(spec), recipe)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train_steps(model, settings, spec.vocab_size, steps, device, recipe)
    except torch.cuda.OutOfMemoryError as err:
        result["measured"] = f"OOM: {str(err).splitlines()[0]}"
        return result
    if device == "cuda":
        # What the device uses beyond torch's reserved pool: the context, cuBLAS and lazily loaded
        # kernels, measured after the steps (assumes no other process on this GPU).
        free, total = torch.cuda.mem_get_info()
        context = (total - free) - torch.cuda.memory_reserved()
        result["measured"] = {
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
            "context_gib": context / GIB,
            "peak_reserved_plus_context_gib": (torch.cuda.max_memory_reserved() + context) / GIB,
        }
    else:  # the process's peak resident set: python, torch and the run (Linux reports KiB)
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["measured"] = {"peak_allocated_gib": float("nan"), "peak_reserved_gib": float("nan"), "context_gib": 0.0, "peak_reserved_plus_context_gib": rss / GIB}
    return result


def check_spec(name: str) -> ModelSpec:
    """Small Llama-shaped models for checking the script on a CPU."""
    if name == "tiny":
        return ModelSpec("tiny-llama", "llama", 64, 176, 2, 4, 2, 256, 512)
    return ModelSpec("small-llama", "llama", 512, 1408, 8, 8, 4, 32000, 1024)


def one_run(args, recipe: str, budget: float) -> None:
    """Run one budget of one recipe in a subprocess and print its line."""
    command = [sys.executable, __file__, "--model", args.model, "--method", args.method, "--steps", str(args.steps), "--device", args.device, "--recipes", recipe, "--one", str(budget)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"{recipe:<14}{budget:>6g}  not finished in {args.timeout} s")
        return
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"{recipe:<14}{budget:>6g}  failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
        return
    row = json.loads(lines[-1])
    s, p, m = row["settings"], row["predicted"], row["measured"]
    head = f"{recipe:<14}{budget:>6g}  {s['seq_len']:>5} {s['micro_batch']:>3} {'on' if s['grad_ckpt'] else 'off':>4}"
    if not isinstance(m, dict):
        print(f"{head}  {p['peak_allocated_gib']:>7.2f}/{'':<8}  {p['peak_reserved_gib']:>8.2f}/{'':<9}  {p['peak_reserved_plus_context_gib']:>6.2f}/{'':<7}  {m}")
        return
    errors = [(p[k] - m[k]) / m[k] if m[k] == m[k] and m[k] else float("nan") for k in ("peak_allocated_gib", "peak_reserved_gib", "peak_reserved_plus_context_gib")]
    print(
        f"{head}  {p['peak_allocated_gib']:>7.2f}/{m['peak_allocated_gib']:<8.2f}  {p['peak_reserved_gib']:>8.2f}/{m['peak_reserved_gib']:<9.2f}"
        f"  {p['peak_reserved_plus_context_gib']:>6.2f}/{m['peak_reserved_plus_context_gib']:<7.2f}  " + " ".join(f"{e:>+6.1%}" for e in errors)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mistral-7b", help="profile id, model folder or config.json; 'tiny' or 'small' for CPU check models")
    parser.add_argument("--budgets", default="16,24,48", help="GiB, comma separated")
    parser.add_argument("--method", default="qlora", choices=("qlora", "lora"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--recipes", default=",".join(BENCH_RECIPES), help=f"comma separated, of {', '.join(BENCH_RECIPES)}")
    parser.add_argument("--timeout", type=int, default=120, help="seconds each run may take")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: run one budget in this process
    args = parser.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in BENCH_RECIPES]
    if unknown:
        parser.error(f"--recipes: unknown '{unknown[0]}'; use some of {', '.join(BENCH_RECIPES)}")
    spec = check_spec(args.model) if args.model in ("tiny", "small") else load_model(args.model)

    if args.one is not None:
        print(json.dumps(run_one(spec, args.one, args.method, args.steps, args.device, recipes[0])))
        return

    print(f"{spec.name}, {args.method}, {args.steps} steps on {args.device}; GiB = 1024^3; predicted/measured, then the errors of the three")
    print(f"{'recipe':<14}{'budget':>6}  {'seq':>5} {'mb':>3} {'ckpt':>4}  {'alloc':>16}  {'reserved':>18}  {'smi':>14}  {'err alloc/reserved/smi':>22}")
    for recipe in recipes:
        for budget in [float(b) for b in args.budgets.split(",")]:
            one_run(args, recipe, budget)


if __name__ == "__main__":
    main()
