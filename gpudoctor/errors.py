"""The exceptions every layer raises; the CLI turns them into one line and an exit code.

Exit codes (documented in the README): 0 ok, 1 a problem was found, 2 bad input or usage,
130 interrupted after saving.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class GpudoctorError(Exception):
    """A user-facing error: `str(err)` is one line naming the file, record or setting and what to do."""

    exit_code = EXIT_PROBLEM

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(GpudoctorError):
    """A file, record or setting the user gave cannot be used (exit 2)."""

    exit_code = EXIT_USAGE


class ProblemFound(GpudoctorError):
    """The input is fine but the machine or the request cannot proceed (exit 1)."""

    exit_code = EXIT_PROBLEM
