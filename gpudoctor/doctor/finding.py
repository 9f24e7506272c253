"""What a check says (a Verdict) and what the doctor reports (a Finding: the verdict with the check's identity).

A check says only how things are and what to do: `ok("torch sees 1 GPU")`, or
`warning(title, detail, fix)` / `error(title, detail, fix)`. The registry knows which check spoke
and adds its id and category, so a check never repeats them. A check that raises becomes a Finding
with status "crash" (flutter doctor's ValidationType.crash): the doctor could not judge that part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warning", "crash", "error"]
# In rising severity: a crash outranks a warning (that part of the machine went unjudged) and an
# error outranks a crash (an error blocks training; a crash alone never does).
STATUSES: tuple[Status, ...] = ("ok", "warning", "crash", "error")
# What a check may say; "crash" is said only by the registry, about a check.
VERDICT_STATUSES: tuple[Status, ...] = ("ok", "warning", "error")

# The groups `gpudoctor check` prints, in order (flutter doctor's validators, one row each).
CATEGORIES = ("GPU", "Driver", "PyTorch", "bitsandbytes", "Host", "Disk")


@dataclass(frozen=True)
class Verdict:
    """One judgement by a check. `fix` is a command (one per line) or a link; None when there is nothing to do."""

    status: Status
    title: str
    detail: str = ""
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in VERDICT_STATUSES:
            raise ValueError(f"verdict {self.title!r}: status {self.status!r} is not one of {VERDICT_STATUSES}")


def ok(title: str, detail: str = "") -> Verdict:
    """All is well: `title` says what was found."""
    return Verdict("ok", title, detail)


def warning(title: str, detail: str = "", fix: str | None = None) -> Verdict:
    """Worth fixing, but training can start."""
    return Verdict("warning", title, detail, fix)


def error(title: str, detail: str = "", fix: str | None = None) -> Verdict:
    """Training cannot start (or cannot use the GPU) until this is fixed."""
    return Verdict("error", title, detail, fix)


@dataclass(frozen=True)
class Finding:
    """A verdict with the id and category of the check that gave it (the --json `findings` entries)."""

    id: str
    category: str
    status: Status
    title: str
    detail: str = ""
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"finding {self.id!r}: status {self.status!r} is not one of {STATUSES}")
        if self.category not in CATEGORIES:
            raise ValueError(f"finding {self.id!r}: category {self.category!r} is not one of {CATEGORIES}")

    @classmethod
    def from_verdict(cls, check_id: str, category: str, verdict: Verdict) -> Finding:
        return cls(check_id, category, verdict.status, verdict.title, verdict.detail, verdict.fix)

    @property
    def is_problem(self) -> bool:
        return self.status != "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses: list[Status]) -> Status:
    """The most severe status in `statuses` ("ok" for none)."""
    return max(statuses, key=STATUSES.index, default="ok")
