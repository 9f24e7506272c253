"""Every run setting, declared once: name, type, default, allowed values and aliases, range, help.

`Settings` holds the knobs that shape memory (the planner searches the ones left open);
`TrainingOptions` the ones it passes through; `RunConfig` is the run.yaml document of both. Each
field's declaration (`setting(...)`) is the only home of that setting: the `plan` and `train` flags
are built from it (gpudoctor/cli/run_options.py), run.yaml is read and checked through it
(gpudoctor/plan/runconfig.py), and the planner, the memory model and the trainer take the values
`check_values` let through. Imports nothing above gpudoctor.errors.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gpudoctor.errors import BadInput

METHODS = ("qlora", "lora")
COMPUTE_DTYPES = ("bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
ATTENTIONS = ("sdpa", "flash", "eager")
STRATEGIES = ("single", "ddp", "fsdp")
QUANTS = ("nf4", "fp4")
# Who trains, which decides the dtypes of norms, embeddings, lm_head and adapters, the loss and what the
# allocator keeps (gpudoctor/plan/memory.py, recipe_for): gpudoctor's own lean loop, TRL's SFTTrainer,
# Axolotl, Answer.AI's fsdp_qlora.
RECIPES = ("gpudoctor", "trl", "axolotl", "fsdp-qlora")
# transformers.SchedulerType values that need no extra arguments
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt")


@dataclass(frozen=True)
class Declaration:
    """What a setting may be, beyond its type: the metadata of a `setting(...)` field."""

    help: str
    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)  # other names users write → the canonical one
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    whole_from: float | None = None  # from this value up it is a count and must be a whole number
    ceiling: float | None = None  # a technical limit (below it), named only when a value reaches it
    flag: bool = True  # `plan` and `train` take it as --name-with-dashes


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **rules: Any) -> Any:
    """A dataclass field carrying its Declaration (help text, choices, aliases, range)."""
    metadata = {"setting": Declaration(help, **rules)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Settings:
    """Every knob of a run that changes memory; `plan` fills in what the user did not fix."""

    method: str = setting("qlora", "qlora (4-bit NF4 base) or lora (16-bit base).", choices=METHODS)
    quant: str | None = setting("nf4", "4-bit type of the base (None for --method lora).", choices=QUANTS, flag=False)
    double_quant: bool = setting(True, "QLoRA double quantization (the absmax constants in 8 bits).")
    compute_dtype: str = setting("bf16", "bf16, fp16 or fp32 (default: what the hardware runs well).", choices=COMPUTE_DTYPES)
    lora_r: int = setting(16, "LoRA rank.", at_least=1)
    lora_alpha: int = setting(32, "LoRA alpha (default 2 x rank).", at_least=1)
    lora_dropout: float = setting(0.0, "Dropout on the LoRA inputs (default 0; 0.05-0.1 regularises a small dataset).", at_least=0, below=1)
    lora_targets: list[str] = setting(help="all-linear or a comma list: q_proj,v_proj,...", factory=lambda: ["all-linear"])
    seq_len: int = setting(2048, "Tokens per sequence (row).", at_least=16)
    micro_batch: int = setting(1, "Sequences per forward pass per GPU.", at_least=1)
    grad_accum: int = setting(16, "Micro batches per optimizer step.", at_least=1)
    grad_ckpt: bool = setting(True, "Gradient checkpointing.")
    optimizer: str = setting(
        "paged_adamw_8bit", "adamw_torch, adamw_torch_fused, adamw_8bit, paged_adamw_8bit or paged_adamw_32bit.",
        choices=OPTIMIZERS, aliases={"adamw": "adamw_torch", "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit_bnb": "adamw_8bit"},
    )  # fmt: skip
    attn: str = setting("sdpa", "sdpa, flash or eager.", choices=ATTENTIONS, aliases={"flash_attention_2": "flash"})
    packing: bool = setting(True, "Pack short records into full sequences.")
    gpus: int = setting(1, "Number of GPUs (data parallel; >1 trains under accelerate launch).", at_least=1)
    strategy: str = setting("single", "ddp (full copy per GPU) or fsdp (sharded); single for one GPU.", choices=STRATEGIES)
    nodes: int = setting(1, "Machines that train together, --gpus each (world size = gpus x nodes); each runs train with its --node-rank.", at_least=1)
    recipe: str = setting(
        "gpudoctor", "Who trains: gpudoctor (this launcher's lean loop), trl, axolotl or fsdp-qlora; sets the dtypes, the loss and so the memory.",
        choices=RECIPES,
    )  # fmt: skip

    @property
    def world_size(self) -> int:
        """Processes that train together: --gpus on each of --nodes machines (what FSDP shards over and the batch spans)."""
        return self.gpus * self.nodes


@dataclass
class TrainingOptions:
    """The knobs of a run that do not change memory: the planner passes them through."""

    epochs: float = setting(3.0, "Passes over the data.", above=0)
    lr: float = setting(2e-4, "Peak learning rate.", above=0, below=1)
    val_size: float = setting(0.0, "Held-out eval records: a fraction < 1 or a count.", at_least=0, whole_from=1)
    save_steps: int = setting(50, "Checkpoint every N optimizer steps.", at_least=1)
    seed: int = setting(42, "Seed for weights, data order and the eval split.", at_least=0, ceiling=2**32)  # numpy's seed range
    warmup_ratio: float = setting(0.03, "Share of the steps that warm the learning rate up.", at_least=0, below=1)
    lr_scheduler: str = setting("cosine", "Learning-rate schedule: " + ", ".join(LR_SCHEDULERS) + ".", choices=LR_SCHEDULERS)
    max_steps: int | None = setting(None, "Stop after N optimizer steps.", at_least=1)
    logging_steps: int = setting(1, "Log the loss every N optimizer steps.", at_least=1)
    node_rank: int = setting(0, "With --nodes: this machine's place, 0 (the main node, which writes the run) to nodes-1.", at_least=0)
    main_addr: str | None = setting(None, "With --nodes: the address of node 0, which every node can reach.")
    main_port: int | None = setting(None, "The rendezvous port on node 0 (default: 29500 with --nodes, else a free one).", at_least=1, below=65536)
    join_timeout: float = setting(300.0, "Seconds to wait for every process and node to join before giving up.", above=0)


@dataclass
class RunConfig:
    """The document `plan --emit gpudoctor` writes and `gpudoctor train run.yaml` reads."""

    model: str  # profile name, local folder or config.json path
    data: str | None = None
    output: str | None = None
    settings: Settings = field(default_factory=Settings)
    training: TrainingOptions = field(default_factory=TrainingOptions)


@dataclass(frozen=True)
class Declared:
    """One declared setting as the CLI and the checks see it."""

    name: str
    section: str  # "settings" | "training"
    kind: Any  # the field's type hint
    default: Any
    rules: Declaration

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@lru_cache(maxsize=None)
def declared(kind: type) -> tuple[Declared, ...]:
    """The Declared settings of Settings or TrainingOptions, in field order."""
    section = {Settings: "settings", TrainingOptions: "training"}[kind]
    hints = typing.get_type_hints(kind)
    out = []
    for f in dataclasses.fields(kind):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(Declared(f.name, section, hints[f.name], default, f.metadata["setting"]))
    return tuple(out)


def declaration(name: str) -> Declared:
    for kind in (Settings, TrainingOptions):
        for item in declared(kind):
            if item.name == name:
                return item
    raise KeyError(name)


def check_values(values: Mapping[str, Any], kind: type, where: Callable[[str], str] = lambda name: declaration(name).flag) -> dict[str, Any]:
    """`values` (a subset of `kind`'s settings) with aliases resolved and ints made floats where
    declared so. An unknown name, a wrong type, a value outside its choices or range is one BadInput
    naming the setting as `where(name)` does (its flag by default; run.yaml names file and key)."""
    from gpudoctor.convert import is_instance, type_name

    by_name = {item.name: item for item in declared(kind)}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        item = by_name.get(name)
        if item is None:
            raise BadInput(f"unknown setting '{name}'; known settings: {', '.join(sorted(by_name))}")
        if not _type_ok(item.kind, value, is_instance):
            raise BadInput(f"{where(name)} has the wrong type ({value!r}); expected {type_name(item.kind)}")
        checked[name] = _checked(item, value, where(name))
    return checked


def _type_ok(kind: Any, value: Any, is_instance: Callable[[Any, Any], bool]) -> bool:
    origin = typing.get_origin(kind)
    if origin is list:
        return isinstance(value, list) and all(is_instance(v, typing.get_args(kind)[0]) for v in value)
    if origin is not None:  # X | None
        return any(_type_ok(arg, value, is_instance) for arg in typing.get_args(kind))
    return is_instance(value, kind)


def _checked(item: Declared, value: Any, label: str) -> Any:
    rules = item.rules
    if value is None:
        return None
    if isinstance(value, str) and rules.choices:
        value = rules.aliases.get(value, value)
        if value not in rules.choices:
            raise BadInput(f"{label}: unknown value '{value}'; use one of {', '.join(rules.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(value, rules):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise BadInput(f"{label}: must be {range_text(rules)} (got {shown})")
    if rules.ceiling is not None and isinstance(value, (int, float)) and value >= rules.ceiling:
        raise BadInput(f"{label}: must be below {_number(rules.ceiling)} (got {value})")
    if rules.whole_from is not None and isinstance(value, (int, float)) and value >= rules.whole_from and value != int(value):
        raise BadInput(f"{label}: a count must be a whole number and a fraction below {_number(rules.whole_from)} (got {value:g})")
    if isinstance(value, list) and not value:
        raise BadInput(f"{label}: give at least one value")
    if item.kind is float and isinstance(value, int):
        value = float(value)
    return value


def _in_range(value: float, rules: Declaration) -> bool:
    return (
        math.isfinite(value)
        and (rules.at_least is None or value >= rules.at_least)
        and (rules.above is None or value > rules.above)
        and (rules.below is None or value < rules.below)
    )


def range_text(rules: Declaration) -> str:
    """The allowed range in words: "at least 0 and below 1"."""
    parts = []
    if rules.at_least is not None:
        parts.append(f"at least {_number(rules.at_least)}")
    if rules.above is not None:
        parts.append(f"more than {_number(rules.above)}")
    if rules.below is not None:
        parts.append(f"below {_number(rules.below)}")
    return " and ".join(parts) or "a finite number"


def _number(bound: float) -> str:
    """A bound as people write it: 4294967296 rather than 4.29497e+09, 0.5 as 0.5."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e16 else f"{bound:g}"


def settings_from(given: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """`base` (default Settings()) with the `given` values, and what follows from them where not given:
    lora_alpha is 2 x lora_r, quant follows the method (nf4 for qlora, none for lora), one process
    (one GPU on one node) trains "single" and several never do."""
    given = {key: value for key, value in given.items() if value is not None}
    settings = dataclasses.replace(base or Settings(), **{k: list(v) if isinstance(v, list) else v for k, v in given.items()})
    if "lora_r" in given and "lora_alpha" not in given:
        settings.lora_alpha = 2 * settings.lora_r
    if "method" in given and "quant" not in given:
        settings.quant = "nf4" if settings.method == "qlora" else None
    if settings.method == "lora":
        settings.quant = None
    if settings.world_size == 1:
        settings.strategy = "single"
    elif settings.strategy == "single":
        settings.strategy = "ddp"
    return settings


def training_from(given: Mapping[str, Any], base: TrainingOptions | None = None) -> TrainingOptions:
    """`base` (default TrainingOptions()) with the `given` values (None means: not given)."""
    return dataclasses.replace(base or TrainingOptions(), **{k: v for k, v in given.items() if v is not None})
