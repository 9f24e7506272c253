"""Read and write run.yaml: the settings `plan` chose plus the training options, for `train`.

Unknown keys and wrong types are errors that name the file and the key (exit 2), so a typo in a
hand-edited run.yaml never trains with a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from gpudoctor.atomic import write_text
from gpudoctor.errors import BadInput
from gpudoctor.plan.types import RunConfig, Settings, TrainingOptions

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


def _section(kind: type, values: Any, path: str, section: str) -> Any:
    if values is None:
        return kind()
    if not isinstance(values, dict):
        raise BadInput(f"{path}: '{section}' must be a mapping of settings, got {type(values).__name__}")
    hints = typing.get_type_hints(kind)
    known = {f.name for f in dataclasses.fields(kind)}
    for key, value in values.items():
        if key not in known:
            raise BadInput(f"{path}: unknown key '{section}.{key}'; known keys: {', '.join(sorted(known))}")
        if not _type_ok(hints[key], value):
            raise BadInput(f"{path}: '{section}.{key}' has the wrong type ({value!r}); expected {hints[key]}")
    return kind(**values)


def _type_ok(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def read_run_config(path: str | Path) -> RunConfig:
    """Parse run.yaml; every problem is a one-line BadInput naming the file and key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{source}: no such file") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"{source}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BadInput(f"{source}: cannot read ({err.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{source}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise BadInput(f"{source}: expected a mapping with 'model' and 'settings', got {type(document).__name__}")
    unknown = set(document) - {"model", "data", "output", "settings", "training"}
    if unknown:
        raise BadInput(f"{source}: unknown key '{sorted(unknown)[0]}'; known keys: data, model, output, settings, training")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise BadInput(f"{source}: 'model' must name a profile, a model folder or a config.json")
    for key in ("data", "output"):
        if document.get(key) is not None and not isinstance(document[key], str):
            raise BadInput(f"{source}: '{key}' must be a path")
    return RunConfig(
        model=model,
        data=document.get("data"),
        output=document.get("output"),
        settings=_section(Settings, document.get("settings"), source, "settings"),
        training=_section(TrainingOptions, document.get("training"), source, "training"),
    )
