"""The planner: search the settings the user left open for the best run that fits the memory budget.

Rules, in order:
1. Compute dtype: bf16 where the hardware runs it (GPUs with bf16, CPUs with AVX512_BF16/AMX), fp16 on
   GPUs without bf16, fp32 on other CPUs.
2. A plan fits when what the device shows at its peak (torch's reserved pool plus the CUDA context,
   memory.device_used_bytes) stays within HEADROOM_FRACTION of the budget. The memory model counts
   the bytes of the recipe that trains (settings.recipe) with the library versions installed here
   where a version changes them (read from package metadata, never imported).
3. seq_len: as fixed; with data, the length that keeps COVERAGE of the records whole; with
   neither, free between 512 and min(max positions, SEQ_CAP).
4. Keep the effective batch (sequences per optimizer step) the user asked for:
   micro_batch x grad_accum x gpus.
5. With a fixed or data-given seq_len: the fastest run by the time model (recomputation costs a
   third more compute, fuller micro-batches run closer to peak), then no recomputation, then the
   larger micro batch. With a free seq_len: no recomputation if it still reaches 2048 tokens, then
   the most tokens per micro-batch, then the longer sequence.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from gpudoctor.data.stats import DataStats
from gpudoctor.errors import BadInput
from gpudoctor.plan import memory
from gpudoctor.plan.timing import estimate_time, flops_per_token, utilisation
from gpudoctor.plan.types import DataCoverage, Hardware, MemoryEstimate, Plan
from gpudoctor.settings import Settings, check_values, settings_from
from gpudoctor.types import GIB, ModelSpec

HEADROOM_FRACTION = 0.90
COVERAGE = 0.99
SEQ_STEP = 256  # a free seq_len moves in these steps
SEQ_MIN = 512
SEQ_CAP = 8192  # with no data, longer sequences are rarely what a fine-tune needs
NO_CKPT_MIN_SEQ = 2048  # with a free seq_len, drop checkpointing only if this length still fits
DATA_SEQ_ROUND = 64
EIGHT_BIT_OR_PAGED = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")

NOT_COUNTED = [
    "host RAM: the CPU-side copy while loading the model, the data loader, saving checkpoints",
    "evaluation batches (keep the eval batch size at or below the micro batch)",
    "spikes from variable-length batches beyond the fragmentation allowance "
    "(set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to keep them small)",
    "fused kernels (Liger, Unsloth, torch.compile), which need less than this",
]


def make_plan(
    model: ModelSpec,
    hardware: Hardware,
    fixed: dict[str, Any] | None = None,
    data: DataStats | None = None,
    effective_batch: int = 16,
    tokens_total: int | None = None,
    correct: Callable[[Settings, MemoryEstimate], MemoryEstimate] | None = None,
    versions: memory.Versions | None = None,
) -> Plan:
    """The best settings for `model` on `hardware`; `fixed` maps Settings fields to values the user set.
    `correct` (gpudoctor.plan.corrections) turns each candidate's estimate into what was measured on this card.
    `versions`: the libraries the run will use (default: the installed ones where a version changes bytes,
    today's otherwise)."""
    fixed = _checked_fixed(fixed or {}, hardware)
    if effective_batch < 1:
        raise BadInput(f"--effective-batch: must be at least 1 (got {effective_batch})")
    notes: list[str] = []
    base = _base_settings(model, hardware, fixed, notes)
    if versions is None:
        ckpt_choices = (fixed["grad_ckpt"],) if "grad_ckpt" in fixed else (False, True)
        names = memory.versions_that_matter(base, ckpt_choices)
        versions = memory.installed_versions(names) if names else memory.TODAY
    coverage, seq_choices, seq_mode = _seq_choices(model, fixed, data, hardware)
    usable = int(hardware.budget_bytes * HEADROOM_FRACTION)
    best = _search(model, hardware, base, fixed, seq_choices, seq_mode == "free", effective_batch, usable, correct, versions)
    if best is None:
        settings = _frugal(base, fixed, seq_choices[-1] if seq_mode == "free" else seq_choices[0], effective_batch)
        plan = Plan(model, hardware, settings, _estimate(model, settings, hardware, correct, versions), fits=False, notes=notes, effective_batch=effective_batch)
        plan.suggestions = _suggestions(model, hardware, settings, fixed, usable, versions)
    else:
        settings, estimate = best
        plan = Plan(model, hardware, settings, estimate, fits=True, notes=notes, effective_batch=effective_batch)
        notes.extend(_choice_notes(settings, fixed, seq_mode, seq_choices, memory.recipe_for(settings, versions)))
        if settings.method == "qlora" and "method" not in fixed and _fits(model, dataclasses.replace(settings, method="lora", quant=None), hardware, versions):
            notes.append("--method lora (16-bit base) also fits these settings and runs faster: no 4-bit dequantisation")
    _finish(plan, coverage, data, tokens_total)
    return plan


def _estimate(model: ModelSpec, settings: Settings, hardware: Hardware, correct=None, versions: memory.Versions | None = None) -> MemoryEstimate:
    found = memory.estimate(model, settings, hardware, versions)
    return correct(settings, found) if correct is not None else found


def _search(model, hardware, base, fixed, seq_choices, seq_free, effective_batch, usable, correct=None, versions=None) -> tuple[Settings, MemoryEstimate] | None:
    """The preferred candidate that fits in `usable` bytes, trying each strategy in turn."""
    best: tuple[tuple, Settings, MemoryEstimate] | None = None
    for strategy in _strategies(base, fixed):
        for settings in _candidates(base, fixed, seq_choices, effective_batch, strategy):
            estimate = _estimate(model, settings, hardware, correct, versions)
            if memory.device_used_bytes(estimate) > usable:
                continue
            key = _preference(model, settings, hardware, seq_free, seq_choices)
            if best is None or key > best[0]:
                best = (key, settings, estimate)
        if best is not None:
            return best[1], best[2]
    return None


def _finish(plan: Plan, coverage: DataCoverage | None, data: DataStats | None, tokens_total: int | None) -> None:
    """Coverage of the data, the time estimate, what is not counted and the budget's notes."""
    hardware, model = plan.hardware, plan.model
    if coverage is not None and data is not None:
        cut = sum(1 for length in data.token_lengths if length > plan.settings.seq_len)
        plan.coverage = dataclasses.replace(coverage, cut_records=cut)
        if tokens_total is None:
            tokens_total = sum(min(length, plan.settings.seq_len) for length in data.token_lengths)
    plan.estimate = estimate_time(model, plan.settings, hardware, tokens_total)
    plan.not_counted = list(NOT_COUNTED) + (["NCCL communication buffers"] if plan.settings.world_size > 1 else [])
    plan.notes.append(
        f"budget: {hardware.budget_bytes / GIB:.1f} GiB per GPU ({_budget_source(hardware)}); "
        f"a plan may use {HEADROOM_FRACTION:.0%} of it, the rest is headroom"
    )
    if model.licence and "gated" in model.licence:
        plan.notes.append(f"licence: {model.licence}")


def _checked_fixed(fixed: dict[str, Any], hardware: Hardware) -> dict[str, Any]:
    """The user's settings checked against their declarations, then against what this hardware runs."""
    fixed = check_values(fixed, Settings)
    if hardware.device == "cpu":
        if fixed.get("optimizer") in EIGHT_BIT_OR_PAGED:
            raise BadInput(f"--optimizer {fixed['optimizer']}: 8-bit and paged optimizers need a GPU; on the CPU use adamw_torch")
        if fixed.get("attn") == "flash":
            raise BadInput("--attn flash: FlashAttention needs a GPU; on the CPU use sdpa")
        several = fixed.get("gpus", 1) * fixed.get("nodes", 1) > 1
        if several and fixed.get("strategy", "ddp") != "ddp":
            raise BadInput(f"--strategy {fixed['strategy']}: several CPU processes train with ddp (gloo); drop --strategy or name a card with --gpu")
        if several:
            fixed = {**fixed, "strategy": "ddp"}  # CPU processes over gloo: DDP, the GPUs' code path
    elif fixed.get("strategy") == "fsdp" and fixed.get("optimizer") in FSDP_BROKEN_OPTIMIZERS:
        raise BadInput(f"--optimizer {fixed['optimizer']} with --strategy fsdp: it fails when a checkpoint is saved (PEFT's FSDP-QLoRA caveat); use adamw_torch")
    elif fixed.get("attn") == "flash" and not hardware.flash_attn:
        raise BadInput(f"--attn flash: FlashAttention-2 does not train on {hardware.name}; use sdpa")
    if fixed.get("compute_dtype") == "bf16" and not hardware.bf16 and hardware.device != "cpu":
        raise BadInput(f"--compute-dtype bf16: {hardware.name} has no bf16; use fp16")
    return fixed


def _base_settings(model: ModelSpec, hardware: Hardware, fixed: dict[str, Any], notes: list[str]) -> Settings:
    """The hardware's defaults (dtype, optimizer, attention) with the user's settings on top."""
    chosen: dict[str, Any] = {"compute_dtype": _default_dtype(hardware, notes), "attn": _default_attention(model, hardware, notes)}
    if hardware.device == "cpu":
        chosen["optimizer"] = "adamw_torch"
        notes.append("optimizer adamw_torch: 8-bit and paged optimizers need a GPU")
    if "lora_dropout" not in fixed:
        notes.append("LoRA dropout 0: no dropped copy of each LoRA input is kept (less memory and time); --lora-dropout 0.05 regularises a small dataset")
    if "packing" not in fixed:
        notes.append("packing on: short records share a row, position_ids restart per record so attention never crosses them")
    settings = settings_from(fixed, settings_from(chosen))
    memory.targeted(model, settings.lora_targets)  # unknown target names fail here, naming the flag
    return settings


def _default_dtype(hardware: Hardware, notes: list[str]) -> str:
    if hardware.device == "cpu":
        if hardware.bf16:
            notes.append(f"compute dtype bf16: {hardware.name} has native bf16 matmuls, faster than fp32 there")
            return "bf16"
        notes.append("compute dtype fp32: this CPU has no bf16 instructions, so bf16 would run an order of magnitude slower")
        return "fp32"
    if hardware.bf16:
        notes.append(f"compute dtype bf16: {hardware.name} runs bf16 at full tensor-core rate")
        return "bf16"
    notes.append(f"compute dtype fp16: {hardware.name} has no bf16 (fp16 with loss scaling)")
    return "fp16"


def _default_attention(model: ModelSpec, hardware: Hardware, notes: list[str]) -> str:
    if model.attn_logit_softcapping:
        if hardware.flash_attn:
            notes.append("attention flash: the model soft-caps attention logits, which SDPA kernels cannot")
            return "flash"
        notes.append("attention eager: the model soft-caps attention logits, which SDPA cannot (FlashAttention is not available here)")
        return "eager"
    return "sdpa"


def _seq_choices(model: ModelSpec, fixed: dict[str, Any], data: DataStats | None, hardware: Hardware) -> tuple[DataCoverage | None, list[int], str]:
    """How the data's lengths spread, the seq_len candidates (longest first), and where they come
    from: "fixed", "data", "free" (traded for batch to fill the card) or "cpu" (kept at SEQ_MIN:
    on the CPU time, not memory, runs short)."""
    limit = model.max_position_embeddings
    coverage = None
    if data is not None and data.token_lengths:
        lengths = sorted(data.token_lengths)
        covering = lengths[min(len(lengths) - 1, math.ceil(COVERAGE * len(lengths)) - 1)]
        coverage = DataCoverage(len(lengths), COVERAGE, covering, 0, lengths[-1], data.tokenizer)
    if "seq_len" in fixed:
        if fixed["seq_len"] > limit:
            raise BadInput(f"--seq-len {fixed['seq_len']}: {model.name} was trained on at most {limit} positions")
        return coverage, [fixed["seq_len"]], "fixed"
    if coverage is not None:
        target = min(limit, max(DATA_SEQ_ROUND, math.ceil(coverage.covering_seq_len / DATA_SEQ_ROUND) * DATA_SEQ_ROUND))
        shorter = [s for s in range(target - SEQ_STEP, 0, -SEQ_STEP) if s >= SEQ_STEP]
        return coverage, [target] + shorter, "data"
    cap = min(limit, SEQ_CAP)
    if hardware.device == "cpu":
        return None, [min(cap, SEQ_MIN), SEQ_STEP], "cpu"
    choices = list(range(cap - cap % SEQ_STEP, SEQ_MIN - 1, -SEQ_STEP)) or [cap]
    return None, choices, "free"


def _strategies(base: Settings, fixed: dict[str, Any]) -> list[str]:
    if base.world_size == 1:
        return ["single"]
    if "strategy" in fixed:
        return [fixed["strategy"]]
    return ["ddp", "fsdp"]


def _batch_shapes(fixed: dict[str, Any], effective_batch: int, gpus: int) -> list[tuple[int, int]]:
    """(micro_batch, grad_accum) pairs that keep micro x accum x gpus = the effective batch."""
    per_gpu = max(1, effective_batch // gpus)
    if "micro_batch" in fixed and "grad_accum" in fixed:
        return [(fixed["micro_batch"], fixed["grad_accum"])]
    if "micro_batch" in fixed:
        return [(fixed["micro_batch"], max(1, math.ceil(per_gpu / fixed["micro_batch"])))]
    if "grad_accum" in fixed:
        return [(max(1, per_gpu // fixed["grad_accum"]), fixed["grad_accum"])]
    return [(mb, per_gpu // mb) for mb in range(1, per_gpu + 1) if per_gpu % mb == 0]


# PEFT's FSDP guide, "Caveats" 4: "When using FSDP+QLoRA, `paged_adamw_8bit` currently results in an error when
# saving a checkpoint" (huggingface/peft docs/source/accelerate/fsdp.md)
FSDP_BROKEN_OPTIMIZERS = ("paged_adamw_8bit",)


def _for_strategy(base: Settings, strategy: str) -> Settings:
    """The base settings under `strategy`: FSDP trades an optimizer that cannot save under it for adamw_torch
    (a fixed one was refused in _checked_fixed)."""
    if strategy == "fsdp" and base.optimizer in FSDP_BROKEN_OPTIMIZERS:
        return dataclasses.replace(base, optimizer="adamw_torch")
    return base


def _candidates(base: Settings, fixed: dict[str, Any], seqs: list[int], effective_batch: int, strategy: str):
    ckpts = [fixed["grad_ckpt"]] if "grad_ckpt" in fixed else [False, True]
    base = _for_strategy(base, strategy)
    for seq in seqs:
        for micro, accum in _batch_shapes(fixed, effective_batch, base.world_size):
            for ckpt in ckpts:
                yield dataclasses.replace(base, seq_len=seq, micro_batch=micro, grad_accum=accum, grad_ckpt=ckpt, strategy=strategy)


def _preference(model: ModelSpec, settings: Settings, hardware: Hardware, seq_free: bool, seqs: list[int]) -> tuple:
    """Bigger is better. A fixed/data seq_len: the target length first, then the fastest run (the
    time model weighs recomputation against fuller micro-batches), then no recomputation, then the
    larger micro batch. A free seq_len: no recomputation when it still reaches NO_CKPT_MIN_SEQ, then
    the most tokens per micro-batch, then the longer sequence."""
    tokens = settings.seq_len * settings.micro_batch
    if seq_free:
        no_ckpt_useful = not settings.grad_ckpt and settings.seq_len >= min(NO_CKPT_MIN_SEQ, seqs[0])
        return (no_ckpt_useful, tokens, settings.seq_len)
    speed = utilisation(settings, hardware) / flops_per_token(model, settings)
    return (settings.seq_len, float(f"{speed:.3g}"), not settings.grad_ckpt, settings.micro_batch)


def _frugal(base: Settings, fixed: dict[str, Any], seq: int, effective_batch: int) -> Settings:
    """The least memory the user's fixed settings allow, shown when nothing fits."""
    micro, accum = min(_batch_shapes(fixed, effective_batch, base.world_size))
    strategy = fixed.get("strategy", "fsdp" if base.world_size > 1 else "single")
    return dataclasses.replace(
        _for_strategy(base, strategy), seq_len=seq, micro_batch=micro, grad_accum=accum, grad_ckpt=fixed.get("grad_ckpt", True), strategy=strategy
    )


def _fits(model: ModelSpec, settings: Settings, hardware: Hardware, versions: memory.Versions | None = None) -> bool:
    used = memory.device_used_bytes(memory.estimate(model, settings, hardware, versions))
    return used <= hardware.budget_bytes * HEADROOM_FRACTION


def _suggestions(model: ModelSpec, hardware: Hardware, settings: Settings, fixed: dict[str, Any], usable: int, versions: memory.Versions | None = None) -> list[str]:
    from gpudoctor.plan.hardware import hardware_from_gpu  # noqa: PLC0415 - only when nothing fits
    from gpudoctor.profiles import list_gpus, load_gpu  # noqa: PLC0415

    found = memory.device_used_bytes(memory.estimate(model, settings, hardware, versions))
    out = [
        f"at seq_len {settings.seq_len} even the leanest settings (micro batch 1, checkpointing) need {found / GIB:.1f} GiB; "
        f"{usable / GIB:.1f} GiB of the {hardware.budget_bytes / GIB:.1f} GiB budget may be used"
    ]
    lean = dataclasses.replace(settings, micro_batch=1, grad_ckpt=True)
    for seq in range(settings.seq_len - SEQ_STEP, SEQ_STEP - 1, -SEQ_STEP):
        if _fits(model, dataclasses.replace(lean, seq_len=seq), hardware, versions):
            out.append(f"--seq-len {seq} --micro-batch 1 --grad-ckpt fits")
            break
    if settings.method == "lora":
        qlora = dataclasses.replace(lean, method="qlora", quant="nf4")
        if _fits(model, qlora, hardware, versions):
            out.append("--method qlora (4-bit base weights) fits")
    if hardware.device != "cpu":
        for gpus in (2, 4, 8):
            if _fits(model, _for_strategy(dataclasses.replace(lean, gpus=gpus, strategy="fsdp"), "fsdp"), hardware, versions):
                out.append(f"--gpus {gpus} --strategy fsdp (weights sharded across {gpus} cards like this one) fits")
                break
    cards = sorted((load_gpu(name) for name in list_gpus()), key=lambda spec: (spec.vram_gib, spec.name))
    for spec in cards:
        if spec.vram_gib * GIB <= hardware.budget_bytes:
            continue
        other = hardware_from_gpu(spec)
        trial = dataclasses.replace(lean, compute_dtype="bf16" if spec.bf16 else "fp16", optimizer="paged_adamw_8bit")
        if _fits(model, trial, other, versions):
            out.append(f"--gpu {spec.name} ({spec.vram_gib:g} GiB) fits")
            break
    return out


def _choice_notes(settings: Settings, fixed: dict[str, Any], seq_mode: str, seqs: list[int], recipe: memory.Recipe) -> list[str]:
    notes = []
    adapters = {2: settings.compute_dtype, 4: "fp32"}[recipe.adapter]
    if settings.method == "qlora":
        dq = "with" if settings.double_quant else "without"
        notes.append(f"method qlora: base weights in 4-bit NF4 {dq} double quantization, LoRA adapters trained in {adapters}")
    else:
        notes.append(f"method lora: base weights in {settings.compute_dtype}, LoRA adapters trained in {adapters}")
    notes.append(_recipe_note(settings, recipe))
    if seq_mode == "fixed":
        notes.append(f"seq_len {settings.seq_len}: as given")
    elif seq_mode == "cpu":
        notes.append(f"seq_len {settings.seq_len}: on the CPU time, not memory, runs short; pass --data or --seq-len for longer records")
    elif seq_mode == "free":
        notes.append(f"seq_len {settings.seq_len}: no data given, so the longest that fits with the batch (at most {seqs[0]})")
    elif settings.seq_len != seqs[0]:
        notes.append(f"seq_len {settings.seq_len}: the data needs {seqs[0]} but that does not fit; longer records are cut")
    else:
        notes.append(f"seq_len {settings.seq_len}: keeps {COVERAGE:.0%} of the records whole")
    if "grad_ckpt" in fixed:
        notes.append(f"gradient checkpointing {'on' if settings.grad_ckpt else 'off'}: as given")
    elif settings.grad_ckpt:
        notes.append("gradient checkpointing on: recomputing costs ~1/3 more compute, but without it the activations do not fit or the micro batch must shrink so far that it runs slower")
    else:
        notes.append("gradient checkpointing off: everything fits without recomputing the forward pass")
    shape = f"{settings.micro_batch} x {settings.grad_accum}" + (f" x {settings.world_size} GPUs" if settings.world_size > 1 else "")
    if settings.nodes > 1:
        shape += f" ({settings.gpus} on each of {settings.nodes} nodes)"
    notes.append(f"micro batch {settings.micro_batch}, grad accum {settings.grad_accum}: {shape} = {settings.micro_batch * settings.grad_accum * settings.world_size} sequences per optimizer step")
    if settings.world_size > 1:
        why = "as given" if "strategy" in fixed else ("each GPU holds a full copy" if settings.strategy == "ddp" else "a full copy per GPU does not fit, so weights are sharded")
        notes.append(f"strategy {settings.strategy}: {why}")
    if "optimizer" not in fixed and settings.optimizer == "paged_adamw_8bit":
        notes.append("optimizer paged_adamw_8bit: 8-bit states, paged to host RAM under memory pressure")
    elif "optimizer" not in fixed and settings.strategy == "fsdp" and settings.optimizer == "adamw_torch":
        notes.append("optimizer adamw_torch: paged_adamw_8bit fails to save a checkpoint under FSDP-QLoRA (PEFT's FSDP guide)")
    return notes


def _recipe_note(settings: Settings, recipe: memory.Recipe) -> str:
    """What the recipe keeps in which dtype, and its loss (the memory model counts exactly that)."""
    names = {2: settings.compute_dtype, 4: "fp32"}
    kept = f"norms {names[recipe.norm]}, embeddings {names[recipe.embed]}, lm_head {names[recipe.lm_head]}"
    loss = {
        "chunked": "chunked cross-entropy (1024 tokens' logits at a time)",
        "trl-chunked": "TRL's chunked_nll (256 tokens' logits at a time)",
    }.get(recipe.loss, "transformers' cross-entropy over all logits")
    return f"recipe {recipe.name}: {kept} (residual stream and checkpoints {names[max(recipe.norm, recipe.embed)]}); {loss}"


def _budget_source(hardware: Hardware) -> str:
    return {
        "probe": "free memory on the probed GPU",
        "profile": "the card's memory from its profile",
        "override": "--vram-gib",
        "cpu": "available RAM minus 2 GiB",
    }.get(hardware.source, hardware.source)
