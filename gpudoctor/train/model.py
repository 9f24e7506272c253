"""Find, load and adapt the base model: safetensors only, NF4 via bitsandbytes, LoRA via peft.

Models come from a local folder or the Hugging Face cache (never downloaded here); remote code
runs only when the user passes --trust-remote-code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.settings import Settings

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
ATTENTION = {"sdpa": "sdpa", "eager": "eager", "flash": "flash_attention_2"}


def resolve_model_dir(name_or_path: str) -> Path:
    """A local folder (or its config.json), else a profile's hub id found in the local HF cache."""
    path = Path(name_or_path).expanduser()
    if path.name == "config.json" and path.is_file():
        path = path.parent
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInput(f"{path}: not a model folder (no config.json)")
        return path.resolve()  # absolute, so adapter_config.json's base path works from any folder
    hub_id = name_or_path
    try:
        from gpudoctor.profiles import load_model as load_profile

        hub_id = load_profile(name_or_path).hub_id or name_or_path
    except (ImportError, BadInput):
        pass
    if "/" not in hub_id:
        raise BadInput(f"--model {name_or_path}: not a folder, a known profile or a Hugging Face id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from gpudoctor.resources import hf_hub_cache

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:  # the cache folder gpudoctor.resources names, like every other part of gpudoctor
        return Path(snapshot_download(hub_id, cache_dir=hf_hub_cache(), local_files_only=True, allow_patterns=patterns))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        raise ProblemFound(
            f"--model {name_or_path}: {hub_id} is not in the Hugging Face cache; download it first with `hf download {hub_id}`"
        ) from None


def check_weights(model_dir: Path) -> None:
    if not any(model_dir.glob("*.safetensors")):
        if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
            raise BadInput(f"{model_dir}: only pickle (.bin/.pt) weights; gpudoctor loads safetensors only (convert them first)")
        raise BadInput(f"{model_dir}: no .safetensors weights in the folder")


def load_tokenizer(model_dir: Path, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise BadInput(f"{model_dir}: no usable tokenizer ({str(err).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def device_map() -> dict[str, Any] | None:
    import torch

    if torch.cuda.is_available():
        import os

        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return None


def load_base(model_dir: Path, settings: Settings, *, trust_remote_code: bool = False) -> Any:
    """The base model through the real path: from_pretrained with NF4 quantization (or plain for lora)."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    check_weights(model_dir)
    dtype = getattr(torch, DTYPES[settings.compute_dtype])
    quantization = None
    if settings.method == "qlora" or settings.quant:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings.quant or "nf4",
            bnb_4bit_use_double_quant=settings.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            quantization_config=quantization,
            dtype=dtype,
            attn_implementation=ATTENTION.get(settings.attn, settings.attn),
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            device_map=device_map(),
        )
    except ImportError as err:  # e.g. --attn flash without the flash-attn package
        raise ProblemFound(f"--model {model_dir}: cannot load it with --attn {settings.attn} ({_first_line(err)}); try --attn sdpa") from None
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # unreadable/partial safetensors, remote code refused, unknown architecture
        hint = "; pass --trust-remote-code if you trust its code" if "trust_remote_code" in str(err) else ""
        raise BadInput(f"--model {model_dir}: cannot load the weights ({_first_line(err)}){hint}") from None
    model.config.use_cache = False
    return model


def prepare_for_training(model: Any, *, grad_ckpt: bool) -> Any:
    """Freeze the base and turn on gradient checkpointing, keeping every parameter in its loaded dtype.

    peft's prepare_model_for_kbit_training also casts every parameter that is not 4-bit (embeddings,
    norms, lm_head) to fp32; the embeddings' fp32 output then makes the whole residual stream fp32
    (bitsandbytes' Linear4bit and peft's LoRA layers return their input's dtype), so every gradient
    checkpoint and saved activation costs twice its 16-bit size. Here they stay in the compute dtype
    from_pretrained loaded them in; RMSNorm still does its math in fp32 inside (LlamaRMSNorm and
    MistralRMSNorm upcast, normalise, cast back), and the LoRA adapters are fp32 (peft's
    autocast_adapter_dtype). Modules a model keeps in fp32 (_keep_in_fp32_modules) stay fp32.
    """
    model.requires_grad_(False)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # not needed with use_reentrant=False, harmless, and safe if that changes
    return model


def add_lora(model: Any, settings: Settings) -> Any:
    """prepare_for_training (freeze, checkpointing, no fp32 upcast), a peft LoRA adapter, and the chunked loss."""
    from peft import LoraConfig, get_peft_model

    from gpudoctor.train import loss

    model = prepare_for_training(model, grad_ckpt=settings.grad_ckpt)
    targets = settings.lora_targets
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)  # autocast_adapter_dtype=True: the adapters are fp32
    except ValueError as err:
        raise BadInput(f"--lora-targets {','.join(targets)}: {str(err).splitlines()[0]}") from None
    loss.install(model)  # labelled forwards: chunked cross-entropy (or Liger's fused one), no full logits
    return model
