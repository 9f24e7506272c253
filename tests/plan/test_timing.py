"""The time estimate against a published throughput table, and its arithmetic."""

from __future__ import annotations

import pytest

from gpudoctor.plan import timing
from gpudoctor.plan.types import Hardware
from gpudoctor.settings import Settings
from gpudoctor.types import GIB, ModelSpec
from gpudoctor.profiles import load_model

# https://github.com/QwenLM/Qwen README, "Profiling of Memory and Speed", LoRA rows: one
# A100-SXM4-80G, flash attention 2, batch 1, gradient accumulation 8 (8 sequences per iteration),
# gradient checkpointing, LoRA r 64 on all projections. Seconds per iteration by sequence length.
QWEN = [
    (ModelSpec("qwen-7b", "qwen", 4096, 11008, 32, 32, 32, 151936, 8192), {256: 1.2, 512: 1.5, 1024: 2.8, 2048: 5.2, 4096: 10.1, 8192: 21.3}),
    (ModelSpec("qwen-14b", "qwen", 5120, 13696, 40, 40, 40, 152064, 8192), {256: 1.6, 512: 2.4, 1024: 4.4, 2048: 8.4, 4096: 17.0, 8192: 36.0}),
]
A100 = Hardware(device="cuda", name="A100-SXM4-80GB", budget_bytes=80 * GIB, bf16=True, flash_attn=True, peak_tflops=312.0)


def test_tokens_per_second_against_the_qwen_profiling_table():
    errors = []
    for model, rows in QWEN:
        for seq, seconds in rows.items():
            measured = 8 * seq / seconds
            settings = Settings(method="lora", quant=None, seq_len=seq, micro_batch=1, lora_r=64, attn="flash", grad_ckpt=True)
            predicted = timing.estimate_time(model, settings, A100, None).tokens_per_s
            errors.append((predicted - measured) / measured)
    assert all(abs(e) <= 0.30 for e in errors), errors
    assert sum(abs(e) for e in errors) / len(errors) <= 0.15


def test_lora_costs_four_forward_weights_and_checkpointing_two_more():
    model = load_model("mistral-7b")
    base = Settings(seq_len=1, lora_targets=["q_proj"], lora_r=1, grad_ckpt=False)
    counts = timing.param_counts(model)
    matmul = counts["linear"] + model.vocab_size * model.hidden_size
    assert timing.flops_per_token(model, base) == pytest.approx(4 * matmul, rel=0.001)
    with_ckpt = timing.flops_per_token(model, Settings(seq_len=1, lora_targets=["q_proj"], lora_r=1, grad_ckpt=True))
    assert with_ckpt - timing.flops_per_token(model, base) == pytest.approx(2 * counts["linear"], rel=0.001)


def test_hours_follow_tokens_and_gpus():
    model = load_model("mistral-7b")
    one = timing.estimate_time(model, Settings(), A100, 36_000_000)
    two = timing.estimate_time(model, Settings(gpus=2, strategy="ddp"), A100, 36_000_000)
    assert one.hours == pytest.approx(36_000_000 / one.tokens_per_s / 3600)
    assert two.tokens_per_s == pytest.approx(one.tokens_per_s * 1.9)
    assert timing.estimate_time(model, Settings(), A100, None).tokens_basis == "reference"


def test_unknown_peak_means_no_estimate():
    unknown = Hardware(device="cuda", name="?", budget_bytes=GIB, peak_tflops=None)
    assert timing.estimate_time(load_model("mistral-7b"), Settings(), unknown, 1000) is None
