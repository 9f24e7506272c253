"""`data check`: everything about a dataset that decides whether it is worth training on.

Findings are errors (the data would hurt training: exit 1) or warnings (worth a look: exit 0).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from gpudoctor.data.consistent import Detail, consistent_details, fix_command, recurring_placeholders
from gpudoctor.data.dedupe import find_duplicates
from gpudoctor.data.lang import guess_languages
from gpudoctor.data.load import gc_paused
from gpudoctor.data.pii import scan_texts, scanners_in_use
from gpudoctor.data.records import Dataset
from gpudoctor.data.stats import compute_stats

TEMPLATE = re.compile(r"\{\{\s*[\w.]+\s*\}\}|\{%.*?%\}")
SENSITIVE = ("CARD", "ID")  # a model can memorise these verbatim: never train on them
MAX_LISTED = 10


@dataclass
class Finding:
    level: str  # "error" | "warning"
    title: str
    records: list[int]  # 1-based
    fix: str


@dataclass
class TokenSummary:
    tokenizer: str
    total: int
    min: int
    median: int
    p95: int
    max: int
    seq_len: int | None = None
    over_seq_len: list[int] = field(default_factory=list)  # 1-based records longer than seq_len


@dataclass
class CheckReport:
    path: str
    format: str
    container: str
    records: int
    tokens: TokenSummary
    languages: dict[str, int]
    empty: dict[str, list[int]]  # "prompt" / "reply" / "system" -> records
    exact_duplicates: list[tuple[int, int]]  # (record, first seen as record)
    near_duplicates: list[tuple[int, int, float]]
    personal_data: dict[str, list[int]]  # kind -> records (1-based, with repeats removed)
    personal_data_counts: dict[str, int]
    template_placeholders: dict[str, list[int]]
    scanned: list[str]
    consistent: list[Detail] = field(default_factory=list)  # details repeated in most replies (see data/consistent.py)
    placeholders: list[Detail] = field(default_factory=list)  # data clean's placeholders repeated in most replies
    findings: list[Finding] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return not any(f.level == "error" for f in self.findings)


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def _token_summary_of(dataset: Dataset, tokenizer_path: str | None, seq_len: int | None) -> TokenSummary:
    stats = compute_stats(dataset, tokenizer_path)
    lengths = stats.token_lengths
    return TokenSummary(
        tokenizer=stats.tokenizer,
        total=sum(lengths),
        min=min(lengths),
        median=int(statistics.median(lengths)),
        p95=_percentile(lengths, 0.95),
        max=max(lengths),
        seq_len=seq_len,
        over_seq_len=[i + 1 for i, n in enumerate(lengths) if seq_len and n > seq_len],
    )


def check_dataset(
    dataset: Dataset, *, tokenizer_path: str | None = None, seq_len: int | None = None, use_nlp: bool = True, pii: bool = True
) -> CheckReport:
    """Everything that would hurt training on `dataset`, as one report (see CheckReport)."""
    with gc_paused():  # the same report, without collections that walk every record again and again
        return _check(dataset, tokenizer_path, seq_len, use_nlp, pii)


def _check(dataset: Dataset, tokenizer_path: str | None, seq_len: int | None, use_nlp: bool, pii: bool) -> CheckReport:
    tokens = _token_summary_of(dataset, tokenizer_path, seq_len)
    empty: dict[str, list[int]] = defaultdict(list)
    languages: Counter[str] = Counter()
    kinds: dict[str, list[int]] = defaultdict(list)
    counts: Counter[str] = Counter()
    placeholders: dict[str, list[int]] = defaultdict(list)
    spans = scan_texts((m.content for r in dataset.records for m in r.messages), use_nlp=use_nlp) if pii else {}
    texts = ["\n".join(m.content for m in r.messages) for r in dataset.records]
    languages.update(guess_languages(texts))  # all at once: with numpy, the letters are counted in one pass
    for record, text in zip(dataset.records, texts):
        roles = [m.role for m in record.messages]
        users = [m for m in record.messages if m.role == "user"]
        replies = [m for m in record.messages if m.role == "assistant"]
        if not users or any(not m.content.strip() for m in users):
            empty["prompt"].append(record.number)
        if not replies or any(not m.content.strip() for m in replies):
            empty["reply"].append(record.number)
        if "system" in roles and any(m.role == "system" and not m.content.strip() for m in record.messages):
            empty["system"].append(record.number)
        if "{" in text:  # every template pattern starts with a brace, and most texts have none
            for match in TEMPLATE.finditer(text):
                if record.number not in placeholders[match.group()]:
                    placeholders[match.group()].append(record.number)
        if pii:
            for message in record.messages:
                for span in spans[message.content]:
                    counts[span.kind] += 1
                    if not kinds[span.kind] or kinds[span.kind][-1] != record.number:
                        kinds[span.kind].append(record.number)
    duplicates = find_duplicates(dataset)
    in_replies = {
        r.index: {s.text.casefold() for m in r.messages if m.role == "assistant" for s in spans.get(m.content, ())}
        for r in dataset.records
    } if pii else {}
    report = CheckReport(
        path=dataset.path,
        format=dataset.format,
        container=dataset.container,
        records=len(dataset.records),
        tokens=tokens,
        languages=dict(languages.most_common()),
        empty=dict(empty),
        exact_duplicates=[(d.index + 1, d.of + 1) for d in duplicates.exact],
        near_duplicates=[(d.index + 1, d.of + 1, d.similarity) for d in duplicates.near],
        personal_data=dict(sorted(kinds.items())),
        personal_data_counts=dict(sorted(counts.items())),
        template_placeholders=dict(placeholders),
        scanned=scanners_in_use(use_nlp) if pii else ["personal data: not scanned (--no-pii)"],
        consistent=consistent_details(dataset, in_replies),
        placeholders=recurring_placeholders(dataset),
    )
    report.findings = _findings(report)
    return report


def _findings(r: CheckReport) -> list[Finding]:
    path = r.path
    found: list[Finding] = []
    if r.empty.get("reply"):
        found.append(Finding("error", f"{len(r.empty['reply'])} records have an empty reply", r.empty["reply"],
                             f"fill them in, or drop them: gpudoctor data clean {path} -o CLEAN.json"))
    if r.empty.get("prompt"):
        found.append(Finding("error", f"{len(r.empty['prompt'])} records have an empty prompt", r.empty["prompt"],
                             f"fill them in, or drop them: gpudoctor data clean {path} -o CLEAN.json"))
    if r.template_placeholders:
        records = sorted({n for ns in r.template_placeholders.values() for n in ns})
        names = ", ".join(r.template_placeholders)
        found.append(Finding("error", f"{len(records)} records hold unfilled template placeholders ({names})", records,
                             "replace them with real values before training; the model would learn them verbatim"))
    sensitive = sorted({n for kind in SENSITIVE for n in r.personal_data.get(kind, [])})
    if sensitive:
        kinds = ", ".join(k for k in SENSITIVE if k in r.personal_data)
        found.append(Finding("error", f"{len(sensitive)} records hold card or id numbers ({kinds})", sensitive,
                             f"gpudoctor data clean {path} -o CLEAN.json"))
    other = {k: v for k, v in r.personal_data.items() if k not in SENSITIVE}
    if other:
        records = sorted({n for ns in other.values() for n in ns})
        kinds = ", ".join(f"{k} {r.personal_data_counts[k]}" for k in other)
        found.append(Finding("warning", f"personal data in {len(records)} records ({kinds})", records,
                             f"review, then replace with placeholders: gpudoctor data clean {path} -o CLEAN.json"))
    if r.consistent:
        shown = ", ".join(f"'{d.text}' {d.share:.0%}" for d in r.consistent[:MAX_LISTED])
        records = sorted({n for d in r.consistent for n in d.records})
        found.append(Finding("warning", f"the same details recur in the replies ({shown}): the model will learn to say them",
                             records, fix_command(path, r.consistent)))
    for d in r.placeholders[:MAX_LISTED]:
        found.append(Finding("warning", f"'{d.text}' is in {len(d.records)} replies ({d.share:.0%}): the model will learn to write it too",
                             d.records, f"fill {d.text} in when you use the answers, or take what carries it (a sign-off, a greeting) out of the replies"))
    if r.exact_duplicates:
        share = len(r.exact_duplicates) / r.records
        found.append(Finding("error" if share > 0.2 else "warning",
                             f"{len(r.exact_duplicates)} exact duplicates ({share:.0%})", [a for a, _ in r.exact_duplicates],
                             f"gpudoctor data dedupe {path} -o DEDUPED.json"))
    if r.near_duplicates:
        found.append(Finding("warning", f"{len(r.near_duplicates)} near duplicates", [a for a, _, _ in r.near_duplicates],
                             f"review them, or drop them: gpudoctor data dedupe {path} -o DEDUPED.json --near"))
    if r.tokens.over_seq_len:
        share = len(r.tokens.over_seq_len) / r.records
        found.append(Finding("error" if share > 0.5 else "warning",
                             f"{len(r.tokens.over_seq_len)} records ({share:.0%}) are longer than {r.tokens.seq_len} tokens and will be cut",
                             r.tokens.over_seq_len, f"raise --seq-len to about {r.tokens.p95} (the 95th percentile) or shorten them"))
    if r.records < 50:
        found.append(Finding("warning", f"only {r.records} records", [],
                             "about 100 good samples start to change a model's behaviour; more help"))
    return found
