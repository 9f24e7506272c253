"""The planner: fits the budget with headroom, fills it, keeps the effective batch, honours fixed settings."""

from __future__ import annotations

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.plan.hardware import cpu_hardware, hardware_from_facts, hardware_from_gpu
from gpudoctor.plan.planner import make_plan
from gpudoctor.data.stats import DataStats
from gpudoctor.plan.types import Hardware
from gpudoctor.types import GIB
from gpudoctor.probe.facts import GpuFacts, SystemFacts
from gpudoctor.profiles import load_gpu, load_model

MISTRAL = load_model("mistral-7b")
RTX4090 = load_gpu("rtx-4090")


def share(plan) -> float:
    """What the device shows at the plan's peak (reserved + context), as a share of the budget."""
    from gpudoctor.plan.memory import device_used_bytes

    return device_used_bytes(plan.memory) / plan.memory.budget_bytes


@pytest.mark.parametrize("vram", [16, 20, 24, 48])
def test_mistral_fills_each_budget_within_bounds(vram):
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090, vram_gib=vram))
    assert plan.fits
    assert 0.75 <= share(plan) <= 0.92
    s = plan.settings
    assert s.micro_batch * s.grad_accum == 16
    if vram >= 24:
        assert s.seq_len >= 2048


def test_fixed_settings_are_kept_and_the_rest_filled_in():
    fixed = {"seq_len": 1024, "lora_r": 64, "optimizer": "adamw", "lora_targets": ["q_proj", "v_proj"]}
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090), fixed)
    s = plan.settings
    assert (s.seq_len, s.lora_r, s.lora_alpha, s.optimizer, s.lora_targets) == (1024, 64, 128, "adamw_torch", ["q_proj", "v_proj"])
    assert not s.grad_ckpt  # 1024 tokens fit without recomputation on 24 GiB


def test_prefers_no_recompute_then_the_larger_micro_batch_at_a_fixed_length():
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090), {"seq_len": 512})
    assert not plan.settings.grad_ckpt and plan.settings.micro_batch >= 2


def test_effective_batch_is_kept_across_gpus():
    plan = make_plan(load_model("llama-2-70b"), hardware_from_gpu(RTX4090, gpus=4), {"gpus": 4}, effective_batch=32)
    s = plan.settings
    assert plan.fits and s.strategy == "fsdp"  # a full 4-bit 70B copy per 24 GiB card does not fit
    assert s.micro_batch * s.grad_accum * s.gpus == 32


def test_nodes_count_in_the_world_size_like_gpus():
    """2 GPUs on each of 2 nodes shard and split the batch like 4 GPUs on one (the planner plans per GPU)."""
    model = load_model("llama-2-70b")
    one_node = make_plan(model, hardware_from_gpu(RTX4090, gpus=4), {"gpus": 4, "strategy": "fsdp"}, effective_batch=32)
    two_nodes = make_plan(model, hardware_from_gpu(RTX4090, gpus=2), {"gpus": 2, "nodes": 2, "strategy": "fsdp"}, effective_batch=32)
    s = two_nodes.settings
    assert (s.gpus, s.nodes, s.world_size) == (2, 2, 4)
    assert two_nodes.memory.breakdown_bytes["base_weights"] == one_node.memory.breakdown_bytes["base_weights"]
    assert s.micro_batch * s.grad_accum * s.world_size == 32
    assert any("2 on each of 2 nodes" in note for note in two_nodes.notes)


def test_fsdp_plans_never_use_paged_adamw_8bit():
    """PEFT's FSDP guide: with FSDP+QLoRA, paged_adamw_8bit fails when a checkpoint is saved."""
    model = load_model("llama-2-70b")
    plan = make_plan(model, hardware_from_gpu(RTX4090, gpus=4), {"gpus": 4})
    assert plan.settings.strategy == "fsdp" and plan.settings.optimizer == "adamw_torch"
    assert any("paged_adamw_8bit fails to save a checkpoint under FSDP-QLoRA" in note for note in plan.notes)
    ddp = make_plan(MISTRAL, hardware_from_gpu(RTX4090, gpus=2), {"gpus": 2})
    assert ddp.settings.strategy == "ddp" and ddp.settings.optimizer == "paged_adamw_8bit"
    with pytest.raises(BadInput, match="--optimizer paged_adamw_8bit with --strategy fsdp"):
        make_plan(model, hardware_from_gpu(RTX4090, gpus=4), {"gpus": 4, "strategy": "fsdp", "optimizer": "paged_adamw_8bit"})


def test_cpu_plan_uses_fp32_adamw_torch_and_sdpa():
    hardware = Hardware(device="cpu", name="CPU", budget_bytes=22 * GIB, peak_tflops=0.1, source="cpu")
    plan = make_plan(load_model("phi-3-mini"), hardware)
    s = plan.settings
    assert (s.compute_dtype, s.optimizer, s.attn, s.quant, s.seq_len) == ("fp32", "adamw_torch", "sdpa", "nf4", 512)
    assert plan.estimate is not None and plan.estimate.tokens_per_s > 0


def test_card_without_bf16_gets_fp16():
    hardware = Hardware(device="cuda", name="Tesla T4", budget_bytes=15 * GIB, bf16=False, peak_tflops=65.0)
    assert make_plan(MISTRAL, hardware).settings.compute_dtype == "fp16"


def test_softcapped_model_avoids_sdpa():
    assert make_plan(load_model("gemma-2-9b"), hardware_from_gpu(RTX4090)).settings.attn == "flash"
    assert make_plan(load_model("gemma-2-9b"), hardware_from_gpu(load_gpu("radeon-pro-w7900"))).settings.attn == "eager"


@pytest.mark.parametrize(
    ("hardware", "fixed", "needle"),
    [
        (None, {"optimizer": "lion"}, "--optimizer"),
        (None, {"attn": "xformers"}, "--attn"),
        (None, {"method": "full"}, "--method"),
        (None, {"strategy": "zero3"}, "--strategy"),
        (None, {"seq_len": 65536}, "--seq-len 65536"),
        ("rocm", {"attn": "flash"}, "FlashAttention-2 does not train"),
        ("cpu", {"optimizer": "paged_adamw_8bit"}, "need a GPU"),
        (None, {"warp_speed": 9}, "unknown setting 'warp_speed'"),
    ],
)
def test_bad_fixed_settings(hardware, fixed, needle):
    target = {
        None: hardware_from_gpu(RTX4090),
        "rocm": hardware_from_gpu(load_gpu("rx-7900-xtx")),
        "cpu": Hardware(device="cpu", name="CPU", budget_bytes=8 * GIB),
    }[hardware]
    with pytest.raises(BadInput, match=needle):
        make_plan(MISTRAL, target, fixed)


def test_what_does_not_fit_says_what_would():
    plan = make_plan(load_model("llama-3.1-70b"), hardware_from_gpu(RTX4090))
    assert not plan.fits
    joined = " | ".join(plan.suggestions)
    assert "--gpus" in joined and "--gpu " in joined


def test_a_fixed_length_too_long_suggests_a_shorter_one():
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090, vram_gib=12), {"seq_len": 16384, "micro_batch": 1})
    assert not plan.fits
    assert any(line.startswith("--seq-len ") for line in plan.suggestions)


def test_data_sets_the_length_that_covers_99_percent():
    lengths = list(range(1, 1001))  # 1..1000 tokens
    data = DataStats(path="d.json", records=1000, token_lengths=lengths, tokenizer="test")
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090), data=data, tokens_total=None)
    assert plan.coverage.covering_seq_len == 990
    assert plan.settings.seq_len == 1024  # rounded up to a multiple of 64
    assert plan.coverage.cut_records == 0
    assert plan.estimate.tokens_basis == "data"
    assert plan.estimate.tokens_total == sum(lengths)


def test_data_too_long_for_the_card_is_cut_and_counted():
    data = DataStats(path="d.json", records=4, token_lengths=[100, 200, 30000, 30000], tokenizer="test")
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090, vram_gib=16), data=data)
    assert plan.fits and plan.settings.seq_len < 30000
    assert plan.coverage.cut_records == 2
    assert any("does not fit; longer records are cut" in note for note in plan.notes)


def test_hardware_from_probed_facts():
    facts = SystemFacts(gpus=[GpuFacts(index=0, vendor="nvidia", name="NVIDIA GeForce RTX 4090", source="nvml", total_bytes=24 * GIB, free_bytes=23 * GIB)])
    hardware = hardware_from_facts(facts)
    assert (hardware.budget_bytes, hardware.peak_tflops, hardware.source, hardware.flash_attn) == (23 * GIB, 165.2, "probe", True)


def test_hardware_from_an_unknown_probed_card_uses_compute_capability():
    facts = SystemFacts(gpus=[GpuFacts(index=0, vendor="nvidia", name="NVIDIA Tesla T4", source="nvml", total_bytes=15 * GIB, compute_capability="7.5")])
    hardware = hardware_from_facts(facts)
    assert (hardware.bf16, hardware.flash_attn, hardware.peak_tflops) == (False, False, None)
    assert make_plan(MISTRAL, hardware).estimate is None


def test_no_gpu_means_the_cpu(monkeypatch):
    monkeypatch.setattr("gpudoctor.probe.cpu.native_bf16_flag", lambda root=None: None)
    hardware = hardware_from_facts(SystemFacts())
    assert (hardware.device, hardware.source, hardware.bf16) == ("cpu", "cpu", False)
    assert hardware.budget_bytes <= cpu_hardware().budget_bytes + GIB


def test_at_a_data_length_a_fuller_micro_batch_can_beat_skipping_recompute():
    """256-token records on 12 GiB: without checkpointing only a small micro-batch fits; the time
    model says a fuller micro-batch with recomputation runs faster, so the planner takes that."""
    data = DataStats(path="d.json", records=100, token_lengths=[200] * 100, tokenizer="test")
    model, hardware = load_model("llama-3.1-8b"), hardware_from_gpu(load_gpu("rx-7900-xtx"), vram_gib=12)
    without = make_plan(model, hardware, {"grad_ckpt": False, "lora_dropout": 0.05}, data=data)
    plan = make_plan(model, hardware, {"lora_dropout": 0.05}, data=data)
    assert without.fits and plan.settings.seq_len == 256
    assert plan.settings.grad_ckpt and plan.settings.micro_batch > without.settings.micro_batch
    assert plan.estimate.tokens_per_s > without.estimate.tokens_per_s


def test_a_fixed_length_with_data_still_counts_what_is_cut():
    data = DataStats(path="d.json", records=4, token_lengths=[100, 300, 700, 900], tokenizer="test")
    plan = make_plan(MISTRAL, hardware_from_gpu(RTX4090), {"seq_len": 512}, data=data)
    assert plan.settings.seq_len == 512 and plan.coverage.cut_records == 2


def test_says_when_16bit_lora_would_also_fit():
    fixed = {"seq_len": 1024, "micro_batch": 1, "lora_dropout": 0.05}
    roomy = make_plan(MISTRAL, hardware_from_gpu(load_gpu("a100-80gb")), fixed)
    tight = make_plan(MISTRAL, hardware_from_gpu(load_gpu("rtx-4080")), fixed)
    assert any(note.startswith("--method lora") for note in roomy.notes)
    assert not any(note.startswith("--method lora") for note in tight.notes)


def test_hardware_for_reads_gpu_vram_and_gpus_like_the_cli():
    from gpudoctor.errors import BadInput as Bad
    from gpudoctor.plan.hardware import hardware_for

    assert hardware_for("rtx-4090", None, 2).gpus == 2
    assert hardware_for("rtx-4090", 20.0).budget_bytes == 20 * GIB
    cpu = hardware_for("cpu", 6.0)
    assert (cpu.device, cpu.budget_bytes, cpu.source) == ("cpu", 6 * GIB, "override")
    with pytest.raises(Bad, match="--vram-gib"):
        hardware_for("rtx-4090", -1.0)
