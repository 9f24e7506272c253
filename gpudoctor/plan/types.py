"""The values the planner takes and returns: the hardware it plans for, the memory and time
estimates, and the Plan. ModelSpec and GpuSpec live in gpudoctor.types, the settings in
gpudoctor.settings, DataStats in gpudoctor.data.stats.

Plain dataclasses, printable as JSON (`dataclasses.asdict`). Byte counts are ints; GiB = 1024**3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpudoctor.settings import Settings
from gpudoctor.types import ModelSpec


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


