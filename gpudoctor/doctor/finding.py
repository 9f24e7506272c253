"""What a check returns: one judgement about the machine, with the exact fix when something is wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warning", "error"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "error")  # in rising severity

# The groups `gpudoctor check` prints, in order (flutter doctor's validators, one row each).
CATEGORIES = ("GPU", "Driver", "PyTorch", "bitsandbytes", "Host", "Disk")


@dataclass(frozen=True)
class Finding:
    """`fix` is a command (one per line) or a link the user can act on; None when there is nothing to do."""

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

    @property
    def is_problem(self) -> bool:
        return self.status != "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses: list[Status]) -> Status:
    """The most severe status in `statuses` ("ok" for none)."""
    return max(statuses, key=STATUSES.index, default="ok")
