"""Split a dataset into train / val / test with a seeded shuffle; every record lands in exactly one part."""

from __future__ import annotations

import random

from gpudoctor.data.records import Dataset
from gpudoctor.data.write import subset
from gpudoctor.errors import BadInput


def _size(share: float, total: int, name: str) -> int:
    count = int(share) if share >= 1 else round(share * total)
    if share >= 1 and share != int(share):
        raise BadInput(f"--{name} {share}: give a share below 1 (0.1) or a whole count (100)")
    return count


def split_dataset(dataset: Dataset, *, val: float, test: float = 0.0, seed: int = 42) -> dict[str, Dataset]:
    total = len(dataset.records)
    n_val, n_test = _size(val, total, "val"), _size(test, total, "test")
    if n_val + n_test >= total:
        raise BadInput(f"{dataset.path}: {total} records cannot give {n_val} val and {n_test} test records and leave any to train")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    parts = {"train": order[n_val + n_test :], "val": order[:n_val], "test": order[n_val : n_val + n_test]}
    return {
        name: subset(dataset, [dataset.records[i] for i in sorted(indexes)])
        for name, indexes in parts.items()
        if indexes or name == "train"
    }
