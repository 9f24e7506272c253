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


def resolve_model_dir(name_or_path: str, what: str | None = None) -> Path:
    """A local folder (or its config.json), else a profile's hub id found in the local HF cache.
    `what` names where the name came from in messages (default: `--model NAME`)."""
    what = what or f"--model {name_or_path}"
    path = Path(name_or_path).expanduser()
    if path.name == "config.json" and path.is_file():
        path = path.parent
    if path.is_dir():
        read_config(path)
        return path.resolve()  # absolute, so adapter_config.json's base path works from any folder
    if path.exists():
        raise BadInput(f"{what}: {path} is a file, not a model folder; give the folder holding config.json and the weights")
    if looks_like_path(name_or_path):
        raise BadInput(f"{what}: no such folder {path}; give the model folder (config.json, *.safetensors, tokenizer files)")
    hub_id = name_or_path
    try:
        from gpudoctor.profiles import load_model as load_profile

        hub_id = load_profile(name_or_path).hub_id or name_or_path
    except (ImportError, BadInput):
        pass
    if "/" not in hub_id:
        raise BadInput(f"{what}: not a folder, a known profile or a Hugging Face id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from gpudoctor.resources import hf_hub_cache
    from gpudoctor.train.pull import ALLOW_PATTERNS, IGNORE_PATTERNS  # the files `gpudoctor pull` fetches

    try:  # the cache folder gpudoctor.resources names, like every other part of gpudoctor
        return Path(snapshot_download(hub_id, cache_dir=hf_hub_cache(), local_files_only=True, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        raise ProblemFound(f"{what}: {hub_id} is not in the Hugging Face cache; download it first with `hf download {hub_id}` or `gpudoctor pull {name_or_path}` (checks disk and access first)") from None


def looks_like_path(name: str) -> bool:
    """A name only a path would be (/abs, ./rel, ~/x, C:\\x), never a Hugging Face id (owner/name)."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name in (".", "..") or (len(name) > 2 and name[1] == ":" and name[2] in "/\\")


def read_config(model_dir: Path) -> dict[str, Any]:
    """The folder's config.json as a dict; BadInput when it is missing, unreadable or not a JSON object."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise BadInput(f"{model_dir}: not a model folder (no config.json); give the folder holding config.json and the weights")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read it ({_first_line(err)})") from None
    except ValueError as err:
        raise BadInput(f"{path}: not valid JSON ({_first_line(err)}); download the model again") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path}: expected a JSON object of model settings, got {type(config).__name__}")
    return config


def position_limit(model_dir: Path) -> int | None:
    """The longest sequence the model was built for (max_position_embeddings or its aliases), if it says."""
    config = read_config(model_dir)
    for section in (config, config.get("text_config") or {}):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_seq_len(model_dir: Path, seq_len: int) -> None:
    """seq_len within what the model's position embeddings cover (BadInput, exit 2)."""
    limit = position_limit(model_dir)
    if limit is not None and seq_len > limit:
        raise BadInput(
            f"seq_len {seq_len} (--seq-len, or settings.seq_len in run.yaml): longer than the {limit} positions "
            f"{model_dir / 'config.json'} allows (max_position_embeddings); use {limit} or less"
        )


def check_weights(model_dir: Path) -> None:
    """Safetensors weights present, every shard the index names there, each file whole (header and size)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
            raise BadInput(f"{model_dir}: only pickle (.bin/.pt) weights; gpudoctor loads safetensors only (convert them first)")
        raise BadInput(f"{model_dir}: no .safetensors weights in the folder")
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise BadInput(f"{index}: damaged (not a JSON object with a weight_map); download the model again") from None
        missing = [name for name in shards if not (model_dir / str(name)).is_file()]
        if missing:
            raise BadInput(f"{model_dir}: {len(missing)} weight shard(s) named in {index.name} are missing, first {missing[0]}; finish the download")
    for path in files:
        problem = safetensors_problem(path)
        if problem:
            raise BadInput(f"{path}: cannot load the weights ({problem}); download or copy the model again")


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a whole safetensors file (an 8-byte header length, a JSON header, the tensors end
    to end), or None. Reads the header only, so it is cheap for a 15 GB shard."""
    import struct

    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"not a safetensors file ({size} bytes)"
            (length,) = struct.unpack("<Q", head)
            if handle.read(1) != b"{":
                return f"not a safetensors file ({size} bytes, no JSON header)"
            handle.seek(8)
            if 8 + length > size:
                return f"truncated ({size} bytes; its header alone says {8 + length})"
            header = json.loads(handle.read(length))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except OSError as err:
        return f"cannot be read ({err.strerror or _first_line(err)})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "damaged (its header does not parse)"
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{'truncated' if size < expected else 'damaged'} ({size} bytes; its header says {expected})"
    return None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt", "tiktoken.model")


def check_tokenizer_files(model_dir: Path) -> None:
    """A tokenizer to load: one of the files tokenizers are saved as (BadInput naming the folder)."""
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise BadInput(f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])} or vocab.json); copy them from the model's repository")


def load_tokenizer(model_dir: Path, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    check_tokenizer_files(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as err:  # OSError, ValueError, the tokenizers library's bare Exception for a damaged file
        raise BadInput(f"{model_dir}: no usable tokenizer ({_first_line(err)})") from None
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


def load_base(model_dir: Path, settings: Settings, *, trust_remote_code: bool = False, what: str | None = None) -> Any:
    """The base model through the real path: from_pretrained with NF4 quantization (or plain for lora).
    `what` names the model in messages (default `--model DIR`, train's flag; chat says `base DIR`)."""
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
            bnb_4bit_quant_storage=dtype if settings.strategy == "fsdp" else torch.uint8,  # FSDP shards float tensors only: the 4-bit weights packed in the compute dtype
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
            device_map=None if settings.strategy == "fsdp" else device_map(),  # FSDP-QLoRA: loaded on the CPU, sharded onto the GPUs by accelerate
        )
    except ImportError as err:  # e.g. --attn flash without the flash-attn package
        hint = "try --attn sdpa" if what is None else "set attn: sdpa in the run folder's run.yaml"
        raise ProblemFound(f"{what or f'--model {model_dir}'}: cannot load it with {'--attn' if what is None else 'attn'} {settings.attn} ({_first_line(err)}); {hint}") from None
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # unreadable/partial safetensors, remote code refused, unknown architecture
        hint = "; pass --trust-remote-code if you trust its code" if "trust_remote_code" in str(err) else ""
        raise BadInput(f"{what or f'--model {model_dir}'}: cannot load the weights ({_first_line(err)}){hint}") from None
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
