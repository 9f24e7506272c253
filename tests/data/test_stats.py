"""Token statistics: the stated approximation, and exact counts from a tokenizer.json built here."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers  # the train extra; the approximation needs nothing

from gpudoctor.data.load import load_dataset
from gpudoctor.data.records import Dataset, Message, Record
from gpudoctor.data.stats import TEMPLATE_TOKENS_PER_MESSAGE, approximate_tokens, compute_stats
from gpudoctor.errors import BadInput

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
)


def dataset(*pairs: tuple[str, str]) -> Dataset:
    records = [
        Record(index=i, messages=[Message("user", q), Message("assistant", a)]) for i, (q, a) in enumerate(pairs)
    ]
    return Dataset(path="mem.json", format="messages", container="json", records=records)


@pytest.fixture
def model_dir(tmp_path):
    """A word-level tokenizer: every whitespace-separated word (or punctuation mark) is one token."""
    vocab = {"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for word in "hello world how are you fine thanks user assistant".split():
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_approximation_counts_latin_and_cjk():
    assert approximate_tokens("abcd" * 10) == 10
    assert approximate_tokens("你好世界") == 5  # 4 × 1.25
    stats = compute_stats(dataset(("abcd" * 3, "abcd" * 2)))
    # "abcd"*3 + "\n" + "abcd"*2 = 21 characters
    assert stats.token_lengths == [round(21 / 4) + 2 * TEMPLATE_TOKENS_PER_MESSAGE]
    assert stats.tokenizer.startswith("approximation: 4 characters per token")


def test_exact_counts_from_tokenizer_json_add_template_overhead(model_dir):
    stats = compute_stats(dataset(("hello world", "fine thanks"), ("how are you", "fine")), str(model_dir))
    assert stats.token_lengths == [4 + 2 * TEMPLATE_TOKENS_PER_MESSAGE, 4 + 2 * TEMPLATE_TOKENS_PER_MESSAGE]
    assert stats.records == 2
    assert stats.tokenizer == f"tokenizer.json of {model_dir} (+{TEMPLATE_TOKENS_PER_MESSAGE} per message for the template)"


def test_exact_counts_render_the_chat_template(model_dir):
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    stats = compute_stats(dataset(("hello world", "fine")), str(model_dir / "tokenizer.json"))
    # the word-level tokenizer gives one token per whitespace-separated piece of the rendered text
    rendered = "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\nfine<|im_end|>\n"
    assert stats.token_lengths == [len(rendered.split())]
    assert "chat template" in stats.tokenizer


def test_missing_or_broken_tokenizer_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="has no tokenizer.json"):
        compute_stats(dataset(("a", "b")), str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BadInput, match="not a tokenizer.json"):
        compute_stats(dataset(("a", "b")), str(tmp_path))


def test_real_datasets_have_plausible_lengths(shipped_datasets):
    en = compute_stats(load_dataset(shipped_datasets / "alpaca_en_demo.json"))
    zh = compute_stats(load_dataset(shipped_datasets / "alpaca_zh_demo.json"))
    assert en.records == 205 and zh.records == 204
    # The whole 999/1,000-record files measured 185k (en) and 221k (zh) tokens with a 65k byte-level BPE
    # for the raw JSON text; these subsets hold 20.4% and 19.1% of those characters: ~37.7k and ~42.2k.
    assert 30_000 < sum(en.token_lengths) < 47_000
    assert 32_000 < sum(zh.token_lengths) < 52_000


def test_find_tokenizer_in_a_folder_and_the_hf_cache(model_dir, tmp_path, monkeypatch):
    from gpudoctor.data.stats import find_tokenizer

    assert find_tokenizer(str(model_dir)) == str(model_dir / "tokenizer.json")
    snapshot = tmp_path / "hf" / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert find_tokenizer("acme/tiny") == str(snapshot)
    assert find_tokenizer("acme/absent") is None


def test_check_with_model_uses_its_tokenizer(cli, model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "hello world", "output": "fine thanks"}) + "\n", encoding="utf-8")
    result = cli("data", "check", data, "--model", model_dir, "--json")
    report = json.loads(result.stdout)
    assert report["tokens"]["total"] == 4 + 2 * TEMPLATE_TOKENS_PER_MESSAGE
    assert report["tokens"]["tokenizer"].startswith(f"tokenizer.json of {model_dir}")
