"""How long a run takes: training FLOPs per token against the card's peak and a stated utilisation.

FLOPs per token (Kaplan et al. 2020 / Narayanan et al. 2021, "Efficient Large-Scale Language Model
Training on GPU Clusters", §5.1): a forward pass costs 2 FLOPs per weight, a backward pass 4 when
weights get gradients. LoRA freezes the base, so its backward only propagates activation gradients
(2 per weight): 4 x params in all, +2 x params when gradient checkpointing recomputes the forward.
Causal attention adds 2 x layers x seq x (heads x head_dim) per token forward, twice that backward.
"""

from __future__ import annotations

from gpudoctor.plan.memory import head_dim, lora_params, param_counts
from gpudoctor.plan.types import Hardware, TimeEstimate

# Model FLOPs utilisation at full occupancy, stated rather than measured here. The 16-bit LoRA
from gpudoctor.settings import Settings

# Model FLOPs utilisation at full occupancy, stated rather than measured here. The 16-bit LoRA
from gpudoctor.types import ModelSpec

# Model FLOPs utilisation at full occupancy, stated rather than measured here. The 16-bit LoRA
# figure is what the Qwen README's profiling table implies by this FLOP count (Qwen-7B LoRA, one
# A100, flash-attn 2, gradient checkpointing: 8 x 2048 tokens in 5.2 s = 3,150 tokens/s; held in
# tests/plan/test_timing.py); bitsandbytes QLoRA dequantises every weight before each matmul and
# runs ~20% slower; ROCm on RDNA3 reaches less of its paper peak.
UTILISATION = {"qlora": 0.40, "lora": 0.50}
ROCM_FACTOR = 0.6
CPU_UTILISATION = 0.5
# A micro-batch of this many tokens runs its matmuls at half the full-occupancy rate:
# utilisation x tokens / (tokens + OCCUPANCY_TOKENS).
OCCUPANCY_TOKENS = 256
# Data-parallel scaling per extra GPU over PCIe (no NVLink on workstation cards).
MULTI_GPU_EFFICIENCY = {"ddp": 0.9, "fsdp": 0.8, "single": 1.0}
# When no data is given, the time is quoted for this many training tokens.
REFERENCE_TOKENS = 10_000_000


def flops_per_token(model: ModelSpec, settings: Settings) -> float:
    counts = param_counts(model)
    matmul_weights = counts["linear"] + model.vocab_size * model.hidden_size  # the lm_head is a matmul too
    decoder_weights = counts["linear"]
    attention = 2 * model.num_hidden_layers * settings.seq_len * model.num_attention_heads * head_dim(model)
    forward = 2 * matmul_weights + attention
    backward = 2 * matmul_weights + 2 * attention
    recompute = 2 * decoder_weights + attention if settings.grad_ckpt else 0
    lora = 6 * lora_params(model, settings)
    return forward + backward + recompute + lora


def utilisation(settings: Settings, hardware: Hardware) -> float:
    if hardware.device == "cpu":
        return CPU_UTILISATION
    value = UTILISATION.get(settings.method, UTILISATION["lora"])
    if hardware.device == "rocm":
        value *= ROCM_FACTOR
    tokens = settings.micro_batch * settings.seq_len
    return value * tokens / (tokens + OCCUPANCY_TOKENS)


def estimate_time(model: ModelSpec, settings: Settings, hardware: Hardware, tokens_total: int | None) -> TimeEstimate | None:
    """Tokens per second for all GPUs together and hours for `tokens_total` (None: unknown TFLOP/s)."""
    if hardware.peak_tflops is None:
        return None
    util = utilisation(settings, hardware)
    per_device = hardware.peak_tflops * 1e12 * util / flops_per_token(model, settings)
    gpus = max(1, settings.world_size)
    scaling = 1 + (gpus - 1) * MULTI_GPU_EFFICIENCY.get(settings.strategy, 1.0)
    tokens_per_s = per_device * scaling
    basis = "data" if tokens_total is not None else "reference"
    total = tokens_total if tokens_total is not None else REFERENCE_TOKENS
    return TimeEstimate(tokens_per_s=tokens_per_s, hours=total / tokens_per_s / 3600, tokens_total=total, utilisation=util, tokens_basis=basis)
