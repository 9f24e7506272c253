"""The CLI's last resort: an exception nobody expected becomes one line and a log file, and an
interrupt is told apart from an error.

`unexpected(err, argv)` writes the full traceback to a log in gpudoctor's cache folder
(gpudoctor.resources.gpudoctor_cache_dir()/logs, the newest KEEP_LOGS kept) and returns the line
`gpudoctor: error: <what failed> (<Type>: <first line>); details in <log>`; the traceback goes to
stderr too only when GPUDOCTOR_DEBUG=1. `SigintSeen` records whether a SIGINT really arrived, so a
typer.Abort that no signal caused (click's conversion of an EOFError, say) is not called an interrupt.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

DEBUG_VARIABLE = "GPUDOCTOR_DEBUG"
KEEP_LOGS = 20
_PACKAGE = Path(__file__).resolve().parent.parent  # .../gpudoctor


def debug_on() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""


def command_name(argv: list[str] | None) -> str:
    """`gpudoctor train` for `train run.yaml --resume`: the first word that is not an option."""
    words = [word for word in (argv if argv is not None else sys.argv[1:]) if not word.startswith("-")]
    return "gpudoctor " + words[0] if words else "gpudoctor"


def where_in_gpudoctor(err: BaseException) -> str:
    """The deepest frame inside the gpudoctor package, as ` in gpudoctor/train/run.py:245 (fit)`; '' if none."""
    runner = {_PACKAGE / "cli" / "main.py", Path(__file__).resolve()}  # the frames that merely ran the command
    frames = [frame for frame in traceback.extract_tb(err.__traceback__) if _inside(Path(frame.filename).resolve(), runner)]
    if not frames:
        return ""
    frame = frames[-1]
    relative = Path(frame.filename).resolve().relative_to(_PACKAGE.parent)
    return f" in {relative.as_posix()}:{frame.lineno} ({frame.name})"


def _inside(path: Path, runner: set[Path]) -> bool:
    return path.is_relative_to(_PACKAGE) and path not in runner


def write_log(err: BaseException, argv: list[str] | None, environ: Any = os.environ) -> Path:
    """The traceback and what ran, in a new log file under the cache folder; old logs beyond KEEP_LOGS go."""
    from gpudoctor import __version__
    from gpudoctor.atomic import write_text
    from gpudoctor.resources import gpudoctor_cache_dir

    folder = gpudoctor_cache_dir(environ) / "logs"
    path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = (
        f"gpudoctor {__version__} · python {sys.version.split()[0]} · {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
        f"command: gpudoctor {' '.join(argv if argv is not None else sys.argv[1:])}\n\n"
        + "".join(traceback.format_exception(err))
    )
    write_text(path, text)
    for old in sorted(folder.glob("error-*.log"))[:-KEEP_LOGS]:
        try:
            old.unlink()
        except OSError:
            pass
    return path


def unexpected(err: BaseException, argv: list[str] | None) -> str:
    """The one line for an exception nobody expected (the traceback to the log, and to stderr when debugging)."""
    if debug_on():
        sys.stderr.write("".join(traceback.format_exception(err)))
    try:
        details = f"details in {write_log(err, argv)}"
    except Exception as log_err:  # a read-only or full cache: still one line, and a way to see the rest
        details = f"details not saved ({type(log_err).__name__}: {first_line(log_err)}); run again with {DEBUG_VARIABLE}=1 to see them"
    message = first_line(err)
    cause = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return f"gpudoctor: error: {command_name(argv)} failed unexpectedly{where_in_gpudoctor(err)} ({cause}); {details}\n"


class SigintSeen:
    """While active, a SIGINT sets `seen` before Python's own handler raises KeyboardInterrupt. Installed
    only from the main thread over Python's default handler (an ignored SIGINT stays ignored)."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        signal.default_int_handler(signum, frame)

    def __enter__(self) -> SigintSeen:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None
