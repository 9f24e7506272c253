"""Exact and near-duplicate records.

Exact: the same text after lower-casing and collapsing whitespace. Near: MinHash with one hash
function and bottom-k sketches (Broder 1997, "On the resemblance and containment of documents"):
each record keeps the K smallest hashes of its word 3-shingles (CJK characters count as words);
records sharing two of their CANDIDATE_HASHES smallest hashes are compared, and a pair whose
estimated Jaccard similarity is at least the threshold is a near duplicate.

Hashes are the same in every run: a token hashes with crc32 and a shingle to CPython's hash of
the tuple of its token hashes (xxHash-based and fixed for ints, unlike str). find_duplicates
computes all sketches at once with numpy when it is installed (50,000 records in about a second)
and otherwise one by one with sketch(); both give the same values, so the same duplicates. A
candidate pair that cannot reach the threshold is ruled out by one set intersection.
"""

from __future__ import annotations

import re
import sys
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from gpudoctor.data.load import gc_paused
from gpudoctor.data.records import Dataset, Record

K = 64
CANDIDATE_HASHES = 4
MAX_BUCKET_COMPARISONS = 16
RARE_BUCKET = 8
MAX_COMPARISONS = 4  # the candidates sharing most of the smallest hashes
NEAR_THRESHOLD = 0.8
CJK = r"\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
TOKEN = re.compile(rf"[{CJK}]|[^\W{CJK}]+")
ASCII_TOKEN = re.compile(r"\w+")  # the same tokens as TOKEN for ASCII text, found faster
WORD_CHAR = re.compile(r"\w")

MASK = (1 << 64) - 1
EMPTY = 1 << 63  # no crc32 is this large
FIRST_TABLE = 1 << 16  # slots in the numpy path's token table at first (a power of 2)
BASE = 1099511628211  # odd, so it has an inverse mod 2**64: a token's key on the numpy path
# CPython's tuple hash for 64-bit builds (Objects/tupleobject.c, unchanged since 3.8)
XXPRIME_1 = 11400714785074694791
XXPRIME_2 = 14029467366897019727
XXPRIME_5 = 2870177450012600261
TRIPLE_TAIL = 3 ^ (XXPRIME_5 ^ 3527539)
CHUNK_CHARS = 1 << 19  # numpy works on this many characters at a time (measured: 2**19 is fastest)
CHUNK_RECORDS = 1 << 16  # record numbers within a chunk fit 16 bits
LONGEST_FOR_NUMPY = 1 << 22  # longer texts take the pure-Python path (keeps the power tables small)
_TUPLE_HASH_KNOWN = sys.implementation.name == "cpython" and sys.hash_info.width == 64  # numpy path reproduces it


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
    """The K smallest shingle hashes (sorted). Tokens hash with crc32 and shingles as tuples of ints,
    which Python hashes the same in every run (unlike str), so reports are reproducible."""
    lowered = text.lower()
    tokens = (ASCII_TOKEN if lowered.isascii() else TOKEN).findall(lowered)
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


def _score_if_near(a: list[int], a_set: set[int], b: list[int], b_set: set[int], threshold: float) -> float:
    """similarity(a, b) of two sketches (sorted lists, with their sets) when it reaches the
    threshold, else 0.0. At most all shared hashes are among the min(K, union) smallest, so most
    pairs are ruled out by one set intersection."""
    count = len(a_set & b_set)
    union = len(a) + len(b) - count
    size = min(K, union)
    if not size:
        return 1.0
    if count / size < threshold:
        return 0.0
    if union <= K:
        return count / size
    if not count:
        return 0.0
    # the union's hashes beyond the K smallest are its union - K largest: walk down both sketches
    # from their ends (at most 12 steps when the pair can reach 0.8), counting the shared ones left out
    i, j, left_out = len(a) - 1, len(b) - 1, 0
    for _ in range(union - K):  # never runs off either sketch: count >= 1 and len(b) <= K
        x, y = a[i], b[j]
        if x == y:
            left_out += 1
            i -= 1
            j -= 1
        elif x > y:
            i -= 1
        else:
            j -= 1
    low = count - left_out
    return low / size if low / size >= threshold else 0.0


def sketches(texts: Sequence[str], *, lowered: bool = False) -> list[list[int]]:
    """sketch() of each text: with numpy when it is installed, else one by one. lowered=True
    promises the texts are lower-case already (str.lower changes nothing then)."""
    try:
        import numpy
    except ImportError:
        return [sketch(text) for text in texts]
    if not _TUPLE_HASH_KNOWN:
        return [sketch(text) for text in texts]
    return _numpy_sketches(texts if lowered else [text.lower() for text in texts], numpy)


def _numpy_sketches(texts: Sequence[str], np: Any) -> list[list[int]]:
    found: list[list[int]] = []
    chunk: list[str] = []
    size = 0
    for text in texts:
        if len(text) > LONGEST_FOR_NUMPY:
            found += _numpy_chunk(chunk, np) if chunk else []
            found.append(sketch(text))
            chunk, size = [], 0
            continue
        chunk.append(text)
        size += len(text)
        if size >= CHUNK_CHARS or len(chunk) == CHUNK_RECORDS:
            found += _numpy_chunk(chunk, np)
            chunk, size = [], 0
    return found + (_numpy_chunk(chunk, np) if chunk else [])


class _Tables:
    """Per-process tables for the numpy path, grown on demand."""

    word: Any = None  # code point -> 0 unknown, 1 word character, 2 not
    powers: Any = None  # BASE**i mod 2**64
    inverse_powers: Any = None  # BASE**-i mod 2**64
    keys: Any = None  # hash table of the tokens met so far: polynomial key -> crc32 (EMPTY if none)
    ids: Any = None


def _word_chars(cp: Any, np: Any) -> Any:
    if _Tables.word is None:
        _Tables.word = np.zeros(0x110000, dtype=np.uint8)
    table = _Tables.word
    kinds = table[cp]
    unknown = kinds == 0
    if unknown.any():
        for point in np.unique(cp[unknown]).tolist():
            table[point] = 1 if WORD_CHAR.match(chr(point)) else 2
        kinds = table[cp]
    return kinds == 1


def _powers(n: int, np: Any) -> tuple[Any, Any]:
    if _Tables.powers is None or len(_Tables.powers) < n:
        size = max(2 * n, 2 * CHUNK_CHARS)  # room for the chunks to come
        powers = np.full(size, BASE, dtype=np.uint64)
        powers[0] = 1
        inverse = np.full(size, pow(BASE, -1, 1 << 64), dtype=np.uint64)
        inverse[0] = 1
        _Tables.powers, _Tables.inverse_powers = np.cumprod(powers), np.cumprod(inverse)  # wraps mod 2**64
    return _Tables.powers[:n], _Tables.inverse_powers[:n]


def _token_ids(keys: Any, starts: Any, ends: Any, joined: str, np: Any) -> Any:
    """crc32 of each token, as sketch() hashes it, found by the token's polynomial key in an
    open-addressing table; crc32 runs once per distinct token (two tokens sharing a 64-bit key are
    vanishingly unlikely)."""
    ids = _lookup(keys, np)
    unknown = ids == EMPTY
    if unknown.any():
        new_keys, first = np.unique(keys[unknown], return_index=True)
        where = np.flatnonzero(unknown)[first]
        spans = zip(starts[where].tolist(), ends[where].tolist())
        _insert(new_keys.tolist(), [zlib.crc32(joined[s:e].encode("utf-8")) for s, e in spans], np)
        ids[unknown] = _lookup(keys[unknown], np)
    return ids


def _slots(keys: Any, bits: int, np: Any) -> Any:
    return (keys * np.uint64(XXPRIME_1)) >> np.uint64(64 - bits)  # Fibonacci hashing


def _lookup(keys: Any, np: Any) -> Any:
    """The id stored for each key, or EMPTY."""
    if _Tables.ids is None:
        _Tables.keys = np.zeros(FIRST_TABLE, dtype=np.uint64)
        _Tables.ids = np.full(FIRST_TABLE, EMPTY, dtype=np.uint64)
    size = len(_Tables.ids)
    found = np.full(len(keys), EMPTY, dtype=np.uint64)
    pending = np.arange(len(keys))
    slots = _slots(keys, size.bit_length() - 1, np)
    while len(pending):
        stored = _Tables.ids[slots]
        hit = (_Tables.keys[slots] == keys[pending]) & (stored != EMPTY)
        found[pending[hit]] = stored[hit]
        probe_on = ~hit & (stored != EMPTY)  # a different key sits here: try the next slot
        pending, slots = pending[probe_on], (slots[probe_on] + 1) & np.uint64(size - 1)
    return found


def _insert(keys: list[int], ids: list[int], np: Any) -> None:
    entries = list(zip(keys, ids))
    table_keys, table_ids = _Tables.keys, _Tables.ids
    used = len(table_ids) - int(np.count_nonzero(table_ids == EMPTY))
    if (used + len(entries)) * 4 > len(table_ids):  # grow, to keep probe chains short
        full = table_ids != EMPTY
        entries += zip(table_keys[full].tolist(), table_ids[full].tolist())
        size = len(table_ids) * 2
        while len(entries) * 4 > size:
            size *= 2
        table_keys, table_ids = np.zeros(size, dtype=np.uint64), np.full(size, EMPTY, dtype=np.uint64)
    size = len(table_ids)
    slots = _slots(np.array([key for key, _ in entries], dtype=np.uint64), size.bit_length() - 1, np).tolist()
    for (key, value), slot in zip(entries, slots):
        while table_ids[slot] != EMPTY:
            slot = (slot + 1) & (size - 1)
        table_keys[slot], table_ids[slot] = key, value
    _Tables.keys, _Tables.ids = table_keys, table_ids


def _numpy_chunk(lowered: list[str], np: Any) -> list[list[int]]:
    """sketch() of each lower-case text, vectorised: the same tokens (runs of word characters, or
    one CJK character), token ids and tuple hashes, taken over one string holding the whole chunk."""
    lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
    record_starts = np.cumsum(lengths + 1) - lengths - 1
    joined = "\n".join(lowered) + "\n"  # a separator is no word character, so tokens end at it
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cjk = ((cp >= 0x3040) & (cp <= 0x30FF)) | ((cp >= 0x3400) & (cp <= 0x9FFF)) | ((cp >= 0xAC00) & (cp <= 0xD7AF))
    word = _word_chars(cp, np) & ~cjk
    before = np.concatenate(([False], word[:-1]))
    after = np.concatenate((word[1:], [False]))
    starts = np.flatnonzero((word & ~before) | cjk)
    ends = np.flatnonzero((word & ~after) | cjk) + 1
    powers, inverse = _powers(len(cp), np)
    prefix = np.zeros(len(cp) + 1, dtype=np.uint64)
    np.cumsum(cp.astype(np.uint64) * powers, out=prefix[1:])
    keys = (prefix[ends] - prefix[starts]) * inverse[starts]  # sum(code point × BASE**position)
    ids = _token_ids(keys, starts, ends, joined, np)
    owner = np.searchsorted(record_starts, starts, side="right") - 1
    tokens_per_record = np.bincount(owner, minlength=len(lowered))
    whole = owner[:-2] == owner[2:]  # shingles that do not cross records
    acc = np.full(int(whole.sum()), XXPRIME_5, dtype=np.uint64)
    for lane in (ids[:-2][whole], ids[1:-1][whole], ids[2:][whole]):
        acc += lane * np.uint64(XXPRIME_2)
        acc = (acc << np.uint64(31)) | (acc >> np.uint64(33))
        acc *= np.uint64(XXPRIME_1)
    acc += np.uint64(TRIPLE_TAIL)
    values = acc.view(np.int64)
    values[acc == np.uint64(MASK)] = 1546275796  # CPython never returns -1 as a hash
    shingle_owner = owner[:-2][whole]
    by_value = np.argsort(values)
    order = by_value[np.argsort(shingle_owner[by_value].astype(np.uint16), kind="stable")]  # a radix sort
    values, shingle_owner = values[order], shingle_owner[order]
    fresh = np.ones(len(values), dtype=bool)
    fresh[1:] = (values[1:] != values[:-1]) | (shingle_owner[1:] != shingle_owner[:-1])
    values, shingle_owner = values[fresh], shingle_owner[fresh]
    position = np.arange(len(values))
    first = np.ones(len(values), dtype=bool)
    first[1:] = shingle_owner[1:] != shingle_owner[:-1]
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    keep = rank < K
    values, shingle_owner = values[keep].tolist(), shingle_owner[keep]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(shingle_owner, minlength=len(lowered))))).tolist()
    short = (tokens_per_record < 3).tolist()
    return [sketch(text) if short[i] else values[bounds[i] : bounds[i + 1]] for i, text in enumerate(lowered)]


def _candidates(crowds: list[list[int]]) -> list[int]:
    """The originals to compare with: those in two or more of the crowds (each crowd's newest
    MAX_BUCKET_COMPARISONS), most shared first, then the other members of rare buckets; at most
    MAX_COMPARISONS. Ties keep the order first met, as a stable sort of Counter.most_common would."""
    if len(crowds) == 1:  # every count is 1: only a rare bucket's members qualify
        return crowds[0][:MAX_COMPARISONS] if len(crowds[0]) <= RARE_BUCKET else []
    shared = Counter(chain.from_iterable([bucket[-MAX_BUCKET_COMPARISONS:] for bucket in crowds]))
    found = [other for other, count in shared.items() if count >= 2]
    if len(found) > 1:
        found.sort(key=shared.__getitem__, reverse=True)  # stable
    if len(found) < MAX_COMPARISONS:
        rare = {other for bucket in crowds if len(bucket) <= RARE_BUCKET for other in bucket}
        if rare:
            found += [other for other, count in shared.items() if count == 1 and other in rare]
    return found[:MAX_COMPARISONS]


def find_duplicates(dataset: Dataset, *, near: bool = True, threshold: float = NEAR_THRESHOLD) -> Duplicates:
    """Later records that repeat an earlier one, exactly or nearly."""
    with gc_paused():  # thousands of sketches and sets: collections would walk them all again and again
        return _find(dataset, near, threshold)


def _find(dataset: Dataset, near: bool, threshold: float) -> Duplicates:
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
        buckets: dict[int, list[int]] = {}
        originals: dict[int, tuple[list[int], set[int]]] = {}  # with a set: each is compared several times
        for (index, _), mine in zip(unique, sketches([text for _, text in unique], lowered=True)):
            heads = mine[:CANDIDATE_HASHES]
            best: tuple[float, int] | None = None
            crowds = [bucket for bucket in map(buckets.get, heads) if bucket]
            mine_set = set(mine)
            if crowds:
                # a candidate from a crowded bucket (a common phrase) must share two of the smallest
                # hashes: a pair with Jaccard similarity 0.8 almost always does, unrelated records rarely
                for other in _candidates(crowds):
                    theirs, their_set = originals[other]
                    score = _score_if_near(mine, mine_set, theirs, their_set, threshold)
                    if score >= threshold and (best is None or score > best[0]):
                        best = (score, other)
            if best is not None:
                near_found.append(Duplicate(index, best[1], round(best[0], 3)))
            else:  # only originals go into buckets, so each duplicate points at the first of its group
                originals[index] = (mine, mine_set)
                for h in heads:
                    buckets.setdefault(h, []).append(index)
    return Duplicates(exact=exact, near=near_found)
