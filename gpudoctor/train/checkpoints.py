"""Crash-safe checkpoints: written aside, sealed, renamed into place; verified before a resume.

The Trainer writes checkpoint-N into checkpoints/.saving-checkpoint-N/ (trainer.CrashSafeSaves);
when every file is written they are fsync'd, a completion marker (MARKER: each file's size) is
written last and fsync'd, and the folder is renamed to checkpoints/checkpoint-N. A checkpoint-N
folder is therefore whole or absent, whatever moment a SIGKILL or a power cut comes at; what a
crash leaves (a .saving-… or .discarding-… folder) is removed when the next run starts, saying so.

`resumable` picks the newest checkpoint that is complete (its marker, each file at the size the
marker lists) and loadable (safetensors headers parse and cover the file, torch pickles are whole
zip archives that open, trainer_state.json parses), with a one-line reason for each newer one it
passed over. Rotation (save_total_limit) counts complete checkpoints only and deletes by renaming
first, so it never leaves half a checkpoint and never removes the only complete one.

Nothing here imports torch: the output folder is checked before the training stack loads (torch pickles
are read with a stand-in for every class they name, which runs nothing).
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpudoctor.errors import ProblemFound
from gpudoctor.train.model import safetensors_problem

MARKER = "gpudoctor-checkpoint.json"  # written last: {"step": N, "files": {name: bytes}}
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
LEFTOVER = re.compile(r"^\.(saving|discarding)-checkpoint-(\d+)$")  # only ever written by us
PICKLES = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth)$")
NEEDED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")  # what a resume loads besides the weights
WEIGHTS = ("adapter_model.safetensors", "model.safetensors")
MIB = 1024**2


@dataclass
class Choice:
    """The checkpoint a --resume uses (None: none usable) and why each newer one was passed over."""

    checkpoint: Path | None
    skipped: list[str] = field(default_factory=list)


def step_of(path: Path) -> int | None:
    match = CHECKPOINT.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def listed(checkpoints: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-N folder, newest first."""
    if not checkpoints.is_dir():
        return []
    found = [(step, path) for path in checkpoints.iterdir() if (step := step_of(path)) is not None]
    return sorted(found, reverse=True)


# What makes a checkpoint usable.


def problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, in a few words naming the file; None when it can."""
    try:
        marker = folder / MARKER
        if marker.is_file():
            sizes = read_marker(marker)
            if sizes is None:
                return f"its {MARKER} does not parse"
            wrong = wrong_size(folder, sizes)
        else:
            missing = [name for name in NEEDED if not (folder / name).is_file()]
            if missing:
                return f"no completion marker and no {missing[0]}: its save never finished"
            wrong = None  # saved before gpudoctor sealed its checkpoints: judged by its files alone
        return wrong or unloadable(folder)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"


def read_marker(marker: Path) -> dict[str, int] | None:
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
        return None
    return files


def wrong_size(folder: Path, sizes: dict[str, int]) -> str | None:
    for name, size in sizes.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name} is {actual} bytes, {size} were saved (truncated or changed)"
    return None


def unloadable(folder: Path) -> str | None:
    """The first file a resume would fail to load, with why."""
    weights = [folder / name for name in WEIGHTS if (folder / name).is_file()]
    if not weights:
        return f"no {WEIGHTS[0]}"
    for path in weights:
        if why := safetensors_problem(path):
            return f"{path.name} {why}"
    for path in sorted(folder.iterdir()):
        if PICKLES.match(path.name) and (why := bad_pickle(path)):
            return f"{path.name} {why}"
    for name in ("trainer_state.json", "adapter_config.json"):
        path = folder / name
        if path.is_file() and (why := bad_json(path)):
            return f"{name} {why}"
    return None


def bad_pickle(path: Path) -> str | None:
    """A torch.save file is a zip archive (central directory at its end, CRC per record) holding a pickle
    (data.pkl) whose tensors are the archive's data/<key> records."""
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickled = next((name for name in names if name.endswith("data.pkl")), None)
            if pickled is None:
                return "is not a torch checkpoint (no data.pkl)"
            broken = archive.testzip()
            if broken:
                return f"is damaged (record {broken} fails its CRC)"
            return unpicklable(archive.read(pickled), pickled[: -len("data.pkl")], set(names))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        return f"is truncated or damaged ({err})"


class _Stub:
    """Whatever class or function a pickle names: built, called and filled with anything, running nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Stub:
        return _Stub()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass


class _Walk(pickle.Unpickler):
    """Reads a torch pickle without torch and without importing anything it names; collects the storage keys."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.keys: list[str] = []

    def find_class(self, module: str, name: str) -> type:
        return _Stub

    def persistent_load(self, pid: object) -> _Stub:
        if isinstance(pid, tuple) and len(pid) > 2 and pid[0] == "storage":
            self.keys.append(str(pid[2]))
        return _Stub()


def unpicklable(data: bytes, prefix: str, names: set[str]) -> str | None:
    """Why the pickle `data` of a torch archive (its records `names`, under `prefix`) would not load: a stream
    that does not unpickle, or a tensor whose data/<key> record is missing. Imports no torch."""
    walk = _Walk(data)
    try:
        walk.load()
    except Exception as err:  # a damaged stream raises any of pickle's errors
        return f"does not unpickle ({(str(err).splitlines() or [type(err).__name__])[0][:120]})"
    missing = next((key for key in walk.keys if f"{prefix}data/{key}" not in names), None)
    return f"does not load (tensor record data/{missing} is missing)" if missing is not None else None


def bad_json(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"does not parse ({err})"
    return None if isinstance(value, dict) else "is not a JSON object"


def resumable(folder: Path) -> Choice:
    """The newest complete and loadable checkpoint under <folder>/checkpoints, and one line per newer one skipped."""
    skipped = []
    for step, path in listed(folder / "checkpoints"):
        why = problem(path)
        if why is None:
            return Choice(path, skipped)
        skipped.append(f"skipped {path.name}: {why}")
    return Choice(None, skipped)


def complete(folder: Path) -> bool:
    """Sealed and every file at its sealed size (no content read: rotation's test)."""
    marker = folder / MARKER
    sizes = read_marker(marker) if marker.is_file() else None
    return sizes is not None and wrong_size(folder, sizes) is None


def newest_complete(output: Path) -> Path | None:
    """The newest sealed checkpoint under <output>/checkpoints (sizes checked, contents not read)."""
    return next((path for _, path in listed(output / "checkpoints") if complete(path)), None)


def announce(choice: Choice | None, say: Callable[[str], None]) -> None:
    """Say which checkpoint a --resume continues from and why newer ones were passed over (`choice`:
    what `resumable` found when the folder was checked; nothing is read again)."""
    if choice is None or choice.checkpoint is None:
        return
    for line in choice.skipped:
        say(f"{line}; resuming from the previous one")
    say(f"resuming from {choice.checkpoint.name} (complete, every file checked)")


# Sealing, placing, rotating, cleaning.


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # some file systems cannot fsync a folder: nothing more to do there
            raise
    finally:
        os.close(fd)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def seal(folder: Path, step: int, before_marker: Callable[[], None] | None = None) -> None:
    """fsync every file, then write the marker listing their sizes (last, fsync'd), then fsync the folder."""
    files = files_in(folder)
    for path in files:
        fsync_path(path)
    if before_marker is not None:
        before_marker()
    sizes = {str(path.relative_to(folder)): path.stat().st_size for path in files}
    marker = folder / MARKER
    with marker.open("w", encoding="utf-8") as handle:
        json.dump({"step": step, "files": sizes}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)


def place(staged: Path, final: Path) -> None:
    """Rename the sealed folder into place (replacing an older save of the same step), durably."""
    if final.exists():
        old = final.with_name(f".discarding-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, final)
    fsync_path(final.parent)


def discard(folder: Path) -> None:
    """Remove a folder of ours: renamed aside first (atomic), so a crash mid-delete leaves only a leftover."""
    if not folder.exists():
        return
    if not LEFTOVER.match(folder.name):
        aside = folder.with_name(f".discarding-{folder.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(folder, aside)
        folder = aside
    shutil.rmtree(folder, ignore_errors=True)


def rotate(checkpoints: Path, limit: int | None, keep: Path) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit`; incomplete ones are never counted nor touched."""
    if not limit or limit <= 0:
        return []
    whole = [path for _, path in listed(checkpoints) if complete(path)]
    doomed = [path for path in whole[limit:] if path != keep]
    for path in doomed:
        discard(path)
    return doomed


def clean_leftovers(output: Path, say: Callable[[str], None]) -> list[Path]:
    """Remove what an interrupted save or rotation left (.saving-/.discarding-checkpoint-N), saying so."""
    checkpoints = output / "checkpoints"
    if not checkpoints.is_dir():
        return []
    removed = []
    for path in sorted(checkpoints.iterdir()):
        match = LEFTOVER.match(path.name)
        if not match or not path.is_dir():
            continue
        what = "an unfinished save" if match.group(1) == "saving" else "an unfinished delete"
        shutil.rmtree(path, ignore_errors=True)
        say(f"removed {path}: {what} of checkpoint-{match.group(2)} (the run stopped before it was complete)")
        removed.append(path)
    return removed


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# Signals during a save.


class SaveGuard:
    """Where a save stands, for StopOnSignal. While files are written a second signal aborts (the partial
    folder is then discarded); while a save is sealed, placed or discarded it waits until that ends."""

    def __init__(self) -> None:
        self.depth = 0
        self.deferred = False

    def defer(self) -> bool:
        """True (and remembered) when an abort must wait for the protected part to end."""
        if self.depth:
            self.deferred = True
        return bool(self.depth)

    @contextmanager
    def protected(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.deferred:
            self.deferred = False
            raise KeyboardInterrupt


GUARD = SaveGuard()


# A failed write.

WRITE_FAILURE = re.compile(r"inline_container|PytorchStreamWriter|file write failed|unexpected pos|no space left|storagefull|os error 28|ioerror", re.I)


def is_write_failure(err: BaseException) -> bool:
    """An OSError, or torch's/safetensors' wrapping of one (a full disk gives RuntimeError 'unexpected pos')."""
    return isinstance(err, OSError) or (isinstance(err, Exception) and bool(WRITE_FAILURE.search(str(err))))


def save_failed(err: BaseException, checkpoints: Path, step: int, needed: int) -> ProblemFound:
    """One line: what failed where, that the partial save is gone, what is kept, the space a checkpoint needs, how to go on."""
    full = getattr(err, "errno", None) == errno.ENOSPC or bool(re.search(r"no space left|storagefull|os error 28|unexpected pos", str(err), re.I))
    try:
        free = f", {shutil.disk_usage(checkpoints).free / MIB:,.1f} MiB free" if checkpoints.exists() else ""
    except OSError:
        free = ""
    what = "the disk is full" if full else f"writing failed ({(getattr(err, 'strerror', None) or str(err)).splitlines()[0][:100]})"
    kept = resumable(checkpoints.parent).checkpoint
    resume = f"{kept.name} is kept; free space, then run the same command with --resume" if kept else f"no earlier checkpoint to keep; free space, delete {checkpoints.parent} and start again"
    return ProblemFound(
        f"saving checkpoint-{step} in {checkpoints} failed: {what}; removed the partial checkpoint; "
        f"a checkpoint needs about {needed / MIB:,.1f} MiB{free}; {resume}"
    )
