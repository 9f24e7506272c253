"""Replace personal data with typed placeholders, the same one for the same value within a record.

`<NAME>`, `<EMAIL>`, ... by default, since a model trained on them reads naturally; `numbered`
gives `<NAME_1>`, `<NAME_2>` so two people in one record stay apart (a later "Sarah" maps to
the same number as an earlier "Sarah Jones"). The input dataset is not changed: a new one is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gpudoctor.data.pii import Span, find_pii, scan_texts
from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record


@dataclass
class Replacement:
    record: int  # 1-based
    field: str  # "instruction", "output", "message 3 (assistant)", ...
    kind: str
    detail: str
    original: str
    placeholder: str


@dataclass
class _Placeholders:
    numbered: bool
    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def get(self, kind: str, value: str) -> str:
        if not self.numbered:
            return f"<{kind}>"
        key = (kind, " ".join(value.lower().split()))
        if key not in self.by_value:
            parts = key[1].split() if kind == "NAME" else []
            known = next((self.by_value[(kind, p)] for p in parts if (kind, p) in self.by_value), None)
            if known is None:
                self.counts[kind] = self.counts.get(kind, 0) + 1
                known = f"<{kind}_{self.counts[kind]}>"
            self.by_value[key] = known
            for part in parts:  # "Sarah Jones" then "Sarah": one person
                self.by_value.setdefault((kind, part), known)
        return self.by_value[key]


Scanner = Callable[[str], list[Span]]


def _scrub_text(text: str, where: str, record: int, names: _Placeholders, scan: Scanner, out: list[Replacement]) -> str:
    spans = scan(text)
    if not spans:
        return text
    pieces = []
    last = 0
    for span in spans:
        placeholder = names.get(span.kind, span.text)
        pieces += [text[last : span.start], placeholder]
        last = span.end
        out.append(Replacement(record, where, span.kind, span.detail, span.text, placeholder))
    return "".join(pieces) + text[last:]


def scrub_record(
    record: Record, *, use_nlp: bool = True, numbered: bool = False, scan: Scanner | None = None
) -> tuple[Record, list[Replacement]]:
    names = _Placeholders(numbered)
    changes: list[Replacement] = []
    scanner: Scanner = scan or (lambda text: find_pii(text, use_nlp=use_nlp))

    def clean(text: str, where: str) -> str:
        return _scrub_text(text, where, record.number, names, scanner, changes)

    if record.alpaca is not None:
        a = record.alpaca
        fields = AlpacaFields(
            instruction=clean(a.instruction, "instruction"),
            input=clean(a.input, "input"),
            output=clean(a.output, "output"),
            system=clean(a.system, "system"),
        )
        body = record.messages[1:] if a.system else record.messages
        history = [Message(m.role, clean(m.content, f"history turn {i // 2 + 1}"), m.origin) for i, m in enumerate(body[:-2])]
        prompt = fields.instruction + ("\n\n" + fields.input if fields.input else "")
        messages = ([Message("system", fields.system)] if fields.system else []) + history
        messages += [Message("user", prompt), Message("assistant", fields.output)]
        return Record(record.index, messages, record.line, fields, record.tools), changes
    messages = [
        Message(m.role, clean(m.content, f"message {i} ({m.origin or m.role})"), m.origin)
        for i, m in enumerate(record.messages, start=1)
    ]
    return Record(record.index, messages, record.line, None, record.tools), changes


def names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for the user's own list: case-insensitive, whole words (Chinese names: anywhere), longest first."""
    wanted = sorted({" ".join(n.split()) for n in names if n.strip()}, key=len, reverse=True)
    if not wanted:
        return None
    parts = []
    for name in wanted:
        body = r"\s+".join(re.escape(word) for word in name.split())
        cased = re.match(r"[^\W_]", name[0]) and not re.match(r"[\u3400-\u9fff]", name[0])
        parts.append(rf"(?<![^\W_]){body}(?![^\W_])" if cased else body)
    return re.compile("|".join(parts), re.IGNORECASE)


def replaced_kind(value: str) -> str:
    """The placeholder kind for a --replace value, by its shape: <EMAIL>, <PHONE> (mostly digits), else <DETAIL>."""
    if "@" in value:
        return "EMAIL"
    digits = sum(c.isdigit() for c in value)
    return "PHONE" if digits >= 7 and digits >= 0.6 * len(value.replace(" ", "")) else "DETAIL"


def with_names(text: str, spans: list[Span], pattern: re.Pattern[str] | None, *, replace: bool = False) -> list[Span]:
    """The scanner's spans plus every occurrence of the user's names (or, `replace`, the user's --replace values);
    where they overlap, the user's list wins."""
    if pattern is None:
        return spans
    if replace:
        own = [Span(m.start(), m.end(), replaced_kind(m.group()), "your --replace list", m.group()) for m in pattern.finditer(text)]
    else:
        own = [Span(m.start(), m.end(), "NAME", "your --names list", m.group()) for m in pattern.finditer(text)]
    if not own:
        return spans
    rest = [s for s in spans if not any(s.start < o.end and o.start < s.end for o in own)]
    return sorted(own + rest, key=lambda s: s.start)


def scrub_dataset(
    dataset: Dataset, *, use_nlp: bool = True, numbered: bool = False, names: Iterable[str] = (), scan: bool = True,
    replace: Iterable[str] = (),
) -> tuple[Dataset, list[Replacement]]:
    """Scrub every record; `names` (the user's own list: staff, the agent's name) is always replaced as NAME,
    `replace` (any other text that recurs: a ticket signature, a company line) by a placeholder of its shape,
    with or without the scanner (`scan=False`: only the lists)."""
    records: list[Record] = []
    changes: list[Replacement] = []
    texts = [m.content for r in dataset.records for m in r.messages]
    for r in dataset.records:
        if r.alpaca is not None:
            texts += [r.alpaca.instruction, r.alpaca.input, r.alpaca.output, r.alpaca.system]
    found_spans = scan_texts(texts, use_nlp=use_nlp) if scan else {}
    pattern, others = names_pattern(names), names_pattern(replace)

    def spans_of(text: str) -> list[Span]:
        return with_names(text, with_names(text, found_spans.get(text, []), others, replace=True), pattern)

    for record in dataset.records:
        cleaned, found = scrub_record(record, numbered=numbered, scan=spans_of)
        records.append(cleaned)
        changes += found
    return Dataset(dataset.path, dataset.format, dataset.container, records), changes
