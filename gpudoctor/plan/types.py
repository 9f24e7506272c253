"""The values the planner takes and returns: model and GPU specs, hardware, settings, plan.

Plain dataclasses, printable as JSON (`dataclasses.asdict`). Byte counts are ints; GiB = 1024**3.
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


@dataclass
class Hardware:
    """What the plan is for: a probed card, a named profile, or the CPU."""

    device: str  # "cuda" | "rocm" | "cpu"
    name: str
    budget_bytes: int  # usable memory per GPU (or RAM for the CPU)
    gpus: int = 1
    bf16: bool = False
    flash_attn: bool = False
    peak_tflops: float | None = None
    source: str = "profile"  # "probe" | "profile" | "override" | "cpu"


@dataclass
class Settings:
    """Every knob of a run; `plan` fills in what the user did not fix."""

    method: str = "qlora"  # "qlora" | "lora"
    quant: str | None = "nf4"  # None for bf16 lora
    double_quant: bool = True
    compute_dtype: str = "bf16"  # "bf16" | "fp16" | "fp32"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # 0 keeps no dropped copy of each LoRA input (Unsloth and LLaMA-Factory default)
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])
    seq_len: int = 2048
    micro_batch: int = 1
    grad_accum: int = 16
    grad_ckpt: bool = True
    optimizer: str = "paged_adamw_8bit"
    attn: str = "sdpa"  # "sdpa" | "flash" | "eager"
    packing: bool = False
    gpus: int = 1
    strategy: str = "single"  # "single" | "ddp" | "fsdp"


@dataclass
class MemoryEstimate:
    breakdown_bytes: dict[str, int]
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    budget_bytes: int


@dataclass
class TimeEstimate:
    tokens_per_s: float
    hours: float
    tokens_total: int
    utilisation: float  # the assumed fraction of peak FLOP/s (MFU)
    tokens_basis: str = "data"  # "data": the dataset's tokens x epochs; "reference": a stated round figure


@dataclass
class DataCoverage:
    """How the chosen seq_len covers a dataset's token lengths."""

    records: int
    percentile: float  # the share of records the planner aimed to keep whole, e.g. 0.99
    covering_seq_len: int  # the length that keeps that share whole
    cut_records: int  # records longer than the chosen seq_len (truncated)
    longest: int
    tokenizer: str


@dataclass
class Plan:
    model: ModelSpec
    hardware: Hardware
    settings: Settings
    memory: MemoryEstimate
    fits: bool
    estimate: TimeEstimate | None = None
    notes: list[str] = field(default_factory=list)  # why each choice was made
    not_counted: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)  # what would fit, when it does not
    coverage: DataCoverage | None = None  # with --data: how seq_len covers the records
    effective_batch: int = 16  # sequences per optimizer step = micro_batch x grad_accum x gpus


@dataclass
class DataStats:
    """What the planner needs to know about a dataset: one token count per record."""

    path: str
    records: int
    token_lengths: list[int]  # prompt + response tokens per record
    tokenizer: str  # "tokenizer.json of <path>" or "approximation: <rule>"


@dataclass
class TrainingOptions:
    """The knobs of a run that do not change memory: the planner passes them through."""

    epochs: float = 3.0
    lr: float = 2e-4
    val_size: float = 0.0  # fraction (<1) or count (>=1) of records held out for eval
    save_steps: int = 50
    seed: int = 42
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_steps: int | None = None  # stop early (tests, smoke runs)
    logging_steps: int = 1


@dataclass
class RunConfig:
    """The document `plan --emit gpudoctor` writes and `gpudoctor train run.yaml` reads."""

    model: str  # profile name, local folder or config.json path
    data: str | None
    output: str | None
    settings: Settings
    training: TrainingOptions = field(default_factory=TrainingOptions)
