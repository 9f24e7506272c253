"""Run every recogniser over a text and keep one span per place: the strongest kind, then the longest."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from gpudoctor.data.pii import addresses, names, ner, patterns

KINDS = ("EMAIL", "PHONE", "CARD", "IP", "ID", "NAME", "ADDRESS")
# When spans overlap, the kind listed first wins (a card number is not also a phone number).
# A Chinese id passes the Luhn check one time in ten, so ids (checksum and date) outrank cards.
PRIORITY = {kind: rank for rank, kind in enumerate(("EMAIL", "ID", "CARD", "IP", "PHONE", "ADDRESS", "NAME"))}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # one of KINDS
    detail: str  # which rule found it: "phone (GB)", "IBAN", "name (jieba)", ...
    text: str


Recogniser = Callable[[str], Iterable[tuple[int, int, str, str]]]


def _recognisers(use_nlp: bool, use_ner: bool = False) -> list[Recogniser]:
    found: list[Recogniser] = [
        patterns.emails,
        patterns.cards,
        patterns.national_ids,
        patterns.ips,
        patterns.phones,
        addresses.street_addresses,
        addresses.chinese_addresses,
        names.english_names,
        names.chinese_names,
    ]
    if use_nlp and names.jieba_available():
        found.append(names.jieba_names)
    if use_ner:
        found.append(ner.ner_names)  # optional named-entity backend (gpudoctor.data.pii.ner); nothing when absent
    return found


def scanners_in_use(use_nlp: bool = True) -> list[str]:
    """What was scanned and how, and what was not (for reports)."""
    lines = [
        "EMAIL: address pattern",
        "PHONE: libphonenumber, valid numbers only (international +CC, national formats of " + ", ".join(patterns.PHONE_REGIONS)
        + "); not dates, references (INV-2024-…, after order/invoice labels) or toll-free lines",
        "CARD: 13-19 digits passing the Luhn check",
        "IP: IPv4 and IPv6 (validated)",
        "ID: US SSN, UK NINO, Chinese resident id (checksum), IBAN (mod 97), DNI/NIE, PAN, NIR; after their labels:"
        " undashed SSN, Aadhaar, Steuer-ID, NHS number, bank account numbers; Indian UPI ids (name@okaxis, after UPI/VPA)",
        "NAME: English given-name/surname lists with context, Chinese surnames with context",
        "ADDRESS: street + number (US/UK/DE/FR/ES/IN), address lines ending in a postcode and city, UK postcodes,"
        " Chinese 路/街…号 addresses",
    ]
    if use_nlp and names.jieba_available():
        lines[5] += "; jieba person-name tagger (nlp extra)"
    else:
        why = "--nlp not given" if names.jieba_available() else "install the nlp extra: jieba"
        lines[5] += f"; NOT scanned: Chinese names without a cue ({why})"
    lines.append(
        "NOT scanned: names in other scripts (Arabic, Cyrillic, Devanagari...), addresses without a house number,"
        " passport and driving-licence numbers, dates of birth"
    )
    return lines


def find_pii(text: str, *, use_nlp: bool = True, use_ner: bool = False, kinds: Iterable[str] = KINDS) -> list[Span]:
    """Non-overlapping spans of personal data in `text`, in order."""
    wanted = set(kinds)
    hits = [hit for recogniser in _recognisers(use_nlp, use_ner) for hit in recogniser(text) if hit[2] in wanted]
    hits.sort(key=lambda h: (PRIORITY[h[2]], -(h[1] - h[0]), h[0]))
    taken: list[tuple[int, int]] = []
    kept: list[Span] = []
    for start, end, kind, detail in hits:
        if kind == "NAME" and text[max(start, end - 2) : end] in ("'s", "\u2019s"):
            end -= 2  # "Tom Robinson's" -> "<NAME>'s"
        if start >= end or any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        kept.append(Span(start, end, kind, detail, text[start:end]))
    return sorted(kept, key=lambda s: s.start)


PARALLEL_FROM = 2000  # texts; below this a process pool costs more than it saves
CHUNK = 500


def _scan_chunk(texts: list[str], use_nlp: bool) -> list[list[Span]]:
    return [find_pii(text, use_nlp=use_nlp) for text in texts]


def scan_texts(texts: Iterable[str], *, use_nlp: bool = True, workers: int | None = None) -> dict[str, list[Span]]:
    """Spans for each distinct text, scanned on all CPU cores when there are many."""
    unique = list(dict.fromkeys(texts))
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(unique) < PARALLEL_FROM:
        return {text: find_pii(text, use_nlp=use_nlp) for text in unique}
    chunks = [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_scan_chunk, chunks, [use_nlp] * len(chunks))
        return {text: spans for chunk, found in zip(chunks, results) for text, spans in zip(chunk, found)}
