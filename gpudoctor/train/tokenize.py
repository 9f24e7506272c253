"""Tokenize a dataset once: input ids plus labels that are -100 outside the responses, cached by content hash.

The cache key covers the data file's bytes, the tokenizer's files, the template path, seq_len and
--truncate, so any change re-tokenizes and nothing stale is ever reused.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_bytes
from gpudoctor.data.records import Dataset
from gpudoctor.errors import BadInput
from gpudoctor.train.formatting import segments_for

IGNORE = -100  # the label PyTorch's cross-entropy skips
CACHE_VERSION = "1"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt",
)


@dataclass
class Sample:
    record: int  # 1-based record number
    input_ids: list[int]
    labels: list[int]


@dataclass
class Tokenized:
    samples: list[Sample]
    truncated: int  # samples cut to seq_len by --truncate
    dropped: int  # samples left with no response token after truncation
    cache_file: str | None = None
    from_cache: bool = False


def tokenize_record_segments(segments: list[tuple[str, bool]], tokenizer: Any, add_special: bool) -> tuple[list[int], list[int]]:
    """Tokenize the joined text once; a token is trainable when its last character lies in a trainable segment.

    (A token that straddles the prompt/reply boundary, like " Hello" after "assistant:", is part of the reply.)
    """
    text = "".join(s for s, _ in segments)
    spans, start = [], 0
    for piece, trainable in segments:
        if trainable:
            spans.append((start, start + len(piece)))
        start += len(piece)
    encoded = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    labels = []
    for token, (begin, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        inside = end > begin and any(a < end <= b for a, b in spans)
        labels.append(token if inside else IGNORE)
    return list(encoded["input_ids"]), labels


def cache_key(data_path: str, tokenizer_dir: str, seq_len: int, truncate: bool) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{seq_len}|{truncate}|".encode())
    digest.update(Path(data_path).read_bytes())
    for name in TOKENIZER_FILES:
        path = Path(tokenizer_dir) / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def tokenize_dataset(dataset: Dataset, tokenizer: Any, seq_len: int, *, truncate: bool = False) -> Tokenized:
    """Every record → Sample; a record longer than seq_len is an error naming it unless `truncate`."""
    samples: list[Sample] = []
    truncated = dropped = 0
    use_template = bool(getattr(tokenizer, "chat_template", None))
    too_long: list[tuple[int, int]] = []
    for record in dataset.records:
        segments = segments_for(record, tokenizer, dataset.path)
        if not any(trainable and text for text, trainable in segments):
            where = f"line {record.line}" if record.line else f"record {record.number}"
            raise BadInput(f"{dataset.path}: {where} has no assistant reply to learn from; add an output/assistant turn or remove it")
        ids, labels = tokenize_record_segments(segments, tokenizer, add_special=not use_template)
        if len(ids) > seq_len:
            if not truncate:
                too_long.append((record.number, len(ids)))
                continue
            ids, labels = ids[:seq_len], labels[:seq_len]
            truncated += 1
            if all(label == IGNORE for label in labels):
                dropped += 1
                continue
        samples.append(Sample(record.number, ids, labels))
    if too_long:
        number, length = too_long[0]
        others = f" (and {len(too_long) - 1} more records, the longest {max(n for _, n in too_long)} tokens)" if len(too_long) > 1 else ""
        raise BadInput(
            f"{dataset.path}: record {number} is {length} tokens, longer than seq_len {seq_len}{others}; "
            f"pass --seq-len {max(n for _, n in too_long)} or --truncate"
        )
    if not samples:
        raise BadInput(f"{dataset.path}: no record is left to train on after truncation to {seq_len} tokens; raise --seq-len")
    return Tokenized(samples, truncated, dropped)


def save_cache(tokenized: Tokenized, path: Path) -> None:
    import numpy as np

    lengths = np.array([len(s.input_ids) for s in tokenized.samples], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        records=np.array([s.record for s in tokenized.samples], dtype=np.int64),
        lengths=lengths,
        input_ids=np.array([t for s in tokenized.samples for t in s.input_ids], dtype=np.int64),
        labels=np.array([t for s in tokenized.samples for t in s.labels], dtype=np.int64),
        counts=np.array([tokenized.truncated, tokenized.dropped], dtype=np.int64),
    )
    write_bytes(path, buffer.getvalue())


def load_cache(path: Path) -> Tokenized | None:
    import numpy as np

    try:
        with np.load(path) as arrays:
            records, lengths = arrays["records"].tolist(), arrays["lengths"].tolist()
            ids, labels = arrays["input_ids"].tolist(), arrays["labels"].tolist()
            truncated, dropped = arrays["counts"].tolist()
    except (OSError, ValueError, KeyError):
        return None  # unreadable cache: tokenize again
    samples, start = [], 0
    for record, length in zip(records, lengths):
        samples.append(Sample(record, ids[start : start + length], labels[start : start + length]))
        start += length
    return Tokenized(samples, truncated, dropped, str(path), True)


def tokenize_cached(dataset: Dataset, tokenizer: Any, tokenizer_dir: str, seq_len: int, *, truncate: bool, cache_dir: Path) -> Tokenized:
    """Tokenize `dataset`, reusing cache_dir/tokens-<key>.npz when the same inputs were seen before."""
    path = cache_dir / f"tokens-{cache_key(dataset.path, tokenizer_dir, seq_len, truncate)}.npz"
    if path.is_file():
        cached = load_cache(path)
        if cached is not None:
            return cached
    tokenized = tokenize_dataset(dataset, tokenizer, seq_len, truncate=truncate)
    tokenized.cache_file = str(path)
    return tokenized
