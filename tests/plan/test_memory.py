"""The memory model's terms held against what torch really saves, allocates and reserves on the CPU, per
recipe, and the model's arithmetic and monotonicity.

What autograd saves in a decoder layer: saved-tensor hooks on a real transformers Llama layer with
bitsandbytes NF4 projections and peft LoRA (tests/plan/recipe_models.py). What a loss and a whole training
step allocate: torch.profiler memory events. What the CUDA caching allocator would reserve for them: the
profiled events replayed through its block policy (tests/plan/caching_allocator.py).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings as hyp_settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # recipe_models, caching_allocator

from gpudoctor import settings as settings_module  # noqa: E402
from gpudoctor.errors import BadInput  # noqa: E402
from gpudoctor.plan import memory  # noqa: E402
from gpudoctor.plan.types import Hardware  # noqa: E402
from gpudoctor.profiles import load_model  # noqa: E402
from gpudoctor.settings import Settings  # noqa: E402
from gpudoctor.types import GIB, ModelSpec  # noqa: E402

GPU = Hardware(device="cuda", name="test", budget_bytes=80 * GIB, bf16=True, flash_attn=True, peak_tflops=100.0)
TINY = ModelSpec("tiny", "llama", 64, 176, 2, 4, 2, 128, 256)
OLD = memory.Versions(bitsandbytes="0.43.1", transformers="4.44.2", peft="0.13.2", trl="0.13.0")
R = memory.Recipe


def gib(settings: Settings, model: ModelSpec | None = None, versions: memory.Versions | None = None) -> float:
    return memory.device_used_bytes(memory.estimate(model or load_model("mistral-7b"), settings, GPU, versions)) / GIB


# ---- weights and counts -------------------------------------------------------------------------


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


def test_the_three_figures_add_up():
    result = memory.estimate(load_model("mistral-7b"), Settings(), GPU)
    parts = result.breakdown_bytes
    allocated = sum(v for k, v in parts.items() if k not in ("allocator_overhead", "cuda_context"))
    assert result.peak_allocated_bytes == pytest.approx(allocated, abs=16)
    assert result.peak_reserved_bytes == pytest.approx(allocated + parts["allocator_overhead"], abs=16)
    assert memory.device_used_bytes(result) == result.peak_reserved_bytes + parts["cuda_context"]
    assert result.peak_allocated_bytes <= result.peak_reserved_bytes < memory.device_used_bytes(result)


@pytest.mark.parametrize(
    ("recipe", "versions", "leftover_gib"),
    [
        ("gpudoctor", memory.TODAY, 0.49),  # embeddings + lm_head 262M x 2 bytes, norms 16-bit
        ("axolotl", OLD, 0.49),  # prepared, then norms, embed_tokens and lm_head back to bf16
        ("trl", OLD, 0.49),  # norms fp32 (0.5M x 4), embeddings and lm_head back to bf16
        ("fsdp-qlora", OLD, 0.49),
    ],
)
def test_qlora_weights_of_a_7b_model_per_recipe(recipe, versions, leftover_gib):
    parts = memory.estimate(load_model("mistral-7b"), Settings(recipe=recipe), GPU, versions).breakdown_bytes
    # 6.98e9 decoder weights x (0.5 + 1/64 + 4/16384) bytes.
    assert parts["base_weights"] / GIB == pytest.approx(3.35, abs=0.01)
    assert parts["base_16bit"] / GIB == pytest.approx(leftover_gib, abs=0.01)


def test_prepare_model_for_kbit_training_without_bf16_keeps_every_leftover_fp32():
    """TRL before 0.26 casts embeddings and lm_head back only with bf16 (peft_module_casting_to_bf16)."""
    parts = memory.estimate(load_model("mistral-7b"), Settings(recipe="trl", compute_dtype="fp16"), GPU, OLD).breakdown_bytes
    assert parts["base_16bit"] / GIB == pytest.approx(0.98, abs=0.01)


def test_double_quant_saves_about_three_eighths_of_a_gigabyte_on_7b():
    on, off = gib(Settings(double_quant=True)), gib(Settings(double_quant=False))
    assert 0.3 < off - on < 0.4


# ---- recipes and versions -----------------------------------------------------------------------


def test_recipes_resolve_to_the_dtypes_their_code_sets():
    qlora, lora, sharded = Settings(), Settings(method="lora", quant=None), Settings(gpus=2, strategy="fsdp")
    lean = memory.recipe_for(qlora)
    assert (lean.norm, lean.embed, lean.lm_head, lean.adapter, lean.loss) == (2, 2, 2, 4, "chunked")
    old_trl = memory.recipe_for(dataclasses.replace(qlora, recipe="trl"), OLD)
    assert (old_trl.norm, old_trl.embed, old_trl.lm_head, old_trl.adapter, old_trl.loss) == (4, 2, 2, 4, "hf-fp32-logits")
    assert memory.recipe_for(dataclasses.replace(sharded, recipe="trl"), OLD).norm == 2  # sharded QLoRA skips the upcast
    assert memory.recipe_for(dataclasses.replace(sharded, recipe="trl"), OLD).adapter == 2  # autocast_adapter_dtype=False
    new_trl = memory.recipe_for(dataclasses.replace(qlora, recipe="trl"))
    assert (new_trl.norm, new_trl.adapter, new_trl.loss) == (2, 2, "trl-chunked")  # TRL >= 0.26 prepares nothing; 1.7 chunks
    axolotl = memory.recipe_for(dataclasses.replace(qlora, recipe="axolotl"), OLD)
    assert (axolotl.norm, axolotl.embed, axolotl.lm_head, axolotl.adapter) == (2, 2, 2, 4)
    fsdp = memory.recipe_for(dataclasses.replace(qlora, recipe="fsdp-qlora"))
    assert (fsdp.adapter, fsdp.autocast, fsdp.holds_outputs) == (2, False, True)
    # peft 0.6-0.11 put a 16-bit model's adapters in its dtype; 0.12 autocasts them to fp32
    assert memory.recipe_for(dataclasses.replace(lora, recipe="axolotl"), dataclasses.replace(OLD, peft="0.10.0")).adapter == 2
    assert memory.recipe_for(dataclasses.replace(lora, recipe="axolotl"), OLD).adapter == 4


@pytest.mark.parametrize(("transformers", "loss"), [("4.38.2", "hf-fp32-logits"), ("4.45.2", "hf-fp32-logits"), ("4.46.0", "hf-shift"), ("4.48.1", "hf-shift"), ("4.49.0", "hf"), ("5.24.0", "hf")])
def test_transformers_loss_by_version(transformers, loss):
    assert memory.hf_loss(transformers) == loss


def test_old_bitsandbytes_saves_the_4bit_inputs_without_checkpointing():
    """bitsandbytes < 0.43.2 kept every 4-bit matmul's input: ~2(3h + I) bytes per token per layer more."""
    model = load_model("llama-2-7b")
    base = Settings(grad_ckpt=False, seq_len=1024, lora_targets=["q_proj", "v_proj"], lora_dropout=0.05)
    new = memory.estimate(model, base, GPU, dataclasses.replace(OLD, bitsandbytes="0.43.2")).breakdown_bytes["activations"]
    old = memory.estimate(model, base, GPU, OLD).breakdown_bytes["activations"]
    h, inter, layers = model.hidden_size, model.intermediate_size, model.num_hidden_layers
    assert (old - new) / (1024 * layers) == pytest.approx(2 * (2 * h + inter), rel=0.01)  # o_proj's input is SDPA's saved output
    ckpt = dataclasses.replace(base, grad_ckpt=True)
    assert memory.estimate(model, ckpt, GPU, OLD).breakdown_bytes["activations"] == memory.estimate(model, ckpt, GPU).breakdown_bytes["activations"]


@pytest.mark.parametrize("quantized_from, per_weight", [("bfloat16", 2), ("float16", 4)])
def test_a_4bit_backward_dequantizes_the_whole_weight(quantized_from, per_weight):
    """MatMul4Bit.backward dequantizes the whole weight to quant_state.dtype and casts it to the gradient's:
    profiled on the CPU, the step's peak above what it started with is that copy, plus the small grad_A and at
    most a packed-weight-sized temporary of the CPU backend's unpacking (CUDA's kernel writes the copy directly)."""
    import bitsandbytes as bnb
    import torch
    from caching_allocator import profiled_events, replay
    from recipe_models import profiled

    out_f, in_f, rows = 1024, 256, 4
    layer = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    weight = torch.randn(out_f, in_f).to(getattr(torch, quantized_from))
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")._quantize("cpu")
    x = torch.randn(rows, in_f, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    grad = torch.randn_like(y)
    peak, _ = replay(profiled_events(profiled(lambda: y.backward(grad, retain_graph=True))))
    recipe = R("r", "hf", dequant=per_weight)
    spec = ModelSpec("one", "llama", in_f, out_f, 1, 4, 4, 32, 64)
    expected = memory.dequant_bytes(spec, Settings(method="qlora"), recipe)[0]  # the largest projection: in x out
    assert expected == per_weight * out_f * in_f
    assert expected <= peak <= expected + out_f * in_f // 2 + 2 * rows * in_f * 2 + 8192


def test_a_quantized_lm_head_is_stored_in_4_bits_and_dequantized_whole_at_the_loss():
    """LitGPT through Lightning's BitsandbytesPrecision quantizes the lm_head too: its weight moves from the
    16-bit leftovers to the NF4 weights, and the loss phase holds its fp16 dequantization and bf16 cast."""
    model = load_model("llama-3.1-8b")
    settings = Settings(method="qlora", double_quant=False, grad_ckpt=False, seq_len=512, micro_batch=2, lora_targets=["q_proj", "v_proj"])
    plain = R("litgpt", "litgpt", adapter=2, autocast=False, norm_upcast=False, dequant=4)
    quantized = dataclasses.replace(plain, head_4bit=True)
    before, after = (memory.estimate(model, settings, GPU, recipe=r).breakdown_bytes for r in (plain, quantized))
    table = model.vocab_size * model.hidden_size
    assert before["base_16bit"] - after["base_16bit"] == pytest.approx(2 * table, rel=1e-6)
    assert after["base_weights"] - before["base_weights"] == pytest.approx(memory.NF4_BYTES * table, rel=1e-6)
    # The peak is the lm_head's backward: the 16-bit logits, their gradients and the dequantized lm_head.
    tokens, logits = 1024, 1024 * model.vocab_size
    head_input = 4 * model.hidden_size * tokens  # the final norm's saved input and the lm_head's (16-bit)
    assert after["logits"] - head_input == pytest.approx(4 * logits + 4 * table, rel=1e-6)
    assert memory.litgpt_moments(model, settings, quantized)["head_backward"] == pytest.approx(4 * logits + 4 * table, rel=1e-6)
    assert memory.dequant_bytes(model, dataclasses.replace(settings, method="lora"), quantized) == (0.0, 0.0)


# ---- LitGPT through Lightning Fabric: the previous micro batch's graph, fp32 logits ------------------

LITGPT = R("litgpt-2024", "litgpt", adapter=2, autocast=False, head_4bit=True, dequant=4, keeps_previous_step=True, fp32_output=True)


@pytest.mark.parametrize(("old_bnb", "fp32"), [(True, True), (False, True), (True, False)])
def test_litgpt_keeps_the_previous_steps_logits_and_old_4bit_inputs_past_its_backward(old_bnb, fp32):
    """LitGPT's loop keeps `logits` (and so the step's graph) until the next forward returns. What a step leaves
    alive after its backward, measured with torch.profiler on a LitGPT-shaped QLoRA model (real NF4 layers,
    lm_head included): its model output (fp32 through Fabric) and, with bitsandbytes < 0.43.2's
    ctx.tensors = (A, B), every 4-bit matmul's input but layer 0's qkv one: memory.previous_step_bytes."""
    import contextlib

    import torch
    from recipe_models import LitGPTLike, bitsandbytes_ctx_tensors, fabric_output, lit_chunked_loss, live_after

    rows, seq = 2, 256
    model = LitGPTLike(h=128, inter=352, layers=2, heads=4, vocab=2048)
    ids = torch.randint(0, 2048, (rows, seq))

    def step():
        logits = fabric_output(model(ids), fp32)
        lit_chunked_loss(logits, ids).backward()
        return logits  # the loop's `logits`; its `loss` becomes a float

    with bitsandbytes_ctx_tensors() if old_bnb else contextlib.nullcontext():
        step()  # the LoRA gradients exist from here on
        alive = live_after(step)
    spec = ModelSpec("litgpt-like", "llama", 128, 352, 2, 4, 4, 2048, 4096)
    settings = Settings(method="qlora", compute_dtype="bf16", seq_len=seq, micro_batch=rows, grad_ckpt=False, lora_targets=["q_proj", "v_proj"])
    recipe = dataclasses.replace(LITGPT, saves_4bit_input=old_bnb, fp32_output=fp32)
    output = (4 if fp32 else 2) * rows * seq * 2048
    inputs = memory.retained_4bit_inputs(spec, settings, recipe) * rows * seq
    assert inputs == (2 * 2 * (2 * 128 + 128 + 352) * rows * seq if old_bnb else 0)  # 2 layers x 4 inputs - qkv0 + ln_f
    assert alive - output == pytest.approx(inputs, abs=0.01 * 2 * 1472 * rows * seq)
    assert alive == pytest.approx(memory.previous_step_bytes(spec, settings, recipe), rel=0.01)


@pytest.mark.parametrize(("fp32", "rows", "seq", "h", "vocab", "moment"), [
    (True, 2, 256, 256, 4096, "loss"),
    (True, 1, 384, 512, 2048, "head_backward"),
    (False, 1, 512, 512, 4096, "head_backward"),
])  # fmt: skip
def test_litgpt_fp32_logits_and_lm_head_moments_match_the_profile(fp32, rows, seq, h, vocab, moment):
    """A 4-bit lm_head (quantized from fp16) over 128-position chunks, Fabric's fp32 cast of the chunks, the
    shift and chunked_cross_entropy, forward and backward, profiled: the peak is memory.litgpt_moments' largest.
    With fp32 output the loss holds fp32 logits, an fp32 log-softmax and two fp32 gradients of a chunk (8 + 8
    per chunk logit); the lm_head's backward the held output, the 16-bit gradients and the dequantized head."""
    import torch
    from caching_allocator import profiled_events, replay
    from recipe_models import fabric_output, lightning_4bit, lit_chunked_loss, lit_head, profiled

    head = lightning_4bit(h, vocab)
    hidden = torch.randn(rows, seq, h, dtype=torch.bfloat16, requires_grad=True)
    ids = torch.randint(0, vocab, (rows, seq))

    def step():
        logits = fabric_output(lit_head(hidden, head), fp32)  # the loop's `logits`, referenced through backward
        lit_chunked_loss(logits, ids).backward()
        hidden.grad = None

    allocated, _ = replay(profiled_events(profiled(step)))
    spec = ModelSpec("head", "llama", h, 4 * h, 1, 4, 4, vocab, 4096)
    settings = Settings(method="qlora", compute_dtype="bf16", seq_len=seq, micro_batch=rows, grad_ckpt=False, lora_targets=["q_proj", "v_proj"])
    moments = memory.litgpt_moments(spec, settings, dataclasses.replace(LITGPT, keeps_previous_step=False, fp32_output=fp32))
    assert max(moments, key=moments.get) == moment
    assert allocated == pytest.approx(moments[moment], rel=0.02)
    if moment == "loss":
        logits, chunk = rows * seq * vocab, rows * 128 * vocab
        assert moments["loss"] == 8 * logits + 8 * chunk


def test_installed_versions_read_package_metadata_only(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"transformers": "4.47.1"}.get(name) or (_ for _ in ()).throw(importlib.metadata.PackageNotFoundError(name)))
    found = memory.installed_versions(("transformers", "trl"))
    assert (found.transformers, found.trl, found.bitsandbytes) == ("4.47.1", memory.TODAY.trl, memory.TODAY.bitsandbytes)
    assert memory.versions_that_matter(Settings()) == ()  # the lean recipe with checkpointing: no version changes bytes
    assert memory.versions_that_matter(Settings(recipe="trl"), (False, True)) == ("bitsandbytes", "transformers", "peft", "trl")


def test_the_recipe_sets_the_residual_stream_and_so_every_checkpoint():
    """fp32 norms make the residual stream fp32: checkpoints are 4 bytes a value instead of 2."""
    model, base = load_model("llama-3.1-8b"), Settings(seq_len=4096)
    lean = memory.estimate(model, base, GPU).breakdown_bytes["activations"]
    old_trl = memory.estimate(model, dataclasses.replace(base, recipe="trl"), GPU, OLD).breakdown_bytes["activations"]
    h, layers = model.hidden_size, model.num_hidden_layers
    assert lean == pytest.approx(2 * h * 4096 * layers, rel=1e-6)
    assert old_trl == pytest.approx((2 + 4 * (layers - 1)) * h * 4096, rel=1e-6)  # the embedding output is bf16


def test_logits_dominate_a_large_vocabulary_only_without_a_chunked_loss():
    model, base = load_model("llama-3.1-8b"), Settings(seq_len=4096)
    hf = memory.estimate(model, dataclasses.replace(base, recipe="axolotl"), GPU).breakdown_bytes
    assert hf["logits"] > hf["activations"]
    lean = memory.estimate(model, base, GPU).breakdown_bytes
    assert lean.get("logits", 0) < hf["logits"] / 3


# ---- one decoder layer: what autograd saves ------------------------------------------------------

LAYER_CASES = {
    # name: (recipe_model kwargs, Recipe kwargs, input dtype, autocast, method, dropout, targets, old bitsandbytes, CUDA branch)
    "16-bit lora, autocast": (dict(qlora=False), {}, "bf16", True, "lora", 0.0, "all-linear", False, True),
    "lean qlora": ({}, {}, "bf16", True, "qlora", 0.0, "all-linear", False, True),
    "lean qlora, cpu branch": ({}, {}, "bf16", True, "qlora", 0.0, "all-linear", False, False),
    "fp32 norms, first layer": (dict(norms="fp32"), dict(norm=4), "bf16", True, "qlora", 0.0, "all-linear", False, True),
    "fp32 norms, fp32 stream": (dict(norms="fp32"), dict(norm=4), "fp32", True, "qlora", 0.0, "all-linear", False, True),
    "all fp32 leftovers": (dict(norms="fp32", embed="fp32", head="fp32"), dict(norm=4, embed=4, lm_head=4), "fp32", True, "qlora", 0.0, "all-linear", False, True),
    "pure bf16, bf16 adapters": (dict(adapter="bf16"), dict(adapter=2, autocast=False), "bf16", False, "qlora", 0.0, "all-linear", False, True),
    "no autocast, fp32 adapters": (dict(qlora=False), dict(autocast=False), "bf16", False, "lora", 0.0, "all-linear", False, True),
    "no autocast, q,v": (dict(qlora=False, targets=["q_proj", "v_proj"]), dict(autocast=False), "bf16", False, "lora", 0.0, ["q_proj", "v_proj"], False, True),
    "old bnb, q,v": (dict(targets=["q_proj", "v_proj"]), dict(saves_4bit_input=True), "bf16", True, "qlora", 0.0, ["q_proj", "v_proj"], True, True),
    "old bnb, fp32 stream, q,v": (dict(norms="fp32", targets=["q_proj", "v_proj"]), dict(norm=4, saves_4bit_input=True), "fp32", True, "qlora", 0.0, ["q_proj", "v_proj"], True, True),
    "old bnb, pure bf16, q,v": (dict(adapter="bf16", targets=["q_proj", "v_proj"]), dict(adapter=2, autocast=False, saves_4bit_input=True), "bf16", False, "qlora", 0.0, ["q_proj", "v_proj"], True, True),
    "dropout, cpu": (dict(qlora=False), {}, "bf16", True, "lora", 0.1, "all-linear", False, False),
    "dropout, fp32 stream, cpu": (dict(norms="fp32"), dict(norm=4), "fp32", True, "qlora", 0.1, "all-linear", False, False),
    "dropout, pure bf16": (dict(adapter="bf16"), dict(adapter=2, autocast=False), "bf16", False, "qlora", 0.1, "all-linear", False, False),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_saved_activations_match_a_real_llama_layer(case):
    """Byte for byte: norms' fp32 copies, attention, MLP intermediates in the flow's dtype, LoRA's (shared or
    own) inputs, an old 4-bit matmul's input. "cpu branch" rows take peft's CPU path (its autocast check is
    CUDA's flag); the others the CUDA path; dropout rows use the CPU's noise tensor as the CPU saves it."""
    import torch
    from recipe_models import llama_config, recipe_model, saved_bytes

    build, fields, dtype, autocast, method, dropout, targets, old_bnb, cuda = LAYER_CASES[case]
    config = llama_config(h=512, inter=1408, layers=1, vocab=1000)
    spec = ModelSpec("layer", "llama", 512, 1408, 1, 8, 4, 1000, 4096)
    tokens = 512
    model = recipe_model(config, ckpt=False, dropout=dropout, **build)
    measured = saved_bytes(model, tokens, {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype], autocast=autocast, cuda=cuda, old_bnb=old_bnb)
    settings = Settings(method=method, seq_len=tokens, lora_r=16, lora_dropout=dropout, lora_targets=targets if isinstance(targets, list) else [targets], attn="flash")
    recipe = R("case", "hf", **fields)
    flow = memory.layer_flow(settings, recipe, {"bf16": 2, "fp32": 4}[dtype])
    per_token, per_layer = memory.layer_saved_bytes(spec, settings, recipe, flow, "cuda" if cuda else "cpu", input_held=True)
    assert per_token * tokens + per_layer == pytest.approx(measured, rel=0.005)


def test_eager_attention_grows_with_the_square_of_seq_len():
    base = Settings(grad_ckpt=False, attn="sdpa", seq_len=2048)
    gap_2k = gib(dataclasses.replace(base, attn="eager")) - gib(base)
    gap_4k = gib(dataclasses.replace(base, attn="eager", seq_len=4096)) - gib(dataclasses.replace(base, seq_len=4096))
    assert gap_4k / gap_2k == pytest.approx(4, rel=0.15)


# ---- losses: allocated and reserved per logit ----------------------------------------------------

LOSS_CASES = {
    "hf": "hf_loss",
    "hf-shift": "hf_shift_loss",
    "hf-fp32-logits": "hf_fp32_logits_loss",
    "torchtune": "torchtune_loss",
    "hf-16bit-ce": "sixteen_bit_ce_loss",
}


def _loss_peaks(loss_fn, rows: int, held: bool, chunked: int = 0, autocast: bool = False, tokens: int = 512, vocab: int = 32000):
    """(allocated, reserved) bytes per logit of lm_head + the loss, forward and backward; reserved by replaying
    the profile with 64x the tokens, so every logits buffer takes a large segment of its own."""
    import contextlib

    import torch
    from caching_allocator import profiled_events, replay
    from recipe_models import profiled

    hidden = torch.randn(rows, tokens, 64, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(vocab, 64, dtype=torch.bfloat16) * 0.02
    labels = torch.randint(0, vocab, (rows, tokens))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            if chunked:
                loss, keep = loss_fn(hidden, weight, labels, chunked)
            else:
                logits = hidden @ weight.t()
                loss, keep = loss_fn(logits, labels, held)
                del logits
        loss.backward()
        del keep
        hidden.grad = None

    allocated, reserved = replay(profiled_events(profiled(step)), 64)
    logits = rows * tokens * vocab * 64
    return allocated / logits, reserved / logits


# torchtune's loop always keeps its logits: it has no "not held" case.
LOSS_COMBOS = [(name, held) for name in LOSS_CASES for held in (False, True) if held or name != "torchtune"]


@pytest.mark.parametrize(("name", "held"), LOSS_COMBOS)
@pytest.mark.parametrize("rows", [1, 2])
def test_loss_bytes_per_logit_match_the_profiled_losses(name, rows, held):
    import recipe_models

    allocated, reserved = _loss_peaks(getattr(recipe_models, LOSS_CASES[name]), rows, held, autocast=name == "hf-16bit-ce")
    expected = memory.LOSSES[name].peak(rows, held)
    assert allocated == pytest.approx(expected[0], abs=0.1)
    assert reserved == pytest.approx(expected[1], abs=0.1)


@pytest.mark.parametrize(("name", "function"), [("chunked", "chunked_loss"), ("litgpt", "litgpt_loss")])
def test_chunked_losses_keep_one_chunk_of_logits(name, function):
    import recipe_models

    tokens, chunk = 1024, 128
    allocated, reserved = _loss_peaks(getattr(recipe_models, function), 1, False, chunked=chunk, tokens=tokens)
    loss = memory.LOSSES[name]
    per_chunk = chunk / tokens
    assert allocated == pytest.approx(loss.whole[0] + loss.peak(1, False)[0] * per_chunk, abs=0.1)
    assert reserved == pytest.approx(loss.whole[1] + loss.peak(1, False)[1] * per_chunk, abs=0.15)


def test_trls_chunked_loss_holds_an_fp32_lm_head_and_a_chunk():
    """Allocated only (no replay: the fp32 copy of lm_head does not grow with the tokens)."""
    import torch
    from recipe_models import profiled, trl_chunked_loss
    from caching_allocator import profiled_events, replay

    hidden = torch.randn(1, 1024, 64, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(32000, 64, dtype=torch.bfloat16) * 0.02
    labels = torch.randint(0, 32000, (1, 1024))

    def step():
        loss, _ = trl_chunked_loss(hidden, weight, labels, 256)
        loss.backward()
        hidden.grad = None

    allocated, _ = replay(profiled_events(profiled(step)))
    loss = memory.LOSSES["trl-chunked"]
    expected = loss.peak(1, False)[0] * 256 * 32000 + loss.head_copy * 32000 * 64
    assert allocated == pytest.approx(expected, rel=0.1)


# ---- a whole training step per recipe: allocated and reserved ------------------------------------

STEP_CASES = {
    # name: (recipe_model kwargs, Recipe, method, grad_ckpt, autocast, hold_output)
    "gpudoctor (lean, chunked loss)": ({}, R("gpudoctor", "chunked"), "qlora", True, True, False),
    "axolotl (lean dtypes, HF loss)": ({}, R("axolotl", "hf"), "qlora", True, True, False),
    "trl < 0.26 (fp32 norms)": (dict(norms="fp32"), R("trl", "hf", norm=4), "qlora", True, True, False),
    "prepare_model_for_kbit_training (all fp32)": (dict(norms="fp32", embed="fp32", head="fp32"), R("trl", "hf", norm=4, embed=4, lm_head=4), "qlora", True, True, False),
    "fsdp-qlora (pure bf16, output held)": (dict(adapter="bf16", reentrant=True), R("fsdp-qlora", "hf", adapter=2, autocast=False, holds_outputs=True), "qlora", True, False, True),
    "lean, no checkpointing": (dict(ckpt=False), R("axolotl", "hf"), "qlora", False, True, False),
    "fp32 norms, no checkpointing": (dict(norms="fp32", ckpt=False), R("trl", "hf", norm=4), "qlora", False, True, False),
    "16-bit lora, no checkpointing": (dict(ckpt=False), R("trl", "hf"), "lora", False, True, False),
}


def _lean_loss(chunk):
    from recipe_models import chunked_loss

    def loss(model, ids):
        base = model.base_model.model
        hidden = base.model(input_ids=ids).last_hidden_state
        return chunked_loss(hidden, base.lm_head.weight, ids, chunk)[0]

    return loss


LOSS_PEAK_CASES = ("gpudoctor (lean, chunked loss)", "axolotl (lean dtypes, HF loss)", "trl < 0.26 (fp32 norms)", "fsdp-qlora (pure bf16, output held)")


@pytest.mark.slow
@pytest.mark.parametrize(("case", "vocab"), [(case, 512) for case in STEP_CASES] + [(case, 32000) for case in LOSS_PEAK_CASES])
def test_a_whole_training_step_allocates_and_reserves_what_the_estimate_says(case, vocab):
    """Forward + backward + AdamW of a small Llama with real NF4 layers and peft LoRA, as each recipe sets it
    up. Vocabulary 512 (4 layers): a layer's backward is the peak; 32000 (1 layer, 2048 tokens, two chunks of
    the lean loss): the loss is. Allocated within 3.5 %; reserved (the profiled events through the caching
    allocator's policy, 16x the tokens) within 8 %."""
    import torch
    from recipe_models import llama_config, recipe_model, step_peaks

    build, recipe, method, ckpt, autocast, hold = STEP_CASES[case]
    layers, rows, seq = (1, 2, 1024) if vocab == 32000 else (4, 2, 512)
    config = llama_config(h=256, inter=704, layers=layers, vocab=vocab)
    spec = ModelSpec("small", "llama", 256, 704, layers, 8, 4, vocab, 4096)
    model = recipe_model(config, qlora=method == "qlora", **build)
    ids = torch.randint(0, vocab, (rows, seq))
    loss_fn = _lean_loss(1024) if recipe.loss == "chunked" else None
    allocated, reserved = step_peaks(model, ids, autocast=autocast, hold_output=hold, loss_fn=loss_fn, scale=16)
    settings = Settings(method=method, seq_len=seq, micro_batch=rows, grad_ckpt=ckpt, optimizer="adamw_torch", attn="flash")
    result = memory.estimate(spec, settings, GPU, recipe=recipe)
    static = sum(result.breakdown_bytes[k] for k in ("base_weights", "base_16bit", "lora_weights", "lora_grads", "optimizer"))
    assert result.peak_allocated_bytes - static == pytest.approx(allocated, rel=0.035)
    assert result.peak_reserved_bytes - static == pytest.approx(reserved, rel=0.08)


# ---- the rest of the model -----------------------------------------------------------------------


def test_fsdp_shards_weights_keeps_the_root_whole_and_ddp_adds_buckets():
    model = load_model("llama-2-70b")
    single = memory.estimate(model, Settings(), GPU).breakdown_bytes
    fsdp = memory.estimate(model, Settings(gpus=2, strategy="fsdp"), GPU).breakdown_bytes
    ddp = memory.estimate(model, Settings(gpus=2, strategy="ddp"), GPU).breakdown_bytes
    assert fsdp["base_weights"] == pytest.approx(single["base_weights"] / 2, rel=1e-6)
    assert fsdp["fsdp_gather"] > single["base_16bit"] / 2  # two gathered layers and the unsharded root (embeddings, lm_head)
    assert ddp["base_weights"] == single["base_weights"] and ddp["ddp_buckets"] == single["lora_grads"]


def test_cpu_counts_the_process_and_no_cache():
    cpu = Hardware(device="cpu", name="cpu", budget_bytes=20 * GIB)
    result = memory.estimate(load_model("mistral-7b"), Settings(compute_dtype="fp32", optimizer="adamw_torch"), cpu)
    assert result.breakdown_bytes["cuda_context"] == memory.CPU_PROCESS_BYTES
    assert result.peak_reserved_bytes == result.peak_allocated_bytes


def test_the_loaders_floor_counts_where_peft_leaves_its_casts_cached():
    """peft before 0.20 did not empty the cache after prepare_model_for_kbit_training's fp32 casts."""
    model, settings = load_model("llama-3.1-8b"), Settings(recipe="trl", seq_len=256)
    old = memory.estimate(model, settings, GPU, OLD)
    new = memory.estimate(model, settings, GPU, dataclasses.replace(OLD, peft="0.20.0"))
    assert old.peak_reserved_bytes > new.peak_reserved_bytes and old.peak_allocated_bytes == new.peak_allocated_bytes


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"optimizer": "sgd"}, "--optimizer"),
        ({"attn": "xformers"}, "--attn"),
        ({"method": "full"}, "--method"),
        ({"seq_len": 0}, "--seq-len"),
        ({"lora_targets": ["c_attn"]}, "--lora-targets"),
        ({"recipe": "unsloth"}, "--recipe"),
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
    recipe=st.sampled_from(settings_module.RECIPES),
    old=st.booleans(),
    name=st.sampled_from(["mistral-7b", "llama-3.1-8b", "gemma-2-9b", "phi-3-mini"]),
)
def test_more_tokens_never_need_less_memory_checkpointing_never_costs_memory_4bit_weights_are_smaller(seq, batch, ckpt, attn, method, recipe, old, name):
    model, versions = load_model(name), OLD if old else memory.TODAY
    base = Settings(seq_len=seq, micro_batch=batch, grad_ckpt=ckpt, attn=attn, method=method, quant="nf4" if method == "qlora" else None, recipe=recipe)
    here = gib(base, model, versions)
    assert gib(dataclasses.replace(base, seq_len=seq + 256), model, versions) >= here
    assert gib(dataclasses.replace(base, micro_batch=batch + 1), model, versions) >= here
    assert gib(dataclasses.replace(base, grad_ckpt=True), model, versions) <= gib(dataclasses.replace(base, grad_ckpt=False), model, versions)
    # 4-bit weights are always smaller; whole peaks are not (an fp32 residual stream, see memory.py).
    weights = ("base_weights", "base_16bit")
    lora = memory.estimate(model, dataclasses.replace(base, method="lora", quant=None), GPU, versions).breakdown_bytes
    qlora = memory.estimate(model, dataclasses.replace(base, method="qlora", quant="nf4"), GPU, versions).breakdown_bytes
    assert sum(lora[k] for k in weights) > sum(qlora[k] for k in weights)
