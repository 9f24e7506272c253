"""A cheap script-based language guess per text: enough to spot a mixed or mislabelled dataset.

The dominant writing system decides (Han → zh, kana → ja, Hangul → ko, Cyrillic, Arabic,
Devanagari...); Latin text is "en" when English function words make up at least 15% of its
words, else "latin (non-English)". It does not tell French from German.
"""

from __future__ import annotations

import re
from collections import Counter

SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
)
ENGLISH = frozenset(
    "the a an and or of to in on for with is are was were be it this that as at by from you i we he she they not "
    "your my our his her their can will what how which".split()
)
WORD = re.compile(r"[A-Za-z']+")


SAMPLE_CHARS = 600  # the start of a record is enough to tell its language
ASCII_LETTER = re.compile(r"[A-Za-z]")
MARKS = {name: chr(ord("0") + i) for i, (name, _) in enumerate(SCRIPTS)}


class _ScriptMarks(dict[int, "str | None"]):
    """str.translate table: a character becomes its script's mark, or goes; filled as characters are met."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        mark = next((MARKS[name] for name, pattern in SCRIPTS if pattern.match(char)), None)
        self[code] = mark
        return mark


_SCRIPT_MARKS = _ScriptMarks()
NON_ASCII = re.compile(r"[^\x00-\x7f]+")
NOT_ASCII_LETTER = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalpha())


def guess_language(text: str) -> str:
    """'zh', 'ja', 'ko', 'en', 'latin (non-English)', 'cyrillic', ... or 'none' for text without letters."""
    text = text[:SAMPLE_CHARS]
    if text.isascii():
        counts = Counter({"latin": 1 if ASCII_LETTER.search(text) else 0})  # only Latin is possible
    else:
        # one str.translate pass over the non-ASCII characters instead of one regex per script;
        # ASCII letters are counted on bytes, which is faster still
        marks = "".join(NON_ASCII.findall(text)).translate(_SCRIPT_MARKS)
        counts = Counter({name: marks.count(mark) for name, mark in MARKS.items()})
        counts["latin"] += len(text.encode("ascii", "ignore").translate(None, NOT_ASCII_LETTER))
    if counts.get("ja"):  # Japanese mixes kana with Han characters
        counts["ja"] += counts.pop("zh", 0)
    name, count = counts.most_common(1)[0]
    if count == 0:
        return "none"
    if name != "latin":
        return name
    words = " ".join(WORD.findall(text)).lower().split()  # ASCII, so lower-casing is cheap
    english = sum(map(ENGLISH.__contains__, words))
    return "en" if words and english / len(words) >= 0.15 else "latin (non-English)"
