"""Consoles for the CLI, made per call so tests can fix width and colour through the environment.

`NO_COLOR` turns colour off; `COLUMNS` fixes the width (rich reads both).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console


def console() -> Console:
    """Standard output, for results."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    """Standard error, for progress and messages."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=False)


def progress() -> Callable[[str], None]:
    """A `say` for the actions' progress lines: each to standard error as it is, no markup, wrapped softly."""
    err = err_console()
    return lambda line: err.print(line, markup=False, soft_wrap=True)


def print_json(text: str) -> None:
    """Machine-readable output goes straight to stdout, never through rich's wrapping."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
