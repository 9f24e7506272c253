"""Keep native libraries' chatter off standard output while the probe imports and calls them.

amdsmi's wheel prints "Unable to find libamd_smi.so …" on a box without ROCm, and a C library may
printf from its init; on standard output that text lands inside `check --json` / `plan --json`.
`quiet_stdout()` points file descriptor 1 at a temporary file for the duration (after flushing
Python's and the C library's buffers, so nothing of the document written before is caught and
nothing caught leaks out later), sends Python-level `print` there too, and hands back what was
written. The probe runs its vendors in threads and descriptor 1 belongs to the whole process, so one
lock makes the quiet sections take turns; the probe's other threads never write to standard output.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

_LOCK = threading.Lock()
STDOUT = 1


@dataclass
class Caught:
    """What the library wrote to standard output while it was quiet (filled when the section ends)."""

    text: str = ""

    def last_line(self) -> str | None:
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        return lines[-1] if lines else None


def _flush_c_stdio() -> None:
    """fflush(NULL): a C library's buffered printf reaches the descriptor it was meant for, now."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):
        pass


def _flush_python() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


@contextlib.contextmanager
def quiet_stdout() -> Iterator[Caught]:
    """Run the body with descriptor 1 and sys.stdout caught; the Caught it yields holds their text afterwards."""
    caught = Caught()
    with _LOCK:
        _flush_python()
        _flush_c_stdio()
        python_side = io.StringIO()
        try:
            saved = os.dup(STDOUT)
        except OSError:  # no descriptor 1 at all: nothing to protect at the descriptor level
            saved = None
        sink = tempfile.TemporaryFile() if saved is not None else None
        if sink is not None:
            os.dup2(sink.fileno(), STDOUT)
        try:
            with contextlib.redirect_stdout(python_side):
                yield caught
        finally:
            _flush_c_stdio()
            if sink is not None and saved is not None:
                os.dup2(saved, STDOUT)
                os.close(saved)
                sink.seek(0)
                native = sink.read().decode("utf-8", "replace")
                sink.close()
            else:
                native = ""
            caught.text = python_side.getvalue() + native
