"""`data check` gives the same report after its speed-ups: digests of whole reports pinned before them.

The records are built here (English, Chinese, Japanese, Korean, Cyrillic, accented Latin, planted personal
data, exact and near duplicates), so the test needs no downloads; when the public demo sets sit in
../shared/datasets the bench's 5,000-record mix is pinned too. Each report is also taken with numpy hidden,
which must not change a single value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from gpudoctor.data.check import check_dataset
from gpudoctor.data.lang import guess_language, guess_languages
from gpudoctor.data.load import load_dataset
from gpudoctor.data.stats import compute_stats

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"

PIECES = [
    "the model learns what the replies share, so check the data before training",
    "Please reset my password, I cannot log in since Monday",
    "Der Kunde möchte die Rechnung erneut erhalten, bitte prüfen Sie das Konto",
    "Le colis n'est pas arrivé, pouvez-vous vérifier le numéro de suivi?",
    "请帮我查询一下订单的物流信息，谢谢",
    "这个模型的训练数据需要先去重，然后再检查语言分布",
    "ご注文の商品は明日発送される予定です。よろしくお願いします",
    "주문하신 상품은 내일 발송될 예정입니다",
    "Спасибо за ваше письмо, мы ответим в течение дня",
    "Call +44 20 7946 0958 or write to sarah.jones@example.com",
    "My card is 4111 1111 1111 1111 and the invoice INV-2024-53407",
    "Best regards,\nJennifer Alvarez\nNorthwind Support",
    "{{ customer_name }} your ticket is open",
    "déjà vu: naïve café façade, São Paulo, Ærø, İstanbul, Kelvin sign K",
    "x = 3 * (4 + 5) / 2; print(x)  # résultat",
    "   ",
    "",
]


def build_records(count: int, seed: int) -> list[dict[str, str]]:
    """Alpaca records joined from random pieces: many share an output, some repeat exactly."""
    rng = random.Random(seed)
    outputs = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6))) for _ in range(60)]
    rows: list[dict[str, str]] = []
    for i in range(count):
        if rows and rng.random() < 0.05:
            rows.append(dict(rng.choice(rows)))
            continue
        instruction = " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
        rows.append({"instruction": instruction, "input": rng.choice(["", rng.choice(PIECES)]), "output": rng.choice(outputs)})
    return rows


def digest(path: Path, **options: object) -> str:
    report = check_dataset(load_dataset(path), **options)
    document = dataclasses.asdict(report)
    for wording in ("path", "scanned", "findings"):  # words that others may rephrase; the findings follow from the rest
        document.pop(wording)
    document.pop("placeholders")  # a figure added after the digests were taken; tested in test_consistent_detail.py
    text = json.dumps(document, ensure_ascii=False).replace(str(path), "FILE")  # no temporary folder names
    return hashlib.sha256(text.encode()).hexdigest()


def without_numpy(fn):  # type: ignore[no-untyped-def]
    saved = sys.modules.get("numpy")
    sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        return fn()
    finally:
        if saved is None:
            del sys.modules["numpy"]
        else:
            sys.modules["numpy"] = saved


# digests of the reports (their figures and record lists) taken before the speed-ups (commit eb57a53),
# without the personal-data scan, whose rules change with their owners' work
BUILT = "62e61180a15d2e010c7f1f41ec76f19ba4b2c9bc00200d48185e465338505796"
DEMO_MIX = "a216f5b35a8ba622ab0d24ed74c2202ebd57f5ff7d62462d54af77e39e465f11"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speed") / "built.json"
    path.write_text(json.dumps(build_records(3000, 7), ensure_ascii=False), encoding="utf-8")
    return path


def test_report_unchanged_on_built_records(built: Path) -> None:
    assert digest(built, pii=False) == BUILT
    assert without_numpy(lambda: digest(built, pii=False)) == BUILT


@pytest.mark.skipif(not (DATASETS / "alpaca_zh_demo.json").is_file(), reason="public demo sets not in ../shared/datasets")
def test_report_unchanged_on_the_bench_mix(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from data_check import build
    finally:
        sys.path.remove(str(REPO / "bench"))
    path = tmp_path / "mix.json"
    build(DATASETS, 5000, path)
    assert digest(path, pii=False) == DEMO_MIX
    assert without_numpy(lambda: digest(path, pii=False)) == DEMO_MIX


def test_language_and_tokens_agree_with_and_without_numpy(built: Path) -> None:
    dataset = load_dataset(built)
    texts = ["\n".join(m.content for m in r.messages) for r in dataset.records]
    assert without_numpy(lambda: guess_languages(texts)) == guess_languages(texts) == [guess_language(t) for t in texts]
    assert without_numpy(lambda: compute_stats(dataset).token_lengths) == compute_stats(dataset).token_lengths
