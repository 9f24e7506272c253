"""`data clean`: scrub personal data, drop empty and duplicate records, and say what changed per record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpudoctor.data.dedupe import find_duplicates
from gpudoctor.errors import BadInput
from gpudoctor.data.pii import scanners_in_use
from gpudoctor.data.records import Dataset, Record
from gpudoctor.data.scrub import Replacement, scrub_dataset
from gpudoctor.data.write import subset


@dataclass
class Dropped:
    record: int  # 1-based, in the input
    reason: str  # "empty prompt", "empty reply", "duplicate of #3", "near duplicate of #3 (0.91)"


@dataclass
class CleanResult:
    dataset: Dataset
    replacements: list[Replacement]
    dropped: list[Dropped]
    scanned: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.replacements).most_common())

    def dropped_counts(self) -> dict[str, int]:
        return dict(Counter(d.reason.split(" of ")[0] for d in self.dropped).most_common())

    def report(self, source: str, output: str) -> dict[str, Any]:
        return {
            "input": source,
            "output": output,
            "records_in": len(self.dataset.records) + len(self.dropped),
            "records_out": len(self.dataset.records),
            "replaced": self.counts(),
            "scanned": self.scanned,
            "dropped": [asdict(d) for d in self.dropped],
            "replacements": [asdict(r) for r in self.replacements],
        }


def read_names(names: str | None, names_file: Path | None = None) -> list[str]:
    """--names "Sam,Jennifer Alvarez" and --names-file (one a line, # comments), in order, without repeats."""
    found = [n.strip() for n in (names or "").split(",")]
    if names_file is not None:
        try:
            lines = names_file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise BadInput(f"--names-file {names_file}: cannot read it ({type(err).__name__}); one name per line, UTF-8") from None
        found += [line.split("#", 1)[0].strip() for line in lines]
    return list(dict.fromkeys(n for n in found if n))


def _empty_reason(record: Record) -> str | None:
    users = [m for m in record.messages if m.role == "user"]
    replies = [m for m in record.messages if m.role == "assistant"]
    if not users or any(not m.content.strip() for m in users):
        return "empty prompt"
    if not replies or any(not m.content.strip() for m in replies):
        return "empty reply"
    return None


def clean_dataset(
    dataset: Dataset,
    *,
    use_nlp: bool = True,
    numbered: bool = False,
    drop_duplicates: bool = True,
    near: bool = False,
    drop_empty: bool = True,
    names: Iterable[str] = (),
    scan: bool = True,
    replace: Iterable[str] = (),
) -> CleanResult:
    """A new dataset (the input is untouched), the replacements made and the records dropped.

    `names`: the user's own list (staff names, the agent's own name), always replaced by <NAME>: case-insensitive,
    whole words, every occurrence; `replace`: other text the user wants gone (a ticket signature, a company line), the
    same way, by <PHONE>, <EMAIL> or <DETAIL> after its shape. `scan=False` replaces only those lists."""
    dropped: list[Dropped] = []
    drop: set[int] = set()
    if drop_empty:
        for record in dataset.records:
            reason = _empty_reason(record)
            if reason:
                dropped.append(Dropped(record.number, reason))
                drop.add(record.index)
    scrubbed, replacements = scrub_dataset(dataset, use_nlp=use_nlp, numbered=numbered, names=names, scan=scan, replace=replace)
    if drop_duplicates:
        # duplicates are judged after scrubbing: two records that differ only by a phone number are one
        found = find_duplicates(scrubbed, near=near)
        for dup in found.exact + (found.near if near else []):
            if dup.index not in drop and dup.of not in drop:
                kind = "duplicate" if dup.similarity == 1.0 else "near duplicate"
                score = "" if dup.similarity == 1.0 else f" ({dup.similarity:.2f})"
                dropped.append(Dropped(dup.index + 1, f"{kind} of #{dup.of + 1}{score}"))
                drop.add(dup.index)
    kept = [r for r in scrubbed.records if r.index not in drop]
    replacements = [r for r in replacements if r.record - 1 not in drop]
    dropped.sort(key=lambda d: d.record)
    scanned = scanners_in_use(use_nlp) if scan else ["personal data: not scanned (only the --names list)"]
    return CleanResult(subset(scrubbed, kept), replacements, dropped, scanned)
