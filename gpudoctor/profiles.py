"""Loads the shipped model and GPU profiles (profiles/models, profiles/gpus) and local config.json files.

A model is named by a profile id ("mistral-7b"), its hub id ("mistralai/Mistral-7B-v0.1"), a
local model folder holding config.json, or a config.json path. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from gpudoctor.convert import from_dict
from gpudoctor.errors import BadInput
from gpudoctor.types import GpuSpec, ModelSpec
from gpudoctor.resources import profiles_dir

# config.json keys a decoder-only model must have for the memory model.
REQUIRED_CONFIG_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)


def _profile_files(kind: str) -> dict[str, Path]:
    folder = profiles_dir() / kind
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


@lru_cache(maxsize=None)
def _read_profile(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise BadInput(f"{path}: cannot read this profile ({type(err).__name__})") from None
    if not isinstance(document, dict):
        raise BadInput(f"{path}: a profile must be a mapping of fields")
    return document


def _build(kind: type, document: dict[str, Any], path: Path) -> Any:
    return from_dict(kind, document, str(path))


def list_models() -> list[str]:
    """The ids of the shipped model profiles, sorted."""
    return list(_profile_files("models"))


def list_gpus() -> list[str]:
    """The ids of the shipped GPU profiles, sorted."""
    return list(_profile_files("gpus"))


def load_model(name_or_path: str) -> ModelSpec:
    """A model profile id, a hub id that a profile names, a local model folder or a config.json path."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        config = candidate / "config.json"
        if not config.is_file():
            raise BadInput(f"{candidate}: this folder has no config.json; give a model folder, a config.json or a profile id")
        return model_from_config(config, local_path=str(candidate))
    if candidate.is_file():
        return model_from_config(candidate, local_path=str(candidate.parent))
    files = _profile_files("models")
    if name_or_path in files:
        return _build(ModelSpec, _read_profile(files[name_or_path]), files[name_or_path])
    for path in files.values():
        document = _read_profile(path)
        if str(document.get("hub_id", "")).lower() == name_or_path.lower():
            return _build(ModelSpec, document, path)
    raise BadInput(
        f"unknown model '{name_or_path}'; known profiles: {', '.join(files)}; "
        "or give a local model folder or a config.json path (nothing is downloaded)"
    )


# When config.json leaves tie_word_embeddings out, the architecture's config class decides
# (transformers 5: configuration_<arch>.py); PretrainedConfig's own default is True.
UNTIED_BY_DEFAULT = {"mistral", "mixtral", "llama", "qwen2", "qwen2_moe", "qwen3", "phi", "phi3", "gpt_neox", "olmo2"}


def _tied_by_default(model_type: object) -> bool:
    return str(model_type) not in UNTIED_BY_DEFAULT


def model_from_config(path: Path, local_path: str | None = None) -> ModelSpec:
    """Read the architecture numbers of a Hugging Face config.json (multimodal: its text_config)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read ({type(err).__name__})") from None
    except json.JSONDecodeError as err:
        raise BadInput(f"{path}: not valid JSON (line {err.lineno})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path}: expected a JSON object of model settings")
    if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "model_type": config["text_config"].get("model_type", config.get("model_type"))}
    for key in REQUIRED_CONFIG_KEYS:
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise BadInput(f"{path}: key '{key}' must be a positive integer (found {value!r}); is this a decoder-only LLM's config.json?")
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim")
    for key, value in (("num_key_value_heads", kv_heads), ("head_dim", head_dim)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise BadInput(f"{path}: key '{key}' must be a positive integer (found {value!r})")
    max_positions = config.get("max_position_embeddings") or 4096
    return ModelSpec(
        name=local_path or str(path),
        architecture=str(config.get("model_type") or "unknown"),
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=config["vocab_size"],
        max_position_embeddings=int(max_positions),
        head_dim=head_dim,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", _tied_by_default(config.get("model_type")))),
        hub_id=config.get("_name_or_path") or None,
        local_path=local_path,
        attn_logit_softcapping=config.get("attn_logit_softcapping"),
        final_logit_softcapping=config.get("final_logit_softcapping"),
    )


def load_gpu(name: str) -> GpuSpec:
    """A GPU profile by id ("rtx-4090"); a name a probe would report ("NVIDIA GeForce RTX 4090") also works."""
    files = _profile_files("gpus")
    key = name.strip().lower()
    if key in files:
        return _build(GpuSpec, _read_profile(files[key]), files[key])
    matched = match_gpu(name)
    if matched is not None:
        return matched
    raise BadInput(f"unknown GPU '{name}'; known profiles: {', '.join(files)}; or give --vram-gib N to plan for any card")


def match_gpu(probed_name: str) -> GpuSpec | None:
    """The profile whose `match` substring is the longest found in `probed_name` (case-insensitive)."""
    lowered = probed_name.lower()
    best: tuple[int, Path] | None = None
    for path in _profile_files("gpus").values():
        for needle in _read_profile(path).get("match", []):
            if needle.lower() in lowered and (best is None or len(needle) > best[0]):
                best = (len(needle), path)
    if best is None:
        return None
    return _build(GpuSpec, _read_profile(best[1]), best[1])
