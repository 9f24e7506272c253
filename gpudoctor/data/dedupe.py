"""Exact and near-duplicate records.

Exact: the same text after lower-casing and collapsing whitespace. Near: MinHash with one hash
function and bottom-k sketches (Broder 1997, "On the resemblance and containment of documents"):
each record keeps the K smallest hashes of its word 3-shingles (CJK characters count as words);
records sharing two of their CANDIDATE_HASHES smallest hashes are compared, and a pair whose
estimated Jaccard similarity is at least the threshold is a near duplicate. Pure Python, about
50,000 records in a few seconds.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from gpudoctor.data.records import Dataset, Record

K = 64
CANDIDATE_HASHES = 4
MAX_BUCKET_COMPARISONS = 16
RARE_BUCKET = 8
MAX_COMPARISONS = 4  # the candidates sharing most of the smallest hashes
NEAR_THRESHOLD = 0.8
TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+")


@dataclass
class Duplicate:
    index: int  # 0-based record that repeats an earlier one
    of: int  # 0-based earlier record it repeats
    similarity: float  # 1.0 for exact duplicates


@dataclass
class Duplicates:
    exact: list[Duplicate]
    near: list[Duplicate]

    def indexes(self) -> set[int]:
        return {d.index for d in self.exact + self.near}


def record_key_text(record: Record) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in record.messages)


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


_TOKEN_IDS: dict[str, int] = {}


def sketch(text: str) -> list[int]:
    """The K smallest shingle hashes. Tokens hash with crc32 and shingles as tuples of ints, which
    Python hashes the same in every run (unlike str), so reports are reproducible."""
    tokens = TOKEN.findall(text.lower())
    for token in set(tokens).difference(_TOKEN_IDS):
        _TOKEN_IDS[token] = zlib.crc32(token.encode("utf-8"))
    ids = list(map(_TOKEN_IDS.__getitem__, tokens))
    if len(ids) < 3:
        return [hash(tuple(ids))]
    return sorted(set(map(hash, zip(ids, ids[1:], ids[2:]))))[:K]


def similarity(a: list[int] | set[int], b: list[int] | set[int]) -> float:
    """Bottom-k estimate of Jaccard similarity: shared hashes among the k smallest of the union."""
    sa = a if isinstance(a, set) else set(a)
    sb = b if isinstance(b, set) else set(b)
    union = sorted(sa | sb)[:K]
    if not union:
        return 1.0
    return len(sa.intersection(union).intersection(sb)) / len(union)


def find_duplicates(dataset: Dataset, *, near: bool = True, threshold: float = NEAR_THRESHOLD) -> Duplicates:
    """Later records that repeat an earlier one, exactly or nearly."""
    exact: list[Duplicate] = []
    first_seen: dict[str, int] = {}
    unique: list[tuple[int, str]] = []
    for record in dataset.records:
        key = normalise(record_key_text(record))
        if key in first_seen:
            exact.append(Duplicate(record.index, first_seen[key], 1.0))
        else:
            first_seen[key] = record.index
            unique.append((record.index, key))
    near_found: list[Duplicate] = []
    if near:
        buckets: dict[int, list[int]] = defaultdict(list)
        sketches: dict[int, set[int]] = {}  # kept as sets: each record is compared several times
        for index, text in unique:
            mine = sketch(text)
            mine_set = set(mine)
            sketches[index] = mine_set
            best: tuple[float, int] | None = None
            # a candidate from a crowded bucket (a common phrase) must share two of the smallest
            # hashes: a pair with Jaccard similarity 0.8 almost always does, unrelated records rarely
            shared: Counter[int] = Counter()
            rare: set[int] = set()
            for h in mine[:CANDIDATE_HASHES]:
                bucket = buckets[h]
                shared.update(bucket[-MAX_BUCKET_COMPARISONS:])
                if len(bucket) <= RARE_BUCKET:
                    rare.update(bucket)
            candidates = [o for o, count in shared.most_common() if count >= 2 or o in rare]
            for other in candidates[:MAX_COMPARISONS]:
                score = similarity(mine_set, sketches[other])
                if score >= threshold and (best is None or score > best[0]):
                    best = (score, other)
            if best is not None:
                near_found.append(Duplicate(index, best[1], round(best[0], 3)))
            else:  # only originals go into buckets, so each duplicate points at the first of its group
                for h in mine[:CANDIDATE_HASHES]:
                    buckets[h].append(index)
    return Duplicates(exact=exact, near=near_found)
