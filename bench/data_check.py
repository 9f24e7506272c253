"""Benchmark `data check` on a 50,000-record file built from the public demo sets, and measure the PII scanner.

Run: .venv/bin/python bench/data_check.py [--records 50000] [--datasets ../shared/datasets]
Prints wall and CPU seconds (CPU includes the scan's worker processes) and records/s for loading, each
part of the check, and the whole `data check` command (in this process: its imports are not counted), then
the scanner's recall on the labelled test set and the replacements it makes on alpaca_en_demo.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.cli.main import run  # noqa: E402
from gpudoctor.data.consistent import consistent_details  # noqa: E402
from gpudoctor.data.dedupe import find_duplicates  # noqa: E402
from gpudoctor.data.lang import guess_languages  # noqa: E402
from gpudoctor.data.load import load_dataset  # noqa: E402
from gpudoctor.data.pii import find_pii  # noqa: E402
from gpudoctor.data.stats import compute_stats  # noqa: E402


def build(datasets: Path, count: int, target: Path) -> None:
    """Records whose instruction and output come from two different demo records (so that few are
    duplicates, as in real data), with a little PII sprinkled in."""
    rng = random.Random(0)
    pool = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        pool += json.loads((datasets / name).read_text(encoding="utf-8"))
    extras = [" Contact sarah.jones@example.com.", " Call +44 20 7946 0958.", " 请联系王小明。", ""]
    rows = []
    for i in range(count):
        row = dict(rng.choice(pool))
        row["output"] = rng.choice(pool)["output"]
        row["instruction"] = f"{row['instruction']}{rng.choice(extras)}"
        rows.append(row)
    target.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def without_numpy(fn):
    """fn() on the pure-Python path that find_duplicates takes when numpy is not installed."""
    saved = sys.modules.get("numpy")
    sys.modules["numpy"] = None  # type: ignore[assignment]  # `import numpy` now raises ImportError
    try:
        return fn()
    finally:
        sys.modules["numpy"] = saved  # type: ignore[assignment]


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the personal-data scan's process pool)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(label: str, records: int, fn):
    start, cpu = time.perf_counter(), _cpu()
    value = fn()
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    print(f"{label:<34} {seconds:7.2f} s wall {cpu:7.2f} s CPU  {records / seconds:>10,.0f} records/s")
    return value


def pii_measurements(datasets: Path) -> None:
    fixtures = REPO / "tests" / "fixtures" / "data"
    rows = [json.loads(line) for line in (fixtures / "pii_names.jsonl").read_text(encoding="utf-8").splitlines()]
    for label, use_nlp in (("core", False), ("with nlp extra", True)):
        for script, test in (("English", str.isascii), ("Chinese", lambda s: not s.isascii())):
            labelled = [(r["text"], n) for r in rows for n in r["names"] if test(n)]
            hit = 0
            for text, name in labelled:
                start = text.index(name)
                hit += any(s.kind == "NAME" and s.start <= start and s.end >= start + len(name) for s in find_pii(text, use_nlp=use_nlp))
            print(f"name recall, {script:<8} {label:<15} {hit}/{len(labelled)} = {hit / len(labelled):.1%}")
    negatives = (fixtures / "pii_negatives.txt").read_text(encoding="utf-8").splitlines()
    flagged = sum(bool(find_pii(line)) for line in negatives)
    print(f"negative sentences flagged          {flagged}/{len(negatives)}")
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        data = load_dataset(datasets / name)
        kinds: Counter[str] = Counter()
        values: Counter[tuple[str, str]] = Counter()
        for record in data.records:
            for message in record.messages:
                for span in find_pii(message.content):
                    kinds[span.kind] += 1
                    values[(span.kind, span.text)] += 1
        print(f"replacements in {name}: {dict(kinds)} ({len(values)} distinct values)")
        print("  most frequent: " + ", ".join(f"{k}:{v}×{n}" for (k, v), n in values.most_common(12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.json"
        build(args.datasets, args.records, path)
        n = args.records
        print(f"file: {n:,} records, {path.stat().st_size / 1e6:.1f} MB")
        data = timed("load", n, lambda: load_dataset(path))
        timed("token lengths (approximation)", n, lambda: compute_stats(data))
        texts = ["\n".join(m.content for m in r.messages) for r in data.records]
        timed("language guesses", n, lambda: guess_languages(texts))
        timed("exact + near duplicates", n, lambda: find_duplicates(data))
        timed("exact + near duplicates, no numpy", n, lambda: without_numpy(lambda: find_duplicates(data)))
        timed("consistent details", n, lambda: consistent_details(data))
        timed("personal data scan (core rules)", n, lambda: [find_pii(m.content, use_nlp=False) for r in data.records for m in r.messages])
        for label, flags in (("data check --no-pii", ["--no-pii"]), ("data check", []), ("data check --nlp", ["--nlp"])):
            timed(f"{label} (whole command)", n, lambda: quiet(run, ["data", "check", str(path), *flags]))
    pii_measurements(args.datasets)


if __name__ == "__main__":
    main()
