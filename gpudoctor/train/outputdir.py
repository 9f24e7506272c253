"""The run folder: refuse one that holds a different run, find the newest checkpoint, place the adapter.

A folder belongs to a run when its run.yaml matches (model, data, settings, training; the step
budget may grow on --resume). Everything is checked before anything is written.

A failed start (run.yaml and the first writes of a start there, but nothing trained: no
checkpoint-N, no adapter, no last-good weights) does not hold the folder: a new start replaces
it, with a line saying so, so the corrected command is not refused as "a different run". On
--resume the data and the settings that order it (ORDER_KEYS) may change only with
--resume-changed-data.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from gpudoctor.atomic import safetensors_follow_umask
from gpudoctor.errors import BadInput
from gpudoctor.plan.runconfig import read_run_config
from gpudoctor.settings import RunConfig
from gpudoctor.train import checkpoints
from gpudoctor.train.runfolder import DATA_RECORD

GROWABLE = {"max_steps", "epochs"}  # may change on --resume
# what decides which rows a step draws: with --resume-changed-data these may change on --resume
ORDER_KEYS = {"data", "settings.seq_len", "settings.packing", "training.seed", "training.val_size"}


def _identity(config: RunConfig) -> dict[str, object]:
    training = {k: v for k, v in dataclasses.asdict(config.training).items() if k not in GROWABLE}
    data = str(Path(config.data).resolve()) if config.data else None
    return {"model": config.model, "data": data, "settings": dataclasses.asdict(config.settings), "training": training}


def differences(old: RunConfig, new: RunConfig) -> list[tuple[str, str]]:
    """(key, 'key: old there, new now') for every identity value that differs, in run.yaml's order."""
    a, b, found = _identity(old), _identity(new), []
    for key in a:
        if isinstance(a[key], dict):
            for sub in a[key]:  # type: ignore[union-attr]
                if a[key][sub] != b[key].get(sub):  # type: ignore[index,union-attr]
                    found.append((f"{key}.{sub}", f"{key}.{sub}: {a[key][sub]!r} there, {b[key].get(sub)!r} now"))  # type: ignore[index,union-attr]
        elif a[key] != b[key]:
            found.append((key, f"{key}: {a[key]!r} there, {b[key]!r} now"))
    return found


def first_difference(old: RunConfig, new: RunConfig, *, ignore: set[str] | frozenset[str] = frozenset()) -> str | None:
    return next((text for key, text in differences(old, new) if key not in ignore), None)


def failed_start(folder: Path) -> bool:
    """A start that got as far as its first writes (run-data.json, cache/ or tb/ beside run.yaml) and trained
    nothing: no checkpoint-N (whole or not), no adapter, no last-good weights. A lone run.yaml may be the
    user's own (from `plan --emit`), so it does not count."""
    if not any((folder / name).exists() for name in (DATA_RECORD, "cache", "tb")):
        return False
    saved = folder / "checkpoints"
    if saved.is_dir() and any(p.name.startswith("checkpoint-") for p in saved.iterdir()):
        return False
    return not (folder / "adapter_model.safetensors").exists() and not any(folder.glob("last-good-step-*"))


def check_output(
    folder: Path, config: RunConfig, *, resume: bool, allow_changed_data: bool = False, notes: list[str] | None = None
) -> checkpoints.Choice:
    """Raise BadInput unless `folder` may hold this run; return the checkpoint to resume from (None for a
    new start) with why newer ones were passed over, verified once (checkpoints.announce says it later).

    A failed start is replaced (the line saying so goes to `notes`); `allow_changed_data` lets
    --resume go on with other data or another data order (ORDER_KEYS)."""
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--output {folder}: is a file, not a folder; pick another --output")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    if not entries:
        if resume:
            raise BadInput(f"--output {folder}: nothing to resume there (no run.yaml); drop --resume to start the run")
        return checkpoints.Choice(None)
    run_yaml = folder / "run.yaml"
    if not run_yaml.is_file():
        raise BadInput(f"--output {folder}: the folder is not empty and holds no gpudoctor run (no run.yaml); pick an empty or new folder")
    if not resume and failed_start(folder):
        if notes is not None:
            notes.append(f"--output {folder}: replacing a failed start (its run.yaml trained nothing: no checkpoint, no adapter)")
        return checkpoints.Choice(None)
    old = read_run_config(run_yaml)
    difference = first_difference(old, config, ignore=ORDER_KEYS if resume else frozenset())
    if difference:
        raise BadInput(f"--output {folder}: holds a different run ({difference}); pick another --output or delete the folder")
    difference = first_difference(old, config) if resume and not allow_changed_data else None
    if difference:
        raise BadInput(
            f"--resume {folder}: the data or its order changed ({difference}); restore it, or pass "
            "--resume-changed-data to go on with the epoch restarting on the new data"
        )
    choice = checkpoints.resumable(folder)  # the newest complete and loadable one
    checkpoint = choice.checkpoint
    if resume:
        if checkpoint is None:
            why = "; ".join(choice.skipped) or "checkpoints/ is empty"
            raise BadInput(f"--output {folder}: no checkpoint to resume from ({why}); drop --resume to start again")
        return choice
    state = "a finished run" if (folder / "adapter_model.safetensors").is_file() else "an unfinished run"
    hint = f"pass --resume to continue from {checkpoint.name}" if checkpoint else "delete the folder"
    raise BadInput(f"--output {folder}: already holds {state} of this config; {hint}, or pick another --output")


def place_saved(save, folder: Path) -> None:
    """Call save(staging_dir) (a save_pretrained), then move each file into `folder` (each move atomic);
    its safetensors files get the umask's mode like the rest."""
    staging = folder / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    safetensors_follow_umask()
    try:
        save(str(staging))
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
