"""Small real models on the CPU, set up the way each recipe sets up its model, and the losses the recipes
run; what tests/plan/test_memory.py holds the memory model's terms against.

A model is a transformers Llama with bitsandbytes NF4 Linear4bit projections (bitsandbytes 0.50 runs
4-bit on the CPU) or 16-bit ones, peft LoRA on top, norms / embeddings / lm_head / adapters in the
recipe's dtypes:
- `recipe_model(config, norms="fp32", ...)`: what peft.prepare_model_for_kbit_training leaves (all fp32),
  or TRL's recast (embeddings and lm_head back to bf16), or the lean recipes (all 16-bit);
- `cuda_peft()`: peft's 4-bit LoRA layer asks torch.is_autocast_enabled(), which is CUDA's flag; under
  CPU autocast this makes it answer for the CPU, so the CPU takes the branch a CUDA run takes;
- `old_bitsandbytes()`: MatMul4Bit saves its input as bitsandbytes before 0.43.2 did (through
  save_for_backward, so saved-tensor hooks see it);
- `saved_bytes(...)`: bytes autograd saves in one decoder layer (saved_tensors_hooks);
- `profiled(step)`: the torch.profiler memory events of a step run under `ZeroMatmuls` (matrix products
  answer zeros, allocated as the real kernels allocate their results: same bytes, no bf16 arithmetic,
  which CPUs without bf16 instructions run ~250x slower);
- `step_peaks(...)`: peak allocated bytes of one training step (torch.profiler memory events, tensors
  made before the step left out) and the CUDA caching allocator's reserved peak for it
  (caching_allocator.py);
- `LitGPTLike`, `fabric_output`, `lit_chunked_loss`, `bitsandbytes_ctx_tensors()`, `live_after(...)`: LitGPT
  QLoRA through Lightning Fabric (4-bit lm_head, fp32 output, bitsandbytes < 0.43.2 keeping each 4-bit input
  on its graph node) and the bytes a call leaves alive.

The losses at the bottom are written here from the cited code of each version (they are not imported:
old transformers versions are not installed); gpudoctor's lean chunked loss is the test's own, so these
tests do not depend on gpudoctor/train.
"""

from __future__ import annotations

import contextlib
import unittest.mock

import bitsandbytes as bnb
import peft
import torch
import torch.nn.functional as F
import transformers
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

from caching_allocator import profiled_events, replay

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def llama_config(h=256, inter=704, layers=2, heads=8, kv=4, vocab=512) -> transformers.LlamaConfig:
    config = transformers.LlamaConfig(
        hidden_size=h, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        vocab_size=vocab, tie_word_embeddings=False, use_cache=False, max_position_embeddings=4096,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    return config


def _quantize(model) -> None:
    """Every decoder projection as bitsandbytes NF4 (double quantization), as from_pretrained(load_in_4bit) makes it."""
    for layer in model.model.layers:
        for name, child in list(layer.named_modules()):
            if isinstance(child, torch.nn.Linear):
                parent, attr = layer.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
                new.weight = bnb.nn.Params4bit(child.weight.data.to(torch.bfloat16), requires_grad=False, quant_type="nf4")
                setattr(parent, attr, new.to("cpu"))
    model.is_loaded_in_4bit = True


def recipe_model(config, *, qlora=True, norms="bf16", embed="bf16", head="bf16", adapter="fp32", ckpt=True, reentrant=False, targets="all-linear", dropout=0.0, r=16):
    """A peft LoRA model with the recipe's dtypes (see the module docstring)."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    if qlora:
        _quantize(model)
    model.requires_grad_(False)
    for name, module in model.named_modules():
        if "norm" in name and not list(module.children()):
            module.to(DTYPES[norms])
    model.model.embed_tokens.to(DTYPES[embed])
    model.lm_head.to(DTYPES[head])
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        model.enable_input_require_grads()
    lora = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=dropout)
    model = peft.get_peft_model(model, lora, autocast_adapter_dtype=adapter == "fp32")
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(DTYPES[adapter])
    model.train()
    return model


@contextlib.contextmanager
def cuda_peft():
    real = torch.is_autocast_enabled
    with unittest.mock.patch.object(torch, "is_autocast_enabled", lambda *args: real(*args) if args else real("cpu")):
        yield


@contextlib.contextmanager
def matmul_4bit_keeping_input(keep):
    """bitsandbytes' MatMul4Bit.forward, then keep(ctx, A) wherever a gradient is needed: how an older
    bitsandbytes held the 4-bit layer's input A, patched into today's."""
    from bitsandbytes.autograd import _functions

    forward = _functions.MatMul4Bit.forward

    def keeping(ctx, A, B, out=None, bias=None, quant_state=None):
        result = forward(ctx, A, B, out, bias, quant_state)
        if any(ctx.needs_input_grad[:2]):
            keep(ctx, A)
        return result

    _functions.MatMul4Bit.forward = staticmethod(keeping)
    try:
        yield
    finally:
        _functions.MatMul4Bit.forward = forward


def old_bitsandbytes():
    """bitsandbytes < 0.43.2 saving A for backward, counted as a saved tensor (saved-tensor hooks see it)."""
    return matmul_4bit_keeping_input(lambda ctx, A: ctx.save_for_backward(A))


def saved_bytes(model, tokens: int, input_dtype, *, autocast=True, cuda=True, old_bnb=False) -> int:
    """Bytes autograd saves in the first decoder layer for one sequence of `tokens` (its input left out)."""
    layer = model.base_model.model.model.layers[0]
    hidden = torch.randn(1, tokens, model.config.hidden_size, dtype=input_dtype, requires_grad=True)
    positions = torch.arange(tokens)[None]
    rotary = model.base_model.model.model.rotary_emb(hidden, positions)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {t.untyped_storage().data_ptr() for t in (hidden, *rotary)}
    saved: dict[int, int] = {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in skip:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    mixed = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with cuda_peft() if cuda else contextlib.nullcontext(), old_bitsandbytes() if old_bnb else contextlib.nullcontext():
        with mixed, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(hidden, position_embeddings=rotary, attention_mask=None, position_ids=positions)
    return sum(saved.values())


class ZeroMatmuls(TorchDispatchMode):
    """Matrix products answer zeros of their result's shape and dtype, allocated as the real kernel allocates
    its result: the step's tensors and their lifetimes stay what they are, its arithmetic goes. A CPU
    without bf16 instructions multiplies bf16 at ~2.5 GFLOP/s (torch's fallback gemm), ~250x slower than
    oneDNN where they exist; the bytes are the same either way."""

    SHAPES = {
        torch.ops.aten.mm.default: lambda a, b: (a.shape[0], b.shape[1]),
        torch.ops.aten.addmm.default: lambda bias, a, b, **_: (a.shape[0], b.shape[1]),
        torch.ops.aten.bmm.default: lambda a, b: (a.shape[0], a.shape[1], b.shape[2]),
        torch.ops.aten.baddbmm.default: lambda base, a, b, **_: (a.shape[0], a.shape[1], b.shape[2]),
    }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shape = self.SHAPES.get(func)
        if shape is None:
            return func(*args, **kwargs)
        operand = args[-1]
        return torch.zeros(shape(*args, **kwargs), dtype=operand.dtype, device=operand.device)


def profiled(step, warm=True):
    """The profile of one call of `step` (after a warm-up call that creates optimizer states), its matrix
    products skipped (ZeroMatmuls)."""
    with ZeroMatmuls():
        if warm:
            step()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            step()
    return prof


def step_peaks(model, ids, *, autocast=True, hold_output=False, loss_fn=None, scale=1.0) -> tuple[int, int]:
    """(peak allocated, replayed peak reserved) of forward + backward + AdamW step, as the CUDA branch runs
    it, past the first micro batch of an accumulation: the LoRA gradients and AdamW states exist already
    (a warm-up step made them and nothing zeroes them), so the step's own bytes are what is measured."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            out = model(input_ids=ids, labels=ids) if loss_fn is None else None
            loss = out.loss if loss_fn is None else loss_fn(model, ids)
        if not hold_output:
            del out
        loss.backward()
        optimizer.step()

    with cuda_peft():
        prof = profiled(step)
    allocated, reserved = replay(profiled_events(prof), scale)
    return allocated / scale, reserved / scale


# The losses, each from the code it stands for, on logits (B, S, V) and labels (B, S). Each returns
# (loss, what the caller keeps referenced through backward).


def hf_loss(logits, labels, held=False):
    """transformers >= 4.49 (installed: 5.24) ForCausalLMLoss."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits, labels, logits.shape[-1]), (logits if held else None)


def hf_shift_loss(logits, labels, held=False):
    """transformers 4.46-4.48 loss/loss_utils.py ForCausalLMLoss: upcast, then the shifted contiguous copy."""
    upcast = logits.float()
    shifted = upcast[..., :-1, :].contiguous()
    return F.cross_entropy(shifted.view(-1, logits.shape[-1]), labels[..., 1:].reshape(-1)), (logits if held else None)


def hf_fp32_logits_loss(logits, labels, held=False):
    """transformers <= 4.45 LlamaForCausalLM.forward: logits = logits.float() (returned), shifted copy, CrossEntropyLoss."""
    upcast = logits.float()
    del logits
    shifted = upcast[..., :-1, :].contiguous()
    return torch.nn.CrossEntropyLoss()(shifted.view(-1, upcast.shape[-1]), labels[..., 1:].reshape(-1)), (upcast if held else None)


def torchtune_loss(logits, labels, held=True):
    """torchtune recipes/lora_finetune_single_device.py (Apr 2024): fp32 logits, shifted contiguous, transposed."""
    kept = logits.float()
    del logits
    kept = kept[..., :-1, :].contiguous().transpose(1, 2)
    return torch.nn.CrossEntropyLoss()(kept, labels[..., 1:]), kept


def sixteen_bit_ce_loss(logits, labels, held=False):
    """Qwen-7B modeling_qwen.py: CrossEntropyLoss over the contiguous 16-bit shifted logits (fp32 under autocast)."""
    shifted = logits[..., :-1, :].contiguous()
    return torch.nn.CrossEntropyLoss()(shifted.view(-1, logits.shape[-1]), labels[..., 1:].reshape(-1)), (logits if held else None)


def _chunk_sum(hidden, weight, labels):
    return F.cross_entropy((hidden @ weight.t()).float(), labels, reduction="sum", ignore_index=-100)


def chunked_loss(hidden, weight, labels, chunk):
    """The lean recipe's loss: lm_head + upcast + cross-entropy over `chunk` label tokens at a time,
    each chunk under torch.utils.checkpoint (recomputed in backward)."""
    targets = F.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1)
    flat = hidden.reshape(-1, hidden.shape[-1])
    keep = targets != -100
    flat, targets = flat[keep], targets[keep]
    total = None
    for start in range(0, targets.numel(), chunk):
        part = checkpoint(_chunk_sum, flat[start : start + chunk], weight, targets[start : start + chunk], use_reentrant=False)
        total = part if total is None else total + part
    return total / targets.numel(), None


def litgpt_loss(hidden, weight, labels, chunk):
    """LitGPT finetune/lora.py: lm_head in chunks (a list of 16-bit logits), chunked_cross_entropy (lit_gpt/utils.py)."""
    logits = [part @ weight.t() for part in hidden.split(chunk, dim=1)]
    logits[-1] = logits[-1][..., :-1, :]
    targets = labels[..., 1:].split(chunk, dim=1)
    losses = [F.cross_entropy(l.reshape(-1, l.shape[-1]), t.reshape(-1), reduction="none") for l, t in zip(logits, targets)]
    return torch.cat(losses).mean(), logits


def _trl_chunk(hidden, weight, labels):
    logits = hidden.float() @ weight.float().t()
    log_p = F.log_softmax(logits, dim=-1)
    loss = F.nll_loss(log_p, labels, ignore_index=-100, reduction="sum")
    valid = labels != -100
    correct = ((logits.argmax(dim=-1) == labels) & valid).sum().float()
    entropy = (-(log_p.exp() * log_p).sum(dim=-1) * valid).sum()
    return loss, correct, entropy


def trl_chunked_loss(hidden, weight, labels, chunk):
    """TRL >= 1.7 chunked_nll (trl/trainer/sft_trainer.py): fp32 logits, log-probs, accuracy and entropy per chunk."""
    flat = hidden[..., :-1, :].reshape(-1, hidden.shape[-1])
    targets = labels[..., 1:].reshape(-1)
    total = None
    for start in range(0, targets.numel(), chunk):
        part = checkpoint(_trl_chunk, flat[start : start + chunk], weight, targets[start : start + chunk], use_reentrant=False)[0]
        total = part if total is None else total + part
    return total / targets.numel(), None


# LitGPT (2023-2024) QLoRA through Lightning Fabric, reduced to what changes bytes between micro batches and
# at the lm_head: written here from litgpt/model.py and litgpt/lora.py (00af8b0d), Lightning's
# BitsandbytesPrecision (every nn.Linear, lm_head included, quantized from fp16) and _FabricModule.forward.


def bitsandbytes_ctx_tensors():
    """bitsandbytes 0.41.0-0.43.1 MatMul4Bit.forward: `ctx.tensors = (A, B)`, a plain attribute of the graph
    node (not save_for_backward), so backward does not free A: it lives as long as the node (0.43.2, PR #1270,
    stores (None, B))."""
    return matmul_4bit_keeping_input(lambda ctx, A: setattr(ctx, "tensors", (A, ctx.tensors[1])))


def lightning_4bit(in_f: int, out_f: int):
    """Lightning's _Linear4bit: NF4 from `weight.to(torch.half)`, bf16 compute dtype."""
    layer = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    weight = (torch.randn(out_f, in_f) * 0.02).to(torch.half)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")._quantize("cpu")
    return layer


class _LitRMSNorm(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(h, dtype=torch.bfloat16), requires_grad=False)

    def forward(self, x):  # litgpt/model.py RMSNorm at 00af8b0d: x.float() ... .to(dtype)
        norm = torch.mean(x.float() * x.float(), dim=-1, keepdim=True)
        return (x.float() * torch.rsqrt(norm + 1e-5)).to(x.dtype) * self.weight


class _LitBlock(torch.nn.Module):
    def __init__(self, h, inter, heads, r):
        super().__init__()
        self.heads, self.norm_1, self.norm_2 = heads, _LitRMSNorm(h), _LitRMSNorm(h)
        self.attn, self.proj = lightning_4bit(h, 3 * h), lightning_4bit(h, h)
        self.lora_a = torch.nn.Parameter(torch.randn(r, h, dtype=torch.bfloat16) * 0.02)
        self.lora_b = torch.nn.Parameter(torch.zeros(3 * h, r, dtype=torch.bfloat16))
        self.fc_1, self.fc_2, self.mlp_proj = lightning_4bit(h, inter), lightning_4bit(h, inter), lightning_4bit(inter, h)

    def forward(self, x):
        rows, seq, h = x.shape
        n = self.norm_1(x)
        qkv = self.attn(n) + (n @ self.lora_a.t()) @ self.lora_b.t()  # LoRA on the fused qkv
        q, k, v = qkv.view(rows, seq, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(rows, seq, h)
        x = x + self.proj(y)
        n = self.norm_2(x)
        return x + self.mlp_proj(F.silu(self.fc_1(n)) * self.fc_2(n))


class LitGPTLike(torch.nn.Module):
    """wte, Blocks, ln_f and a 4-bit lm_head applied to 128-position chunks (GPT.forward(lm_head_chunk_size=128))."""

    def __init__(self, h=128, inter=352, layers=2, heads=4, vocab=2048, r=8):
        super().__init__()
        torch.manual_seed(0)
        self.wte = torch.nn.Embedding(vocab, h).to(torch.bfloat16).requires_grad_(False)
        self.blocks = torch.nn.ModuleList(_LitBlock(h, inter, heads, r) for _ in range(layers))
        self.ln_f, self.lm_head = _LitRMSNorm(h), lightning_4bit(h, vocab)

    def forward(self, ids, chunk=128):
        x = self.wte(ids)
        for block in self.blocks:
            x = block(x)
        return lit_head(self.ln_f(x), self.lm_head, chunk)


def lit_head(x, lm_head, chunk=128):
    return [lm_head(part) for part in x.split(chunk, dim=1)]


def fabric_output(logits, fp32=True):
    """_FabricModule.forward -> precision.convert_output: floating outputs to torch.get_default_dtype() (fp32)."""
    return [part.to(torch.float32) for part in logits] if fp32 else logits


def lit_chunked_loss(logits, ids):
    """finetune/lora.py's shift and chunked_cross_entropy (litgpt/utils.py) over the list of chunks."""
    logits[-1] = logits[-1][..., :-1, :]
    targets = ids[..., 1:].split(logits[0].size(1), dim=1)
    losses = [F.cross_entropy(l.reshape(-1, l.size(-1)), t.reshape(-1), reduction="none") for l, t in zip(logits, targets)]
    return torch.cat(losses).mean()


def live_after(call) -> int:
    """Bytes allocated during `call()` and still alive when it returns (what it returns included)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        kept = call()
    live: dict[object, int] = {}
    for action, key, size in profiled_events(prof):
        if action == "alloc":
            live[key] = size
        else:
            live.pop(key, None)
    del kept
    return sum(live.values())
