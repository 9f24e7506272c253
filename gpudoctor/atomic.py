"""Write files so that a reader never sees half of one: write a temp file beside it, then rename.

The file gets the mode a plain open() would give it (0666 less the user's umask), not the 0600 of
the temporary file. safetensors (0.8) writes its files the same way, through a 0600 temp file it
renames (safetensors#782), and every library that saves safetensors (peft's adapter, the Trainer's
checkpoints, transformers' shards) goes through its one writer: `safetensors_follow_umask` wraps it
so those files get the same mode.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (same-directory temp file + os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode open() gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode mkdir() gives a new folder: 0777 less the umask (mkdtemp's folders are 0700)."""
    return 0o777 & ~current_umask()


def safetensors_follow_umask() -> None:
    """Make every file safetensors.torch writes from now on in this process get open()'s mode (an
    existing file it replaces keeps its own). Imports torch: call it where the training stack loads."""
    import safetensors.torch

    original = safetensors.torch.serialize_file  # save_file's writer, looked up at each call
    if getattr(original, "follows_umask", False):
        return

    def serialize_file(tensors: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            mode = os.stat(filename).st_mode & 0o7777
        except OSError:
            mode = new_file_mode()
        result = original(tensors, filename, *args, **kwargs)
        os.chmod(filename, mode)
        return result

    serialize_file.follows_umask = True  # type: ignore[attr-defined]
    safetensors.torch.serialize_file = serialize_file


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: Any, *, indent: int = 2) -> Path:
    """Write JSON atomically, UTF-8, non-ASCII kept as is, with a trailing newline."""
    return write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")
