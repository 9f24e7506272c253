"""Rows for the Trainer: short samples packed into seq_len rows, or one sample per row.

Packed rows carry position_ids that restart at 0 for every sample and no attention mask. With
no mask, transformers (masking_utils.find_packed_sequence_indices) turns restarting position_ids
into a block-diagonal causal mask for the sdpa and eager attention, and flash-attention-2 takes
the same boundaries as variable-length sequences: no token attends across samples. That detection
is skipped when a KV cache exists, so every batch says use_cache=False (tests/train/test_packing.py
shows the leak with a cache and none without).
Padding goes at the end of a row; with a causal mask no real token ever attends to it.

HeaviestFirst is the Trainer's training order with one change: the first epoch opens with its
heaviest rows, so the first optimizer step is the worst case for memory and an out-of-memory comes
at step 1 rather than at step 500 (gpudoctor.train.callbacks.FirstStep measures it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.train.tokenize import IGNORE, Sample


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    records: list[int] = field(default_factory=list)  # 1-based record numbers in this row

    @property
    def real_tokens(self) -> int:
        return len(self.input_ids)


def _row(samples: list[Sample]) -> Row:
    row = Row([], [], [], [])
    for sample in samples:
        row.input_ids += sample.input_ids
        # The first token of a sample is never a target: it would be predicted from the previous sample.
        row.labels += [IGNORE] + sample.labels[1:]
        row.position_ids += list(range(len(sample.input_ids)))
        row.records.append(sample.record)
    return row


def pack(samples: list[Sample], seq_len: int) -> list[Row]:
    """Best-fit decreasing bin packing: each row holds whole samples and at most seq_len tokens."""
    order = sorted(samples, key=lambda s: (-len(s.input_ids), s.record))
    bins: list[list[Sample]] = []
    free: list[tuple[int, int]] = []  # (space left, bin index), kept sorted
    for sample in order:
        need = len(sample.input_ids)
        at = bisect.bisect_left(free, (need, -1))
        if at < len(free):
            space, index = free.pop(at)
            bins[index].append(sample)
            bisect.insort(free, (space - need, index))
        else:
            bins.append([sample])
            bisect.insort(free, (seq_len - need, len(bins) - 1))
    rows = [_row(sorted(b, key=lambda s: s.record)) for b in bins]
    rows.sort(key=lambda r: r.records[0])
    return rows


def unpacked(samples: list[Sample]) -> list[Row]:
    return [_row([s]) for s in samples]


def heaviest_first(order: list[int], lengths: list[int], front: int) -> list[int]:
    """`order` with its `front` longest rows moved to the start, longest first (ties: as in `order`);
    the other rows keep their relative order."""
    rank = {index: at for at, index in enumerate(order)}
    heavy = sorted(order, key=lambda index: (-lengths[index], rank[index]))[: max(0, min(front, len(order)))]
    moved = set(heavy)
    return heavy + [index for index in order if index not in moved]


class HeaviestFirst:
    """The Trainer's seeded shuffle (accelerate's SeedableRandomSampler: torch.randperm seeded with
    data_seed + epoch), except that epoch 0 starts with its `front` longest rows, longest first.

    `front` is the rows of one optimizer step (micro batch x accumulation x processes), which the
    out-of-memory back-off keeps, so a run continued with half micro batches sees the same rows
    in the same steps; resuming skips batches of this same order, so it is exact too."""

    def __init__(self, lengths: list[int], front: int, seed: int) -> None:
        self.lengths, self.front, self.seed = lengths, front, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed + epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        return heaviest_first(order, self.lengths, self.front) if epoch == 0 else order

    def __iter__(self):
        yield from self.order(self.epoch)
        self.epoch += 1  # as SeedableRandomSampler: a next pass without set_epoch is the next epoch


class RowDataset:
    """A map-style dataset of rows (what torch's DataLoader and the Trainer index)."""

    def __init__(self, rows: list[Row], *, count_tokens: bool) -> None:
        self.rows = rows
        self.count_tokens = count_tokens

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        item = {"input_ids": row.input_ids, "labels": row.labels, "position_ids": row.position_ids}
        if self.count_tokens:
            item[TOKENS] = row.real_tokens
        return item


TOKENS = "real_tokens"  # a training batch's real tokens, which the Trainer takes out before the forward


class TokenCounter:
    """Real (non-padding) tokens of the training batches that have trained (trainer.CountsTokens adds each
    batch's after its step): the progress bar and report.json read it. Not counted when collated: the
    DataLoader reads a batch ahead, which never trains when the run stops or a segment ends at a checkpoint."""

    def __init__(self) -> None:
        self.total = 0


class RowCollator:
    """Pads rows to the longest in the batch (pad id, label -100, positions counting on) as tensors. With a
    `counter`, a batch of counted rows (RowDataset count_tokens) carries their real tokens as TOKENS, which
    the Trainer adds to the counter once the batch has trained."""

    def __init__(self, pad_id: int, counter: TokenCounter | None = None) -> None:
        self.pad_id = pad_id
        self.counter = counter

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(item["input_ids"]) for item in items)
        ids, labels, positions = [], [], []
        for item in items:
            gap = width - len(item["input_ids"])
            last = item["position_ids"][-1] if item["position_ids"] else -1
            ids.append(item["input_ids"] + [self.pad_id] * gap)
            labels.append(item["labels"] + [IGNORE] * gap)
            positions.append(item["position_ids"] + list(range(last + 1, last + 1 + gap)))
        batch = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(positions, dtype=torch.long),
            "use_cache": False,
        }
        if self.counter is not None and any(TOKENS in item for item in items):
            batch[TOKENS] = sum(item.get(TOKENS, 0) for item in items)
        return batch
