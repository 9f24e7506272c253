"""Duplicate finding: exact and near duplicates, CJK text, reproducible hashes, and the numpy path
agreeing with the pure-Python one."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.data import dedupe
from gpudoctor.data.dedupe import (
    NEAR_THRESHOLD,
    K,
    find_duplicates,
    similarity,
    sketch,
    sketches,
)
from gpudoctor.data.records import Dataset, Message, Record

WORDS = (
    "model data train token batch memory layer weight learning rate gradient adapter prompt reply "
    "answer question river mountain garden kitchen window paper music story quiet bright slow"
).split()
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"


def text_of(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def hanzi_of(seed: int, chars: int = 60) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(HANZI) for _ in range(chars))


def dataset(*texts: str) -> Dataset:
    records = [Record(index=i, messages=[Message("user", text)]) for i, text in enumerate(texts)]
    return Dataset(path="mem.json", format="messages", container="json", records=records)


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the word 3-shingles of two records' texts, as find_duplicates sees them."""
    shingles = []
    for text in (a, b):
        tokens = ["user", *dedupe.TOKEN.findall(text.lower())]
        shingles.append(set(zip(tokens, tokens[1:], tokens[2:])))
    return len(shingles[0] & shingles[1]) / len(shingles[0] | shingles[1])


def one_word_changed(text: str) -> str:
    if not text.isascii():  # a CJK character is a word
        return text[:30] + "龙" + text[31:]
    words = text.split()
    words[30] = "zebra"
    return " ".join(words)


def test_exact_duplicates_ignore_case_and_spacing():
    found = find_duplicates(dataset("Hello  World", "other reply", "hello world\n", "HELLO WORLD"))
    assert [(d.index, d.of, d.similarity) for d in found.exact] == [(2, 0, 1.0), (3, 0, 1.0)]
    assert found.near == []
    assert found.indexes() == {2, 3}


def test_one_word_changed_in_sixty_is_a_near_duplicate_and_unrelated_text_is_not():
    original, changed = text_of(1), one_word_changed(text_of(1))
    found = find_duplicates(dataset(original, text_of(2), changed, text_of(3)))
    assert found.exact == []
    assert [(d.index, d.of) for d in found.near] == [(2, 0)]
    # one changed word replaces 3 of about 60 shingles; with fewer than K shingles in the union
    # the estimate is the exact Jaccard similarity
    assert found.near[0].similarity == round(jaccard(original, changed), 3) >= 0.85


def test_near_duplicates_off_finds_only_exact_ones():
    original = text_of(1)
    found = find_duplicates(dataset(original, one_word_changed(original), original), near=False)
    assert [(d.index, d.of) for d in found.exact] == [(2, 0)]
    assert found.near == []


def test_cjk_characters_count_as_words():
    original = hanzi_of(4)
    changed = one_word_changed(original)
    found = find_duplicates(dataset(original, hanzi_of(5), changed))
    assert [(d.index, d.of, d.similarity) for d in found.near] == [(2, 0, round(jaccard(original, changed), 3))]
    assert sketch("数据 训练") == sketch("数据训练")  # one token per character, spaces or not


def test_long_texts_use_the_bottom_k_estimate():
    base = text_of(6, words=2000)
    words = base.split()
    for i in range(0, 2000, 100):  # 20 words changed: about 57 of 1998 shingles
        words[i] = "zebra"
    found = find_duplicates(dataset(base, " ".join(words), text_of(7, words=2000)))
    assert len(sketch(base)) == K
    assert [(d.index, d.of) for d in found.near] == [(1, 0)]
    assert abs(found.near[0].similarity - jaccard(base, " ".join(words))) < 0.1


def test_sketches_are_the_same_in_every_process():
    code = (
        "import json; from gpudoctor.data.dedupe import sketch, sketches; "
        "texts = ['the quick brown fox jumps over the lazy dog', '数据训练 model 数据', 'a b']; "
        "print(json.dumps([sketch(t) for t in texts] + sketches(texts)))"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][:3] == outputs[0][3:]


def mixed_texts() -> list[str]:
    rng = random.Random(8)
    pieces = WORDS + list(HANZI) + ["ÉCOLE", "naïve", "Straße", "カタカナ", "한국어", "Привет", "٣٤", "x_y", "😀", "—", "42", "\ud800"]
    texts = ["", "one", "two words", "three words here", "!!! ???"]
    for _ in range(300):
        count = rng.choice((3, 5, 20, 80, 400))
        texts.append(rng.choice((" ", "", ", ", "\n")).join(rng.choice(pieces) for _ in range(count)))
    return texts


def test_numpy_path_gives_the_pure_python_sketches(monkeypatch):
    texts = mixed_texts()
    assert sketches(texts) == [sketch(t) for t in texts]
    monkeypatch.setattr(dedupe, "CHUNK_CHARS", 500)  # many chunks, texts longer than a chunk
    monkeypatch.setattr(dedupe, "FIRST_TABLE", 4)  # a token table that collides and grows
    monkeypatch.setattr(dedupe._Tables, "ids", None)
    monkeypatch.setattr(dedupe._Tables, "keys", None)
    monkeypatch.setattr(dedupe, "LONGEST_FOR_NUMPY", 2000)  # and some taking the pure-Python path
    assert sketches(texts) == [sketch(t) for t in texts]


def test_find_duplicates_is_the_same_without_numpy(monkeypatch):
    rng = random.Random(9)
    originals = [text_of(i) for i in range(40)] + [hanzi_of(i) for i in range(40)]
    replies = originals + [one_word_changed(rng.choice(originals)) for _ in range(40)] + [rng.choice(originals).upper() for _ in range(10)]
    data = dataset(*replies)
    with_numpy = find_duplicates(data)
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    without = find_duplicates(data)
    assert with_numpy == without
    assert len(with_numpy.exact) >= 10 and len(with_numpy.near) >= 20  # not vacuous


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fast_score_agrees_with_similarity(data):
    """Sketches of two overlapping shingle sets, as real near duplicates have."""
    pool = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=K // 2, max_size=3 * K, unique=True))
    a = sorted(data.draw(st.sets(st.sampled_from(pool))) ^ set(pool))[:K]
    b = sorted(data.draw(st.sets(st.sampled_from(pool))) ^ set(pool))[:K]
    threshold = data.draw(st.sampled_from((0.1, 0.5, NEAR_THRESHOLD, 0.95)))
    exact = similarity(a, b)
    assert dedupe._score_if_near(a, set(a), b, set(b), threshold) == (exact if exact >= threshold else 0.0)
