"""The causal-LM loss without a full [tokens × vocab] logits tensor: chunked cross-entropy over lm_head.

transformers' ForCausalLMLoss takes the logits of every position (B × S × V, 16-bit from lm_head),
upcasts them to fp32 and keeps what cross-entropy saves for backward: with a 32k vocabulary and
2048 tokens that is about 0.9 GiB for the loss alone, more than a small model's layers. Here the
hidden states of the positions that have a label (label ≠ -100 after the shift) go through lm_head
and cross-entropy CHUNK_TOKENS at a time, each chunk under torch.utils.checkpoint, so only one
chunk's logits are alive at a time, in forward and (recomputed) in backward.

The value is HF's exactly, up to float summation order: the same shift (position t predicts label
t+1, the last position predicts nothing), the same 16-bit lm_head output upcast to fp32, the sum of
per-token losses divided by num_items_in_batch when the Trainer passes it (gradient accumulation),
else by the number of label tokens. On CUDA with `liger_kernel` installed and a plain nn.Linear
lm_head, Liger's fused linear cross-entropy takes the place of the chunk loop (optional).

`install(model)` puts this in the forward of the causal LM inside a peft model (the way Liger's
own patching does, so the Trainer, DDP and peft wrappers all still call model(**batch)); calls
without labels (generation, chat) take the model's own forward unchanged.
"""

from __future__ import annotations

import functools
import types
from typing import Any

CHUNK_TOKENS = 1024  # agreed with gpudoctor/plan/memory.py: the logits of one chunk of label tokens are alive at a time
IGNORE_INDEX = -100

# Causal LMs whose forward (transformers 5) is exactly: hidden = self.model(...).last_hidden_state,
# logits = self.lm_head(hidden), loss = self.loss_function(logits, labels, vocab_size, **kwargs); no
# logit softcapping or scaling, no router loss. Others keep transformers' own loss.
PLAIN_CAUSAL_LMS = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo2"})


def causal_lm_loss(
    hidden_states: Any,
    lm_head: Any,
    labels: Any = None,
    *,
    num_items_in_batch: Any = None,
    shift_labels: Any = None,
    ignore_index: int = IGNORE_INDEX,
    chunk_tokens: int | None = None,
    fused: bool | None = None,
) -> Any:
    """ForCausalLMLoss(lm_head(hidden_states), labels) computed chunk by chunk (fp32 scalar).

    `chunk_tokens`: label tokens per chunk (default CHUNK_TOKENS). `fused`: None uses Liger's fused
    linear cross-entropy where it can run (see liger_usable), False never, True requires it.
    """
    import torch
    import torch.nn.functional as F

    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    targets = shift_labels.reshape(-1).to(hidden.device)
    keep = targets != ignore_index
    hidden, targets = hidden[keep], targets[keep]  # only positions with a label reach lm_head
    count = targets.numel()
    chunk_tokens = chunk_tokens or CHUNK_TOKENS
    if fused is None:
        fused = liger_usable(hidden, lm_head)
    if count == 0:  # HF: sum 0 over num_items_in_batch, or 0/0 = nan for the mean; keep the graph connected
        total = hidden.sum(dtype=torch.float32) * 0.0
    elif fused:
        total = _liger_sum(hidden, lm_head, targets)
    else:
        total = None
        for start in range(0, count, chunk_tokens):
            part = _chunk_sum_checkpointed(lm_head, hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens])
            total = part if total is None else total + part
    if num_items_in_batch is None:
        return total / count if count else total / 0.0
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _chunk_sum(lm_head: Any, hidden: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    logits = lm_head(hidden).float()  # lm_head's own (16-bit) output, upcast as ForCausalLMLoss does
    return F.cross_entropy(logits, targets, reduction="sum")


def _chunk_sum_checkpointed(lm_head: Any, hidden: Any, targets: Any) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():  # evaluation: nothing is saved anyway
        return _chunk_sum(lm_head, hidden, targets)
    # Saves only the chunk's hidden states and targets; the logits are recomputed in backward.
    return checkpoint(_chunk_sum, lm_head, hidden, targets, use_reentrant=False)


@functools.cache
def _liger_loss_class() -> Any:
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except Exception:  # not installed, or no Triton for this machine
        return None
    return LigerFusedLinearCrossEntropyLoss


def liger_usable(hidden: Any, lm_head: Any) -> bool:
    """Liger's fused kernel: CUDA tensors, liger_kernel importable, a plain nn.Linear lm_head in hidden's dtype."""
    import torch

    if not hidden.is_cuda or type(lm_head) is not torch.nn.Linear or lm_head.weight.dtype != hidden.dtype:
        return False
    return _liger_loss_class() is not None


def _liger_sum(hidden: Any, lm_head: Any, targets: Any) -> Any:
    loss_class = _liger_loss_class()
    if loss_class is None:
        raise RuntimeError("fused=True needs liger_kernel (pip install liger-kernel) on a CUDA machine")
    # The mean over the (already label-only) targets, times their count: every liger_kernel version has
    # reduction="mean" (early ones ignore any other reduction), so the sum is read off it.
    out = loss_class()(lm_head.weight, hidden, targets, lm_head.bias)
    if isinstance(out, tuple):  # versions that can also return a z-loss
        out = out[0]
    out = getattr(out, "loss", out)  # versions that return an output object
    return out.float() * targets.numel()


# Wiring: the causal LM's forward takes this path when it is given labels.


def causal_lm_of(model: Any) -> Any:
    """The transformers causal LM inside a peft model (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def supported(causal_lm: Any) -> str | None:
    """None when the chunked loss reproduces this model's own loss, else why not."""
    import torch

    config = getattr(causal_lm, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in PLAIN_CAUSAL_LMS:
        return f"model type {model_type!r} is not one whose loss is plain lm_head + cross-entropy"
    if not isinstance(getattr(causal_lm, "lm_head", None), torch.nn.Module) or not isinstance(getattr(causal_lm, "model", None), torch.nn.Module):
        return "no .model and .lm_head modules"
    try:
        from transformers.loss.loss_utils import LOSS_MAPPING

        if causal_lm.loss_function is not LOSS_MAPPING["ForCausalLM"]:
            return "the model's loss_function is not ForCausalLMLoss"
    except Exception:
        return "cannot read the model's loss_function"
    return None


def install(model: Any) -> str:
    """Route the causal LM's labelled forward through causal_lm_loss; return "chunked" or "hf" (unsupported).

    Records the choice as `gpudoctor_loss` on the causal LM. Installing twice is harmless.
    """
    causal_lm = causal_lm_of(model)
    if supported(causal_lm) is not None:
        causal_lm.gpudoctor_loss = "hf"
        return "hf"
    # A bound method (not a closure over the model): a deep copy of the model rebinds it to the copy.
    causal_lm.forward = types.MethodType(_forward_for(type(causal_lm)), causal_lm)
    causal_lm.gpudoctor_loss = "chunked"
    return "chunked"


def uninstall(model: Any) -> None:
    """Back to transformers' own forward and loss."""
    causal_lm = causal_lm_of(model)
    causal_lm.__dict__.pop("forward", None)
    causal_lm.gpudoctor_loss = "hf"


def _forward_for(cls: type) -> Any:
    """_lean_forward under the class forward's name and signature (what the Trainer and peft inspect)."""

    @functools.wraps(cls.forward)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _lean_forward(self, *args, **kwargs)

    return forward


def _lean_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """The causal LM's forward with labels: decoder → chunked loss, no logits returned (logits=None)."""
    labels, shift_labels = kwargs.get("labels"), kwargs.get("shift_labels")
    keep = kwargs.get("logits_to_keep", 0)
    if args or (labels is None and shift_labels is None) or not (isinstance(keep, int) and keep == 0):
        return type(self).forward(self, *args, **kwargs)
    from transformers.modeling_outputs import CausalLMOutputWithPast

    kwargs = dict(kwargs)
    for name in ("labels", "shift_labels", "logits_to_keep"):
        kwargs.pop(name, None)
    num_items_in_batch = kwargs.pop("num_items_in_batch", None)
    ignore_index = kwargs.pop("ignore_index", IGNORE_INDEX)
    outputs = self.model(**kwargs)
    loss = causal_lm_loss(
        outputs.last_hidden_state, self.lm_head, labels,
        num_items_in_batch=num_items_in_batch, shift_labels=shift_labels, ignore_index=ignore_index,
    )  # fmt: skip
    return CausalLMOutputWithPast(loss=loss, logits=None, hidden_states=outputs.hidden_states, attentions=outputs.attentions)
