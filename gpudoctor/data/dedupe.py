"""Exact and near-duplicate records.

Exact: the same text after lower-casing and collapsing whitespace. Near: MinHash with one hash
function and bottom-k sketches (Broder 1997, "On the resemblance and containment of documents"):
each record keeps the K smallest hashes of its word 3-shingles (CJK characters count as words);
records sharing one of their CANDIDATE_HASHES smallest hashes are compared, and a pair whose
estimated Jaccard similarity is at least the threshold is a near duplicate. Pure Python, about
50,000 records in a few seconds.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass

from gpudoctor.data.records import Dataset, Record

K = 64
CANDIDATE_HASHES = 4
MAX_BUCKET_COMPARISONS = 16
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


def sketch(text: str) -> list[int]:
    tokens = TOKEN.findall(text.lower())
    shingles = {" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2))}
    # blake2b, not hash(): stable across runs, so reports are reproducible
    hashes = {int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") for s in shingles}
    return sorted(hashes)[:K]


def similarity(a: list[int], b: list[int]) -> float:
    """Bottom-k estimate of Jaccard similarity: shared hashes among the k smallest of the union."""
    union = sorted(set(a) | set(b))[: min(K, len(set(a) | set(b)))]
    if not union:
        return 1.0
    sa, sb = set(a), set(b)
    return sum(1 for h in union if h in sa and h in sb) / len(union)


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
        sketches: dict[int, list[int]] = {}
        for index, text in unique:
            mine = sketch(text)
            sketches[index] = mine
            best: tuple[float, int] | None = None
            for h in mine[:CANDIDATE_HASHES]:
                for other in buckets[h][-MAX_BUCKET_COMPARISONS:]:
                    score = similarity(mine, sketches[other])
                    if score >= threshold and (best is None or score > best[0]):
                        best = (score, other)
            if best is not None:
                near_found.append(Duplicate(index, best[1], round(best[0], 3)))
            else:  # only originals go into buckets, so each duplicate points at the first of its group
                for h in mine[:CANDIDATE_HASHES]:
                    buckets[h].append(index)
    return Duplicates(exact=exact, near=near_found)
