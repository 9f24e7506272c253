"""A cheap script-based language guess per text: enough to spot a mixed or mislabelled dataset.

The dominant writing system decides (Han → zh, kana → ja, Hangul → ko, Cyrillic, Arabic,
Devanagari...); Latin text is "en" when English function words make up at least 15% of its
words, else "latin (non-English)". It does not tell French from German. Only the first SAMPLE_CHARS
characters are read. guess_languages() does many texts at once: with numpy, one table lookup counts
the letters per script of all non-ASCII samples (the same counts as the per-text path, so the same guesses).
"""

from __future__ import annotations

import re
from typing import Any

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
ASCII_WORD = re.compile(rb"[a-z']+")  # a word ([A-Za-z']+), on lower-cased ASCII bytes
ENGLISH_BYTES = frozenset(word.encode() for word in ENGLISH)


SAMPLE_CHARS = 600  # the start of a record is enough to tell its language
ASCII_LETTER = re.compile(r"[A-Za-z]")
NAMES = tuple(name for name, _ in SCRIPTS)
MARKS = {name: chr(ord("0") + i) for i, name in enumerate(NAMES)}
JA, ZH, LATIN = NAMES.index("ja"), NAMES.index("zh"), NAMES.index("latin")
# the code points each pattern of SCRIPTS matches, for the numpy path's table
RANGES = {
    "ja": ((0x3040, 0x30FF),),
    "ko": ((0xAC00, 0xD7AF), (0x1100, 0x11FF)),
    "zh": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "cyrillic": ((0x0400, 0x04FF),),
    "arabic": ((0x0600, 0x06FF),),
    "devanagari": ((0x0900, 0x097F),),
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0x00C0, 0x024F)),
}
CHUNK_RECORDS = 2000  # the numpy path counts the letters of this many samples at a time (at most 1.2M characters)


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


def _script_counts(text: str) -> list[int]:
    """Letters of each script in SCRIPTS' order, for a text of at most SAMPLE_CHARS characters."""
    if text.isascii():  # only Latin is possible, and only whether there is any letter matters
        return [0] * LATIN + [1 if ASCII_LETTER.search(text) else 0]
    # one str.translate pass over the non-ASCII characters instead of one regex per script;
    # ASCII letters are counted on bytes, which is faster still
    marks = "".join(NON_ASCII.findall(text)).translate(_SCRIPT_MARKS)
    counts = [marks.count(mark) for mark in MARKS.values()]
    counts[LATIN] += len(text.encode("ascii", "ignore").translate(None, NOT_ASCII_LETTER))
    return counts


def _decide(counts: list[int], text: str) -> str:
    """The language from a text's letters per script (the most frequent script; ties go to the first)."""
    if counts[JA]:  # Japanese mixes kana with Han characters
        counts[JA] += counts[ZH]
        counts[ZH] = -1
    best = max(range(len(counts)), key=counts.__getitem__)
    if counts[best] <= 0:
        return "none"
    if best != LATIN:
        return NAMES[best]
    # the words, lower-cased: other characters become '?' (no word character), so words end where
    # they did, and bytes.lower changes ASCII letters only (str.lower would turn 'İ' into 'i̇')
    words = ASCII_WORD.findall(text.encode("ascii", "replace").lower())
    english = sum(map(ENGLISH_BYTES.__contains__, words))
    return "en" if words and english / len(words) >= 0.15 else "latin (non-English)"


def guess_language(text: str) -> str:
    """'zh', 'ja', 'ko', 'en', 'latin (non-English)', 'cyrillic', ... or 'none' for text without letters."""
    text = text[:SAMPLE_CHARS]
    return _decide(_script_counts(text), text)


def guess_languages(texts: list[str]) -> list[str]:
    """guess_language() of each text: the letters are counted for all texts at once with numpy when it
    is installed (the same counts, so the same guesses), else one text at a time."""
    samples = [text[:SAMPLE_CHARS] for text in texts]
    try:
        import numpy
    except ImportError:
        return [_decide(_script_counts(text), text) for text in samples]
    counts = [_script_counts(text) if text.isascii() else None for text in samples]  # ASCII: cheap in Python
    rest = [i for i, c in enumerate(counts) if c is None]
    for start in range(0, len(rest), CHUNK_RECORDS):
        chunk = rest[start : start + CHUNK_RECORDS]
        for i, row in zip(chunk, _numpy_counts([samples[i] for i in chunk], numpy)):
            counts[i] = row
    return list(map(_decide, counts, samples))


_TABLE: list = []  # code point -> 1 + the script's place in SCRIPTS, 0 for none; built once


def _numpy_counts(samples: list[str], np: Any) -> list[list[int]]:
    if not _TABLE:
        table = np.zeros(0x110000, dtype=np.uint8)
        for place, name in enumerate(NAMES):
            for low, high in RANGES[name]:
                table[low : high + 1] = place + 1
        _TABLE.append(table)
    lengths = np.fromiter(map(len, samples), dtype=np.int64, count=len(samples))
    cp = np.frombuffer("".join(samples).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    owner = np.repeat(np.arange(len(samples), dtype=np.int64), lengths)
    width = len(NAMES) + 1
    counts = np.bincount(owner * width + _TABLE[0][cp], minlength=len(samples) * width)
    return [row[1:] for row in counts.reshape(len(samples), width).tolist()]
