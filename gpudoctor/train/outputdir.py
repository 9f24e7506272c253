"""The run folder: refuse one that holds a different run, find the newest checkpoint, place the adapter.

A folder belongs to a run when its run.yaml matches (model, data, settings, training; the step
budget may grow on --resume). Everything is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

from gpudoctor.errors import BadInput
from gpudoctor.plan.runconfig import read_run_config
from gpudoctor.settings import RunConfig
from gpudoctor.train import checkpoints

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
GROWABLE = {"max_steps", "epochs"}  # may change on --resume


def _identity(config: RunConfig) -> dict[str, object]:
    training = {k: v for k, v in dataclasses.asdict(config.training).items() if k not in GROWABLE}
    data = str(Path(config.data).resolve()) if config.data else None
    return {"model": config.model, "data": data, "settings": dataclasses.asdict(config.settings), "training": training}


def first_difference(old: RunConfig, new: RunConfig) -> str | None:
    a, b = _identity(old), _identity(new)
    for key in a:
        if isinstance(a[key], dict):
            for sub in a[key]:  # type: ignore[union-attr]
                if a[key][sub] != b[key].get(sub):  # type: ignore[index,union-attr]
                    return f"{key}.{sub}: {a[key][sub]!r} there, {b[key].get(sub)!r} now"  # type: ignore[index,union-attr]
        elif a[key] != b[key]:
            return f"{key}: {a[key]!r} there, {b[key]!r} now"
    return None


def newest_checkpoint(folder: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in (folder / "checkpoints").glob("checkpoint-*") if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def check_output(folder: Path, config: RunConfig, *, resume: bool) -> Path | None:
    """Raise BadInput unless `folder` may hold this run; return the checkpoint to resume from."""
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--output {folder}: is a file, not a folder")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    if not entries:
        if resume:
            raise BadInput(f"--output {folder}: nothing to resume there (no run.yaml); drop --resume to start the run")
        return None
    run_yaml = folder / "run.yaml"
    if not run_yaml.is_file():
        raise BadInput(f"--output {folder}: the folder is not empty and holds no gpudoctor run (no run.yaml); pick an empty or new folder")
    difference = first_difference(read_run_config(run_yaml), config)
    if difference:
        raise BadInput(f"--output {folder}: holds a different run ({difference}); pick another --output or delete the folder")
    choice = checkpoints.resumable(folder)  # the newest complete and loadable one
    checkpoint = choice.checkpoint
    if resume:
        if checkpoint is None:
            why = "; ".join(choice.skipped) or "checkpoints/ is empty"
            raise BadInput(f"--output {folder}: no checkpoint to resume from ({why}); drop --resume to start again")
        return checkpoint
    state = "a finished run" if (folder / "adapter_model.safetensors").is_file() else "an unfinished run"
    hint = f"pass --resume to continue from {checkpoint.name}" if checkpoint else "delete the folder"
    raise BadInput(f"--output {folder}: already holds {state} of this config; {hint}, or pick another --output")


def place_saved(save, folder: Path) -> None:
    """Call save(staging_dir) (a save_pretrained), then move each file into `folder` (each move atomic)."""
    staging = folder / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save(str(staging))
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
