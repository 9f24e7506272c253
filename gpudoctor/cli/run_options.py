"""The run-setting flags of `plan` and `train`, built from the one declaration of each setting.

`@run_setting_flags` gives a command one typer option per field of gpudoctor.settings.Settings
and TrainingOptions (name, type, help and choices come from there), plus the hardware flags
--gpu and --vram-gib; the command receives them checked, as one `RunFlags` value.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import typer

from gpudoctor.errors import BadInput
from gpudoctor.settings import Declared, Settings, TrainingOptions, check_values, declared

HARDWARE_OPTIONS = {
    "gpu": (Optional[str], typer.Option(None, "--gpu", help="Plan for: auto (probe this machine, the default), cpu, or a GPU profile id such as rtx-4090.")),
    "vram_gib": (Optional[float], typer.Option(None, "--vram-gib", help="Plan for this many GiB per GPU instead of the card's memory.")),
}


@dataclass
class RunFlags:
    """What the user gave on the command line (None: not given), checked against the declarations."""

    settings: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    gpu: str | None = None
    vram_gib: float | None = None


def _flag_items() -> list[Declared]:
    return [item for kind in (Settings, TrainingOptions) for item in declared(kind) if item.rules.flag]


def _option(item: Declared) -> tuple[Any, Any]:
    """The annotation and typer.Option of one declared setting (always optional: None = not given)."""
    kind = item.kind
    origin = typing.get_origin(kind)
    if origin is list:
        kind = str  # a comma list on the command line
    elif origin is not None:  # X | None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    help_text = item.rules.help
    if item.section == "training":
        help_text += f" [default: {item.default}]"
    if kind is bool:
        return Optional[bool], typer.Option(None, f"{item.flag}/--no-{item.flag[2:]}", help=help_text, show_default=False)
    return Optional[kind], typer.Option(None, item.flag, help=help_text, show_default=False)


def run_setting_flags(command: Any) -> Any:
    """Add the declared run-setting flags to `command`, which takes them as `flags: RunFlags`."""
    hints = typing.get_type_hints(command)
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(command).parameters.values() if p.name != "flags"]
    added = {item.name: _option(item) for item in _flag_items()} | HARDWARE_OPTIONS
    parameters = own + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation) for name, (annotation, option) in added.items()]

    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        given = {name: values.pop(name) for name in added}
        return command(**values, flags=parse_flags(given))

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must read the signature above, not the command's own
    return wrapper


def parse_flags(given: dict[str, Any]) -> RunFlags:
    """The raw option values (None: not given) as checked settings; lora targets split on commas."""
    values = {name: value for name, value in given.items() if value is not None}
    if "lora_targets" in values:
        values["lora_targets"] = lora_targets(values["lora_targets"])
    settings = {item.name: values[item.name] for item in declared(Settings) if item.name in values}
    training = {item.name: values[item.name] for item in declared(TrainingOptions) if item.name in values}
    if given.get("vram_gib") is not None and not given["vram_gib"] > 0:
        raise BadInput(f"--vram-gib: must be more than 0 (got {given['vram_gib']:g})")
    return RunFlags(check_values(settings, Settings), check_values(training, TrainingOptions), given.get("gpu"), given.get("vram_gib"))


def lora_targets(value: str) -> list[str]:
    targets = [part.strip() for part in value.split(",") if part.strip()]
    if not targets:
        raise BadInput("--lora-targets: give all-linear or a comma list such as q_proj,v_proj")
    return targets
