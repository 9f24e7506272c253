"""Packing: whole samples per row, position_ids restarting per sample, and no attention across samples."""

from __future__ import annotations

import pytest

from gpudoctor.train.packing import TOKENS, RowCollator, RowDataset, TokenCounter, pack, unpacked
from gpudoctor.train.tokenize import IGNORE, Sample


def sample(record: int, length: int) -> Sample:
    return Sample(record, [100 + record] * length, [IGNORE] * (length // 2) + [100 + record] * (length - length // 2))


def test_rows_hold_whole_samples_within_seq_len():
    samples = [sample(i + 1, n) for i, n in enumerate([50, 30, 90, 10, 60, 40, 20, 70])]
    rows = pack(samples, 100)
    assert sorted(r for row in rows for r in row.records) == list(range(1, 9))
    assert all(len(row.input_ids) <= 100 for row in rows)
    assert len(rows) == 4  # 370 tokens: best-fit decreasing needs only ⌈370/100⌉ rows


def test_position_ids_restart_and_first_label_is_masked():
    (row,) = pack([sample(1, 4), sample(2, 3)], 16)
    assert row.position_ids == [0, 1, 2, 3, 0, 1, 2]
    assert row.labels[0] == IGNORE and row.labels[4] == IGNORE
    assert row.labels[2:4] == [101, 101] and row.labels[5:] == [102, 102]


def test_collator_pads_at_the_end_and_counts_real_tokens():
    counter = TokenCounter()
    rows = RowDataset(unpacked([sample(1, 3), sample(2, 5)]), count_tokens=True)
    batch = RowCollator(pad_id=3, counter=counter)([rows[0], rows[1]])
    assert batch["input_ids"][0].tolist() == [101, 101, 101, 3, 3]
    assert batch["labels"][0].tolist()[3:] == [IGNORE, IGNORE]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4]  # padding continues: no false sample boundary
    assert batch[TOKENS] == 8 and counter.total == 0  # counted once the batch has trained (trainer.CountsTokens)
    assert TOKENS not in RowCollator(pad_id=3)([rows[0], rows[1]])  # nothing to count into: the model's inputs only


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_row_gives_the_same_logits_as_separate_samples(tiny_model, attn):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), attn_implementation=attn, dtype=torch.float32)
    model.eval()
    first, second = list(range(10, 27)), list(range(40, 51))
    (row,) = pack([Sample(1, first, first), Sample(2, second, second)], 64)
    with torch.no_grad():
        packed = model(input_ids=torch.tensor([row.input_ids]), position_ids=torch.tensor([row.position_ids]), use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in (first, second)]
    torch.testing.assert_close(packed[: len(first)], alone[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[len(first) :], alone[1], atol=1e-4, rtol=1e-4)


def test_packed_row_leaks_when_a_cache_is_used(tiny_model):
    """Why every batch carries use_cache=False: with a KV cache transformers skips the packed-sequence mask."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    first, second = list(range(10, 27)), list(range(40, 51))
    (row,) = pack([Sample(1, first, first), Sample(2, second, second)], 64)
    with torch.no_grad():
        cached = model(input_ids=torch.tensor([row.input_ids]), position_ids=torch.tensor([row.position_ids]), use_cache=True).logits[0]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    assert not torch.allclose(cached[len(first) :], alone, atol=1e-3)
    batch = RowCollator(pad_id=0)([RowDataset([row], count_tokens=False)[0]])
    assert batch["use_cache"] is False
