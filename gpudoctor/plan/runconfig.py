"""Read and write run.yaml: the settings `plan` chose plus the training options, for `train`.

The document is read through the one converter (gpudoctor.convert) and every value is checked
against its declaration (gpudoctor.settings): an unknown key, a wrong type or a value out of range
is an error that names the file and the key (exit 2), so a typo in a hand-edited run.yaml never
trains with a silently ignored or impossible setting.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from gpudoctor.atomic import write_text
from gpudoctor.convert import from_dict
from gpudoctor.errors import BadInput
from gpudoctor.settings import RunConfig, Settings, TrainingOptions, check_values, declared, settings_from, training_from

# YAML 1.1 (PyYAML) reads 1e-4 and 2E5 as strings: only 1.0e-4 is a float there. People write 1e-4.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

HEADER = "# gpudoctor run config: train with `gpudoctor train {path}`\n"


def dump_run_config(config: RunConfig) -> str:
    """The YAML text of `config`, keys in a stable order."""
    document = {
        "model": config.model,
        "data": config.data,
        "output": config.output,
        "settings": dataclasses.asdict(config.settings),
        "training": dataclasses.asdict(config.training),
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def write_run_config(config: RunConfig, path: str | Path) -> Path:
    return write_text(path, HEADER.format(path=path) + dump_run_config(config))


def read_run_config(path: str | Path) -> RunConfig:
    """Parse run.yaml; every problem is a one-line BadInput naming the file and key."""
    source = str(path)
    document = _load_yaml(Path(path), source)
    if not isinstance(document, dict):
        raise BadInput(f"{source}: expected a mapping with 'model' and 'settings', got {type(document).__name__}")
    if not isinstance(document.get("model"), str) or not document["model"]:
        raise BadInput(f"{source}: 'model' must name a profile, a model folder or a config.json")
    document = {**document, "settings": _numbers(document.get("settings") or {}, Settings), "training": _numbers(document.get("training") or {}, TrainingOptions)}
    config = from_dict(RunConfig, document, source)  # unknown keys and wrong types, named by their path

    def where(section: str):
        return lambda name: f"{source}: '{section}.{name}'"

    settings = check_values(document["settings"], Settings, where("settings"))
    training = check_values(document["training"], TrainingOptions, where("training"))
    return dataclasses.replace(config, settings=settings_from(settings), training=training_from(training))


def _numbers(section: Any, kind: type) -> Any:
    """`section` with 1e-4-style strings of float settings read as the numbers they are."""
    if not isinstance(section, dict):
        return section  # from_dict names the wrong type
    floats = {item.name for item in declared(kind) if item.kind is float or float in typing.get_args(item.kind)}
    return {
        key: float(value) if key in floats and isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()) else value
        for key, value in section.items()
    }


def _load_yaml(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{source}: no such file") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"{source}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BadInput(f"{source}: cannot read ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{source}: not valid YAML{where}") from None
