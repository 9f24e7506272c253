"""The vocabulary of models and cards every layer shares: ModelSpec, GpuSpec, and the GiB unit.

A leaf module: it imports nothing from gpudoctor. Plain dataclasses, printable as JSON
(`dataclasses.asdict`) and built from profiles and config.json files by gpudoctor.profiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3


@dataclass
class ModelSpec:
    """Architecture numbers as in a Hugging Face config.json, plus where the weights live."""

    name: str
    architecture: str  # model_type: "mistral", "llama", "qwen2", "phi3", "gemma2", ...
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    tie_word_embeddings: bool = False
    hub_id: str | None = None
    licence: str | None = None
    local_path: str | None = None  # a local model folder, when --model named one
    attn_logit_softcapping: float | None = None  # Gemma 2: SDPA kernels cannot soft-cap, train with eager/flash
    final_logit_softcapping: float | None = None  # Gemma 2: tanh over the logits adds a copy of them


@dataclass
class GpuSpec:
    name: str  # profile id: "rtx-4090"
    display_name: str  # "NVIDIA GeForce RTX 4090"
    vendor: str  # "nvidia" | "amd"
    architecture: str  # "ada", "ampere", "hopper", "rdna3", ...
    vram_gib: float
    bf16: bool
    flash_attn_train: bool
    peak_bf16_tflops: float  # dense, no sparsity
    match: list[str] = field(default_factory=list)  # substrings of probed names that mean this card
