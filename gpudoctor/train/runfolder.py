"""The run folder's guards, all before the model loads: writable, not over the data, room, one run at a time.

- check_writable: the output (or its nearest existing folder) takes a probe file (created and
  removed again), and no part of its path is a file; EROFS, EACCES and a file in the path are one
  line each (BadInput, exit 2).
- check_not_over_data: the output is not the data file, and the data file does not lie inside
  the output folder (gpudoctor owns that folder: checkpoints rotate, a failed start is replaced).
- The lock, .gpudoctor.lock in the run folder: created with O_CREAT|O_EXCL, holding pid, host,
  boot id, the pid's start time and a token. A live holder on this host, or any holder on another
  host, stops a second run (ProblemFound, exit 1: the input is fine, the folder is busy). A holder
  that is gone (dead pid, pid reused, machine rebooted) is taken over with a line saying so; a lock
  from another host is never taken over: the user deletes it (the line says so) when no run is
  going on there. check_lock only reads; acquire_lock/release_lock write.
- The data record, run-data.json: the data file's sha256 and the settings that shape its order
  (seed, val_size, packing, seq_len, truncate). `--resume` on other data or another order stops
  unless --resume-changed-data, which goes on with the epoch restarting on the new data.
- check_space: free space at the output against what the run will write (checkpoints up to the
  Trainer's save_total_limit, plus one while the oldest is rotated out, plus the final adapter).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_json
from gpudoctor.errors import BadInput, ProblemFound

LOCK_NAME = ".gpudoctor.lock"
DATA_RECORD = "run-data.json"
UNREADABLE_LOCK_STALE_S = 30  # an unreadable lock younger than this may be one being written right now
WEIGHT_BYTES = 4  # peft keeps the adapters in fp32 (autocast_adapter_dtype) and saves them so
SMALL_FILES = 1 << 20  # per checkpoint: trainer_state, rng_state, scheduler, args, README, config
OVERHEAD = 1.1  # safetensors headers and the optimizer pickle's per-tensor records (measured: +5 %, +15 %)
disk_usage = shutil.disk_usage  # tests inject a full disk here


# Writable, not under a file, not over the data.


def probe_write(folder: Path) -> None:
    """Create and remove a temp file in `folder`; raise the OSError that a real write would raise."""
    fd, name = tempfile.mkstemp(prefix=".gpudoctor-probe-", dir=folder)
    os.close(fd)
    os.unlink(name)


def nearest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (a file there is returned as is)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def check_writable(output: Path) -> None:
    """BadInput (one line) unless the run folder can be made and written at `output`; writes nothing that stays."""
    found = nearest_existing(output)
    if found.is_symlink() and not found.exists():
        raise BadInput(f"--output {output}: {found} is a broken symbolic link; remove it or pick another --output")
    if not found.is_dir():
        what = "is a file, not a folder" if found == output else f"lies under {found}, which is a file, so no folder can be made there"
        raise BadInput(f"--output {output}: {what}; pick another --output")
    folders = [found] + ([found / "checkpoints"] if found == output and (found / "checkpoints").is_dir() else [])
    for folder in folders:
        try:
            probe_write(folder)
        except OSError as err:
            raise BadInput(_unwritable(output, folder, err)) from None


def _unwritable(output: Path, folder: Path, err: OSError) -> str:
    where = "the folder" if folder == output else str(folder) if output in folder.parents else f"{folder} (where it would be made)"
    if err.errno == errno.EROFS:
        return f"--output {output}: {where} is on a read-only file system; pick an --output on a writable disk"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"--output {output}: {where} is not writable (permission denied); fix its permissions or pick another --output"
    return f"--output {output}: cannot write in {folder} ({err.strerror or err}); pick another --output"


def check_not_over_data(output: Path, data: str | None) -> None:
    """BadInput when the run would write over the data: the output is the data file, or holds it."""
    if not data:
        return
    source, target = Path(data).resolve(), output.resolve()
    if source == target:
        raise BadInput(f"--output {output} is the --data file; give a new folder for the run")
    if target in source.parents:
        raise BadInput(
            f"--data {data} lies inside --output {output}, the folder gpudoctor writes (checkpoints rotate, a failed "
            "start is replaced); move the data out of it or pick another --output"
        )


# The lock: one run per folder.


@dataclass
class RunLock:
    """A held lock: its file, the token written in it, and the folders acquiring it made (removed again when left empty)."""

    path: Path
    token: str
    made: list[Path]


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) and holder["pid"] > 0 else None


def stale_reason(path: Path, folder: Path) -> str | None:
    """Why the lock at `path` may be taken over; None when there is none; ProblemFound while it is held."""
    if not (path.exists() or path.is_symlink()):
        return None
    holder = _read_holder(path)
    if holder is None:
        try:
            age = time.time() - path.lstat().st_mtime
        except OSError:
            return None
        if age > UNREADABLE_LOCK_STALE_S:
            return f"an unreadable lock file {age:.0f} s old"
        raise ProblemFound(f"--output {folder}: another run is taking the lock {path} right now; wait for it or pick another --output")
    pid, host, since = holder["pid"], str(holder.get("host")), holder.get("started", "?")
    if host != socket.gethostname():
        raise ProblemFound(
            f"--output {folder}: locked by a run on host {host} (pid {pid}, since {since}); "
            f"if no run is going on there, delete {path} and start again"
        )
    if holder.get("boot_id") and _boot_id() and holder["boot_id"] != _boot_id():
        return f"pid {pid} ran before this machine restarted"
    if not _alive(pid):
        return f"pid {pid} on {host} is no longer running"
    if holder.get("proc_start") and _proc_start(pid) and holder["proc_start"] != _proc_start(pid):
        return f"pid {pid} is now another process"
    raise ProblemFound(f"--output {folder}: another run (pid {pid} on {host}, since {since}) is training into this folder; wait for it or pick another --output")


def main_process() -> bool:
    """False in the other workers of `accelerate launch` (RANK > 0): the main one holds the lock for all."""
    return os.environ.get("RANK", "0") == "0"


def check_lock(folder: Path) -> None:
    """Reads only: ProblemFound when a live run holds `folder`'s lock (the main process only)."""
    if main_process():
        stale_reason(folder / LOCK_NAME, folder)


def acquire_lock(folder: Path, say: Callable[[str], None]) -> RunLock:
    """Make the run folder and take its lock (O_CREAT|O_EXCL); take over a stale one, saying so."""
    made = [p for p in (folder, *folder.parents) if not (p.exists() or p.is_symlink())]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(_unwritable(folder, nearest_existing(folder), err)) from None
    path, token = folder / LOCK_NAME, secrets.token_hex(8)
    holder = {
        "pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "boot_id": _boot_id(), "proc_start": _proc_start(os.getpid()), "token": token,
    }  # fmt: skip
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            seen = _raw(path)
            reason = stale_reason(path, folder)
            if reason and _take_over(path, seen, token):
                say(f"--output {folder}: taking over the stale lock {path.name} ({reason})")
            continue
        except OSError as err:
            raise BadInput(_unwritable(folder, folder, err)) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(holder) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            path.unlink(missing_ok=True)
            raise BadInput(_unwritable(folder, folder, err)) from None
        return RunLock(path, token, made)
    raise ProblemFound(f"--output {folder}: another run took the lock {path} while this one started; wait for it or pick another --output")


def folder_state(folder: Path) -> tuple[bytes | None, tuple[str, ...]]:
    """What the checks of the folder read: run.yaml's bytes and the names in checkpoints/ (compared again under the lock)."""
    saved = folder / "checkpoints"
    return _raw(folder / "run.yaml"), tuple(sorted(p.name for p in saved.iterdir())) if saved.is_dir() else ()


def check_unchanged(folder: Path, before: tuple[bytes | None, tuple[str, ...]]) -> None:
    """BadInput when another run wrote run.yaml or checkpoints between the checks and taking the lock."""
    if folder_state(folder) != before:
        raise BadInput(f"--output {folder}: another run wrote to the folder while this one started; look at it, then start again")


def _raw(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _take_over(path: Path, seen: bytes | None, token: str) -> bool:
    """Move the stale lock aside (a rename: of two runs taking it over, one wins), and put it back when
    what was moved is not the lock judged stale (another run took over first and holds it now)."""
    aside = path.with_name(f"{path.name}.stale-{token}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    moved = _raw(aside)
    if moved != seen:
        try:
            os.link(aside, path)  # fails when yet another lock is there already
        except OSError:
            pass
    aside.unlink(missing_ok=True)
    return moved == seen


def release_lock(lock: RunLock) -> None:
    """Remove the lock if it is still ours, then the folders acquire_lock made if they are still empty."""
    holder = _read_holder(lock.path)
    if holder is not None and holder.get("token") == lock.token:
        lock.path.unlink(missing_ok=True)
    for folder in lock.made:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            break


# What the run trains on, for --resume.


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_record(data: str, settings: Any, training: Any, *, truncate: bool) -> dict[str, Any]:
    """The data file (path, size, sha256) and the settings that shape the order its rows are drawn in."""
    path = Path(data)
    order = {"seed": training.seed, "val_size": training.val_size, "packing": settings.packing, "seq_len": settings.seq_len, "truncate": truncate}
    return {"data": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_of(path), "order": order}


def write_data_record(folder: Path, record: dict[str, Any]) -> None:
    write_json(folder / DATA_RECORD, record)


def read_data_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / DATA_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("order"), dict) else None


def data_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two data records, one phrase each (empty: the same data in the same order)."""
    changes = []
    if old.get("data") != new["data"]:
        changes.append(f"--data is {new['data']}, was {old.get('data')}")
    elif old.get("sha256") != new["sha256"]:
        changes.append(f"{new['data']} changed since the run started (sha256 {str(old.get('sha256'))[:12]}… then, {new['sha256'][:12]}… now)")
    for key, value in new["order"].items():
        if old["order"].get(key, value) != value:
            changes.append(f"{key} {old['order'][key]!r} then, {value!r} now")
    return changes


def check_resumed_data(folder: Path, record: dict[str, Any], *, resume: bool, allow_changed: bool, notes: list[str]) -> bool:
    """On --resume: BadInput when the data or its order changed, unless allowed; True when the epoch must restart."""
    if not resume:
        return False
    old = read_data_record(folder)
    if old is None:
        notes.append(f"{folder / DATA_RECORD} is missing (a run from an older gpudoctor): cannot tell whether the data changed; recording it now")
        return False
    changes = data_changes(old, record)
    if not changes:
        return False
    if not allow_changed:
        raise BadInput(
            f"--resume {folder}: {'; '.join(changes)}; resuming would go on mid-epoch on other data; "
            "restore the data and settings, or pass --resume-changed-data to go on with the epoch restarting on the new data"
        )
    notes.append(f"--resume-changed-data: {'; '.join(changes)}; the epoch restarts on the new data")
    return True


# Disk space.


def checkpoint_bytes(trainable: int, optimizer: str) -> int:
    """One checkpoint: the adapter (fp32), the optimizer's two states per trainable parameter, small files."""
    state = 2 if "8bit" in optimizer else 8  # two fp32 moments; bitsandbytes' 8-bit keeps two bytes (+ block scales)
    return int(trainable * (WEIGHT_BYTES + state) * OVERHEAD) + SMALL_FILES


def check_space(output: Path, *, trainable: int, optimizer: str, saves: int, keep: int, existing: int, extra: int) -> str:
    """The line that says what the run writes and what is free; ProblemFound (exit 1) when it does not fit.

    The run still writes `saves` checkpoints; `keep` is the Trainer's save_total_limit (0: no limit): it
    writes a new checkpoint before removing the oldest, so up to keep + 1 are on disk at once, `existing`
    of them there already; `extra` is the final adapter's other files (tokenizer) and the token cache."""
    each = checkpoint_bytes(trainable, optimizer)
    new = min(saves, max(1, keep + 1 - existing)) if keep else saves
    adapter = int(trainable * WEIGHT_BYTES * OVERHEAD) + SMALL_FILES
    needed = new * each + adapter + extra
    root = nearest_existing(output)
    free = disk_usage(root).free
    what = f"{new} checkpoint{'' if new == 1 else 's'} of {_size(each)} + the adapter {_size(adapter + extra)}"
    if free < needed:
        raise ProblemFound(f"--output {output}: the run needs about {_size(needed)} ({what}) but {root} has {_size(free)} free; free some space or pick another --output")
    return f"disk: the run writes up to {_size(needed)} ({what}); {_size(free)} free at {root}"


def _size(count: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def tokenizer_bytes(model_dir: Path) -> int:
    """What the tokenizer's files (copied beside the adapter at the end) weigh."""
    names = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "chat_template")
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file() and p.name.startswith(names))
