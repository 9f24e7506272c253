"""The memory model's arithmetic, its cross-checks against the libraries it models, and its monotonicity."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings as hyp_settings
from hypothesis import strategies as st

from gpudoctor import settings as settings_module
from gpudoctor.errors import BadInput
from gpudoctor.plan import memory
from gpudoctor.plan.types import Hardware
from gpudoctor.settings import Settings
from gpudoctor.types import GIB, ModelSpec
from gpudoctor.profiles import load_model

GPU = Hardware(device="cuda", name="test", budget_bytes=80 * GIB, bf16=True, flash_attn=True, peak_tflops=100.0)
TINY = ModelSpec("tiny", "llama", 64, 176, 2, 4, 2, 128, 256)


def gib(settings: Settings, model: ModelSpec | None = None) -> float:
    return memory.estimate(model or load_model("mistral-7b"), settings, GPU).peak_reserved_bytes / GIB


def test_nf4_bytes_match_bitsandbytes():
    import torch
    import bitsandbytes.functional as functional
    weight = torch.randn(256, 1024, dtype=torch.bfloat16)
    for double_quant, expected in ((False, memory.NF4_BYTES), (True, memory.NF4_DQ_BYTES)):
        packed, state = functional.quantize_4bit(weight, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
        stored = packed.numel() * packed.element_size() + state.absmax.numel() * state.absmax.element_size()
        if double_quant:
            stored += state.state2.absmax.numel() * state.state2.absmax.element_size()
        assert stored / weight.numel() == pytest.approx(expected, rel=1e-3)


def test_parameter_and_lora_counts_match_transformers_and_peft():
    import transformers
    import peft
    config = transformers.LlamaConfig(
        hidden_size=TINY.hidden_size, intermediate_size=TINY.intermediate_size, num_hidden_layers=TINY.num_hidden_layers,
        num_attention_heads=TINY.num_attention_heads, num_key_value_heads=TINY.num_key_value_heads,
        vocab_size=TINY.vocab_size, tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == memory.total_params(TINY)
    for targets in (["all-linear"], ["q_proj", "v_proj"]):
        lora = peft.get_peft_model(transformers.LlamaForCausalLM(config), peft.LoraConfig(r=8, target_modules=targets[0] if targets == ["all-linear"] else targets))
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        assert trainable == memory.lora_params(TINY, Settings(lora_r=8, lora_targets=targets))


def test_breakdown_adds_up():
    result = memory.estimate(load_model("mistral-7b"), Settings(), GPU)
    parts = result.breakdown_bytes
    assert result.peak_reserved_bytes == pytest.approx(sum(parts.values()), abs=16)
    assert result.peak_allocated_bytes == pytest.approx(sum(v for k, v in parts.items() if k not in ("allocator_overhead", "cuda_context")), abs=16)


def test_qlora_weights_of_a_7b_model():
    parts = memory.estimate(load_model("mistral-7b"), Settings(), GPU).breakdown_bytes
    # 6.98e9 decoder weights x (0.5 + 1/64 + 4/16384) bytes, embeddings+lm_head 262M x 4 bytes.
    assert parts["base_weights"] / GIB == pytest.approx(3.35, abs=0.01)
    assert parts["base_16bit"] / GIB == pytest.approx(0.98, abs=0.01)


def test_double_quant_saves_about_three_eighths_of_a_gigabyte_on_7b():
    on, off = gib(Settings(double_quant=True)), gib(Settings(double_quant=False))
    assert 0.3 < off - on < 0.4


def test_logits_dominate_for_large_vocabularies():
    parts = memory.estimate(load_model("llama-3.1-8b"), Settings(seq_len=4096), GPU).breakdown_bytes
    assert parts["logits"] > parts["activations"]


def test_eager_attention_grows_with_the_square_of_seq_len():
    model = load_model("mistral-7b")
    base = Settings(grad_ckpt=False, attn="sdpa", seq_len=2048)
    gap_2k = gib(dataclasses.replace(base, attn="eager")) - gib(base)
    gap_4k = gib(dataclasses.replace(base, attn="eager", seq_len=4096)) - gib(dataclasses.replace(base, seq_len=4096))
    assert gap_4k / gap_2k == pytest.approx(4, rel=0.15)
    assert model.num_attention_heads == 32


def test_fsdp_shards_weights_and_ddp_adds_buckets():
    model = load_model("llama-2-70b")
    single = memory.estimate(model, Settings(), GPU).breakdown_bytes
    fsdp = memory.estimate(model, Settings(gpus=2, strategy="fsdp"), GPU).breakdown_bytes
    ddp = memory.estimate(model, Settings(gpus=2, strategy="ddp"), GPU).breakdown_bytes
    assert fsdp["base_weights"] == pytest.approx(single["base_weights"] / 2, rel=1e-6)
    assert fsdp["fsdp_gather"] > 0
    assert ddp["base_weights"] == single["base_weights"] and ddp["ddp_buckets"] == single["lora_grads"]


def test_cpu_counts_the_process_not_a_cuda_context():
    cpu = Hardware(device="cpu", name="cpu", budget_bytes=20 * GIB)
    parts = memory.estimate(load_model("mistral-7b"), Settings(compute_dtype="fp32", optimizer="adamw_torch"), cpu).breakdown_bytes
    assert parts["cuda_context"] == memory.CPU_PROCESS_BYTES


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"optimizer": "sgd"}, "--optimizer"),
        ({"attn": "xformers"}, "--attn"),
        ({"method": "full"}, "--method"),
        ({"seq_len": 0}, "--seq-len"),
        ({"lora_targets": ["c_attn"]}, "--lora-targets"),
    ],
)
def test_bad_settings_name_the_flag(change, needle):
    """The settings' declarations refuse what the memory model cannot count; target names are the model's."""
    with pytest.raises(BadInput, match=needle):
        checked = settings_module.check_values(change, Settings)
        memory.estimate(load_model("mistral-7b"), dataclasses.replace(Settings(), **checked), GPU)


def test_phi3_fused_projection_names():
    assert memory.linear_names(load_model("phi-3-mini")) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


@hyp_settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(128, 8192),
    batch=st.integers(1, 8),
    ckpt=st.booleans(),
    attn=st.sampled_from(settings_module.ATTENTIONS),
    method=st.sampled_from(settings_module.METHODS),
    name=st.sampled_from(["mistral-7b", "llama-3.1-8b", "gemma-2-9b", "phi-3-mini"]),
)
def test_more_tokens_never_need_less_memory_checkpointing_never_costs_memory_4bit_weights_are_smaller(seq, batch, ckpt, attn, method, name):
    model = load_model(name)
    base = Settings(seq_len=seq, micro_batch=batch, grad_ckpt=ckpt, attn=attn, method=method, quant="nf4" if method == "qlora" else None)
    here = gib(base, model)
    assert gib(dataclasses.replace(base, seq_len=seq + 256), model) >= here
    assert gib(dataclasses.replace(base, micro_batch=batch + 1), model) >= here
    assert gib(dataclasses.replace(base, grad_ckpt=True), model) <= gib(dataclasses.replace(base, grad_ckpt=False), model)
    # 4-bit weights are always smaller; whole peaks are not (QLoRA's fp32 residual stream, see memory.py).
    weights = ("base_weights", "base_16bit")
    lora = memory.estimate(model, dataclasses.replace(base, method="lora", quant=None), GPU).breakdown_bytes
    qlora = memory.estimate(model, dataclasses.replace(base, method="qlora", quant="nf4"), GPU).breakdown_bytes
    assert sum(lora[k] for k in weights) > sum(qlora[k] for k in weights)


@pytest.mark.parametrize(("attn", "dropout"), [("sdpa", 0.05), ("sdpa", 0.0), ("eager", 0.05)])
def test_saved_activations_match_a_real_llama_layer_with_lora(attn, dropout):
    """Count the bytes autograd saves in one transformers Llama decoder layer wrapped by peft LoRA,
    under bf16 autocast as the Trainer runs it, and hold the per-layer formula against them."""
    import torch
    import transformers
    import peft
    tokens = 512
    config = transformers.LlamaConfig(
        hidden_size=TINY.hidden_size * 4, intermediate_size=TINY.intermediate_size * 4, num_hidden_layers=1,
        num_attention_heads=8, num_key_value_heads=4, vocab_size=TINY.vocab_size, use_cache=False,
    )  # fmt: skip
    config._attn_implementation = attn
    spec = ModelSpec("layer", "llama", config.hidden_size, config.intermediate_size, 1, 8, 4, config.vocab_size, 1024)
    model = peft.get_peft_model(transformers.LlamaForCausalLM(config).to(torch.bfloat16), peft.LoraConfig(r=16, target_modules="all-linear", lora_dropout=dropout))
    model.train()
    layer = model.base_model.model.model.layers[0]
    hidden = torch.randn(1, tokens, config.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(tokens)[None]
    rotary = model.base_model.model.model.rotary_emb(hidden, positions)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {hidden.untyped_storage().data_ptr()}
    saved: dict[int, int] = {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in skip:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(hidden, position_embeddings=rotary, attention_mask=None, position_ids=positions)
    measured = sum(saved.values()) / tokens
    # Without a mask, SDPA keeps the grouped k/v heads as they are, like flash-attn does.
    settings = Settings(seq_len=tokens, lora_dropout=dropout, attn="flash" if attn == "sdpa" else "eager")
    assert memory.layer_activation_bytes_per_token(spec, settings, device="cpu") == pytest.approx(measured, rel=0.05)


def test_loss_peak_per_logit_matches_the_profiled_hf_loss():
    """Profile the allocations of transformers' ForCausalLMLoss forward + backward on the CPU."""
    import torch
    from transformers.loss import loss_utils
    from torch.profiler import _memory_profiler as timeline_module
    from torch.profiler import ProfilerActivity, profile

    tokens, vocab = 512, 32000
    logits = torch.randn(1, tokens, vocab, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))

    def step():
        out = logits * 1.0  # the lm_head's output: a 16-bit tensor the graph owns
        loss = loss_utils.ForCausalLMLoss(out, labels, vocab)
        del out
        loss.backward()

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    timeline = timeline_module.MemoryProfileTimeline(prof._memory_profile())
    _, sizes = timeline._coalesce_timeline(torch.device("cpu"))
    measured = max(sum(s) for s in sizes) / (tokens * vocab)
    spec = ModelSpec("v", "llama", 64, 176, 1, 4, 4, vocab, 1024)
    assert memory.logits_bytes_per_token(spec, Settings()) / vocab == pytest.approx(measured, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "grad_ckpt"), [("lora", False), ("lora", True), ("qlora", True)])
def test_a_whole_training_step_allocates_what_the_estimate_says(method, grad_ckpt):
    """Profile forward + backward + AdamW step of a small Llama with peft LoRA under bf16 autocast on
    the CPU; hold the estimate's static bytes and its peak on top of them against the allocations.
    "qlora" keeps 16-bit projections (no CPU 4-bit kernels needed) but upcasts embeddings, norms and
    lm_head to fp32 as prepare_model_for_kbit_training does, so its activations are QLoRA's."""
    import torch
    import transformers
    import peft
    from torch.profiler import _memory_profiler as timeline_module
    from torch.profiler import ProfilerActivity, profile

    spec = ModelSpec("small", "llama", 256, 704, 2, 8, 4, 32000, 2048)
    config = transformers.LlamaConfig(
        hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
        vocab_size=spec.vocab_size, tie_word_embeddings=False, use_cache=False,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.requires_grad_(False)
    if method == "qlora":
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear) or module is model.lm_head:
                for param in module.parameters(recurse=False):
                    param.data = param.data.float()
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, target_modules="all-linear", lora_dropout=0.05))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, spec.vocab_size, (2, 256))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    _, sizes = timeline_module.MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    measured_dynamic = max(sum(s) for s in sizes)
    measured_static = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
    )

    settings = Settings(method=method, seq_len=256, micro_batch=2, grad_ckpt=grad_ckpt, optimizer="adamw_torch", attn="flash", lora_dropout=0.05)
    result = memory.estimate(spec, settings, Hardware(device="cpu", name="cpu", budget_bytes=8 * GIB))
    parts = result.breakdown_bytes
    static = sum(parts[k] for k in ("base_weights", "base_16bit", "lora_weights", "optimizer"))
    if method == "lora":  # the qlora stand-in keeps 16-bit projections, so only its dynamic part compares
        assert static == pytest.approx(measured_static, rel=0.01)
    assert result.peak_allocated_bytes - static == pytest.approx(measured_dynamic, rel=0.15)
