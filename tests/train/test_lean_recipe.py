"""The lean QLoRA recipe: chunked cross-entropy equal to transformers' loss, 16-bit norms/embeddings/lm_head,
16-bit gradient checkpoints, fp32 LoRA adapters, and the Trainer's forward never building full logits."""

from __future__ import annotations

import copy

import pytest

from gpudoctor.train import loss as lean
from gpudoctor.train.packing import RowCollator, RowDataset, pack
from gpudoctor.train.tokenize import IGNORE, Sample

TOLERANCE = {"fp32": dict(rtol=1e-5, atol=1e-6), "bf16": dict(rtol=2e-2, atol=1e-4)}


def assert_close(ours, theirs, dtype: str) -> None:
    """Equal to float tolerance; in bf16 a gradient summed over chunks is rounded to bf16 once per chunk,
    so elements are compared to within 1 % of the largest (bf16 keeps 8 bits: 0.4 % per rounding)."""
    import torch

    if dtype == "fp32" or ours.dim() == 0:
        torch.testing.assert_close(ours, theirs, **TOLERANCE[dtype])
    else:
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=2e-2, atol=1e-2 * theirs.float().abs().max().item())


def _dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def _hf_loss(hidden, lm_head, labels, **kwargs):
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(lm_head(hidden), labels, lm_head.out_features, **kwargs)


def _random_case(dtype, *, batch=3, seq=37, hidden_size=24, vocab=211, seed=0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq, hidden_size, generator=generator).to(dtype).requires_grad_(True)
    lm_head = torch.nn.Linear(hidden_size, vocab, bias=False).to(dtype)
    with torch.no_grad():
        lm_head.weight.copy_(torch.randn(vocab, hidden_size, generator=generator) * 0.5)
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels[torch.rand(batch, seq, generator=generator) < 0.4] = IGNORE  # prompt tokens and padding
    labels[0, :5] = IGNORE
    return hidden, lm_head, labels


def _loss_and_grads(fn, hidden, lm_head):
    hidden.grad, lm_head.weight.grad = None, None
    value = fn()
    value.backward()
    return value.detach(), hidden.grad.clone(), lm_head.weight.grad.clone()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("num_items", [None, 50])
def test_chunked_loss_equals_hf_loss_values_and_gradients(dtype, num_items):
    import torch

    hidden, lm_head, labels = _random_case(_dtype(dtype))
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    ours = _loss_and_grads(lambda: lean.causal_lm_loss(hidden, lm_head, labels, chunk_tokens=8, **kwargs), hidden, lm_head)
    theirs = _loss_and_grads(lambda: _hf_loss(hidden, lm_head, labels, **kwargs), hidden, lm_head)
    assert ours[0].dtype == theirs[0].dtype == torch.float32
    for a, b in zip(ours, theirs):
        assert_close(a, b, dtype)


def test_chunked_loss_with_shift_labels_and_with_no_label_at_all():
    import torch

    hidden, lm_head, labels = _random_case(torch.float32)
    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:]
    torch.testing.assert_close(lean.causal_lm_loss(hidden, lm_head, shift_labels=shifted, chunk_tokens=5), _hf_loss(hidden, lm_head, labels))
    nothing = torch.full_like(labels, IGNORE)
    assert torch.isnan(lean.causal_lm_loss(hidden, lm_head, nothing)) and torch.isnan(_hf_loss(hidden, lm_head, nothing))
    zero = lean.causal_lm_loss(hidden, lm_head, nothing, num_items_in_batch=4)
    zero.backward()  # still part of the graph, as HF's is
    assert zero.item() == 0.0 and hidden.grad.abs().sum().item() == 0.0


def test_liger_is_only_taken_where_it_can_run():
    import torch

    hidden, lm_head, labels = _random_case(torch.float32)
    assert not lean.liger_usable(hidden, lm_head)  # CPU tensors: the chunk loop
    if lean._liger_loss_class() is None:
        with pytest.raises(RuntimeError, match="liger"):
            lean.causal_lm_loss(hidden, lm_head, labels, fused=True)


class _MeanOnlyLiger(__import__("torch").nn.Module):
    """Stands in for liger_kernel's LigerFusedLinearCrossEntropyLoss as its first versions behave: mean only."""

    def forward(self, lin_weight, _input, target, bias=None):
        import torch.nn.functional as F

        return F.cross_entropy(F.linear(_input, lin_weight, bias).float(), target, ignore_index=IGNORE)


@pytest.mark.parametrize("num_items", [None, 50])
def test_the_fused_path_turns_liger_mean_into_hf_loss(monkeypatch, num_items):
    import torch

    monkeypatch.setattr(lean, "_liger_loss_class", lambda: _MeanOnlyLiger)
    hidden, lm_head, labels = _random_case(torch.float32)
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    ours = _loss_and_grads(lambda: lean.causal_lm_loss(hidden, lm_head, labels, fused=True, **kwargs), hidden, lm_head)
    theirs = _loss_and_grads(lambda: _hf_loss(hidden, lm_head, labels, **kwargs), hidden, lm_head)
    for a, b in zip(ours, theirs):
        assert_close(a, b, "fp32")


def _qlora(tiny_model, tiny_settings, dtype: str, **changes):
    import torch

    from gpudoctor.train import model as models

    torch.manual_seed(0)
    settings = tiny_settings(compute_dtype=dtype, **changes)
    return models.add_lora(models.load_base(tiny_model, settings), settings)


def _packed_batch(vocab: int):
    first = list(range(10, 60))
    second = list(range(200, 240))
    samples = [Sample(1, first, [IGNORE] * 20 + first[20:]), Sample(2, second, [IGNORE] * 10 + second[10:])]
    rows = RowDataset(pack(samples, 128) + pack([Sample(3, first[:30], first[:30])], 128), count_tokens=False)
    batch = RowCollator(pad_id=0)([rows[0], rows[1]])
    assert batch["input_ids"].max() < vocab
    return batch


def _lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_models_loss_is_hf_loss_on_a_packed_batch(tiny_model, tiny_settings, dtype):
    """Same model, same packed batch (position_ids restarting, -100 on prompts and padding): with and without the chunked forward."""
    import torch

    model = _qlora(tiny_model, tiny_settings, dtype)
    assert lean.causal_lm_of(model).gpudoctor_loss == "chunked"
    batch = _packed_batch(model.config.vocab_size)
    for p in model.parameters():
        if p.requires_grad:  # LoRA B starts at zero; give every adapter a gradient path of its own
            torch.nn.init.normal_(p, std=0.02)
    results = {}
    for name in ("chunked", "hf"):
        if name == "hf":
            lean.uninstall(model)
        for kwargs in ({}, {"num_items_in_batch": torch.tensor(64)}):
            model.zero_grad(set_to_none=True)
            out = model(**batch, **kwargs)
            out.loss.backward()
            results[name, bool(kwargs)] = (out.loss.detach(), _lora_grads(model))
            if name == "chunked":
                assert out.logits is None
            else:
                assert out.logits.shape[:2] == batch["input_ids"].shape
    for with_items in (False, True):
        (ours, our_grads), (theirs, their_grads) = results["chunked", with_items], results["hf", with_items]
        assert_close(ours, theirs, dtype)
        assert our_grads.keys() == their_grads.keys() and len(our_grads) > 0
        for key in our_grads:
            assert_close(our_grads[key], their_grads[key], dtype)


def test_qlora_with_bf16_compute_keeps_norms_embeddings_lm_head_in_bf16_and_lora_in_fp32(tiny_model, tiny_settings):
    import torch

    model = _qlora(tiny_model, tiny_settings, "bf16")
    base = lean.causal_lm_of(model)
    assert base.is_loaded_in_4bit
    assert base.lm_head.weight.dtype == torch.bfloat16 and base.get_input_embeddings().weight.dtype == torch.bfloat16
    norms = [m for n, m in base.named_modules() if type(m).__name__.endswith("RMSNorm")]
    assert len(norms) == 2 * base.config.num_hidden_layers + 1 and all(m.weight.dtype == torch.bfloat16 for m in norms)
    for name, param in model.named_parameters():
        if "lora_" in name:
            assert param.dtype == torch.float32 and param.requires_grad, name
        else:
            assert not param.requires_grad, name
            assert param.dtype in (torch.bfloat16, torch.uint8), (name, param.dtype)  # uint8: NF4-packed Params4bit


def _residual_stream(model, batch):
    """One training step as the Trainer runs it (train mode, bf16 autocast), watched by a forward pre-hook on
    every decoder layer and a saved-tensor hook: (dtypes of the layers' input hidden states, dtypes of those
    inputs that autograd saved, i.e. the gradient checkpoints, all bytes autograd saved)."""
    import torch

    inputs, saved, saved_bytes = {}, [], [0]

    def before_layer(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        inputs[hidden.data_ptr()] = hidden.dtype

    def pack_hook(tensor):
        saved_bytes[0] += tensor.numel() * tensor.element_size()
        if tensor.data_ptr() in inputs:
            saved.append(tensor.dtype)
        return tensor

    layers = lean.causal_lm_of(model).model.layers
    handles = [layer.register_forward_pre_hook(before_layer, with_kwargs=True) for layer in layers]
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        out = model(**batch)
    out.loss.backward()
    for handle in handles:
        handle.remove()
    assert len(inputs) == len(layers)
    return list(inputs.values()), saved, saved_bytes[0]


def _old_recipe(tiny_model, tiny_settings, grad_ckpt: bool):
    """What add_lora did before: prepare_model_for_kbit_training (fp32 upcast) and transformers' loss."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from gpudoctor.train import model as models

    settings = tiny_settings(compute_dtype="bf16", grad_ckpt=grad_ckpt)
    old = prepare_model_for_kbit_training(models.load_base(tiny_model, settings), use_gradient_checkpointing=grad_ckpt, gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(old, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))


@pytest.mark.parametrize("grad_ckpt", [True, False])
def test_residual_stream_and_checkpoints_are_16bit_with_bf16_compute(tiny_model, tiny_settings, grad_ckpt):
    import torch

    model = _qlora(tiny_model, tiny_settings, "bf16", grad_ckpt=grad_ckpt)
    batch = _packed_batch(model.config.vocab_size)
    residual, checkpoints, saved = _residual_stream(model, batch)
    old_residual, old_checkpoints, old_saved = _residual_stream(_old_recipe(tiny_model, tiny_settings, grad_ckpt), batch)
    assert set(residual) == {torch.bfloat16} and set(old_residual) == {torch.float32}
    if grad_ckpt:  # each layer's input is kept for its recomputation in backward
        assert len(checkpoints) == len(old_checkpoints) == model.config.num_hidden_layers
        assert set(checkpoints) == {torch.bfloat16} and set(old_checkpoints) == {torch.float32}
    assert saved < old_saved


def test_no_full_logits_reach_lm_head_and_a_deep_copy_uses_its_own_weights(tiny_model, tiny_settings, monkeypatch):
    import torch

    monkeypatch.setattr(lean, "CHUNK_TOKENS", 16)  # several chunks per batch
    model = _qlora(tiny_model, tiny_settings, "fp32")
    base = lean.causal_lm_of(model)
    batch = _packed_batch(model.config.vocab_size)
    labelled = int((torch.nn.functional.pad(batch["labels"], (0, 1), value=IGNORE)[..., 1:] != IGNORE).sum())
    rows = []
    handle = base.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape))
    model(**batch).loss.backward()
    handle.remove()
    assert rows and all(len(shape) == 2 and shape[0] <= min(lean.CHUNK_TOKENS, labelled) for shape in rows)
    assert sum(shape[0] for shape in rows) == 2 * labelled  # forward once, recomputed once in backward
    twin = copy.deepcopy(model)
    twin_base = lean.causal_lm_of(twin)
    assert twin_base.forward.__self__ is twin_base
    with torch.no_grad():
        for p in twin_base.lm_head.parameters():
            p.mul_(0.0)
        assert twin(**batch).loss.item() == pytest.approx(torch.log(torch.tensor(float(model.config.vocab_size))).item(), rel=1e-5)
        assert model(**batch).loss.item() != pytest.approx(twin(**batch).loss.item())


def test_generation_without_labels_takes_the_models_own_forward(tiny_model, tiny_settings):
    import torch

    model = _qlora(tiny_model, tiny_settings, "fp32")
    batch = _packed_batch(model.config.vocab_size)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.vocab_size)


TINY_CONFIGS = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
    head_dim=16, vocab_size=101, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
)  # fmt: skip


@pytest.mark.parametrize("model_type", sorted(lean.PLAIN_CAUSAL_LMS))
def test_every_architecture_on_the_list_gets_its_own_loss(model_type):
    """The list of causal LMs whose forward is plain lm_head + ForCausalLMLoss: each gives the same loss both ways."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **TINY_CONFIGS))
    assert lean.supported(model) is None
    ids = torch.randint(3, 101, (2, 40))
    labels = ids.clone()
    labels[:, :9] = IGNORE
    theirs = model(input_ids=ids, labels=labels).loss
    assert lean.install(model) == "chunked"
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, theirs)


def test_models_off_the_list_keep_their_own_loss():
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma2", **TINY_CONFIGS)  # logit soft-capping between lm_head and the loss
    model = AutoModelForCausalLM.from_config(config)
    assert lean.install(model) == "hf" and "forward" not in vars(model)


@pytest.mark.slow
def test_gpudoctor_train_uses_the_chunked_loss_with_the_trainers_token_count(tiny_model, tiny_config, support_data, tmp_path, monkeypatch):
    """Through gpudoctor's own run (Trainer, packed rows, train and eval): every labelled forward takes the
    chunked loss, and the Trainer's num_items_in_batch (gradient accumulation) reaches it."""
    import io

    from rich.console import Console

    from gpudoctor.train.run import train

    calls = []
    real = lean.causal_lm_loss

    def counted(*args, **kwargs):
        calls.append((args[0].shape, kwargs.get("num_items_in_batch")))
        return real(*args, **kwargs)

    monkeypatch.setattr(lean, "causal_lm_loss", counted)
    config = tiny_config(tiny_model, support_data, tmp_path / "run", max_steps=2, val_size=4)
    report = train(config, console=Console(file=io.StringIO(), width=100))
    assert report.status == "finished" and report.final_eval_loss is not None
    assert len(calls) >= 3 and all(items is not None for _, items in calls)  # 2 training steps + evaluation
