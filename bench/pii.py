"""Recall of the personal-data scrubber per kind and per locale on the labelled set, and its keep rate.

Run: .venv/bin/python bench/pii.py [--split dev|holdout|blind|all] [--no-nlp] [--misses name] [--set PATH]
The blind sets: --set tests/fixtures/data/pii_blind/records.jsonl (and records_b2 … records_b5.jsonl) --split all.

A planted value counts as found when it is gone from the scrubbed text (every occurrence as a whole
word; a multi-word name only when every word of it is gone, lower-case particles like "de" aside). A must-keep string counts as kept when
it occurs in the scrubbed text as often as in the original. With the optional named-entity backend
installed (gpudoctor.data.pii.ner finds a model in the user's cache) the figures are printed again
with it switched on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.data.pii import find_pii  # noqa: E402
from gpudoctor.data.pii import ner  # noqa: E402

SET = REPO / "tests" / "fixtures" / "data" / "pii_set" / "records.jsonl"
LOCALES = ("en_US", "en_GB", "en_IN", "zh_CN", "de_DE", "fr_FR", "es_ES")


def load(path: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split == "all" or r["split"] == split]


def scrub(text: str, *, use_nlp: bool, use_ner: bool) -> str:
    pieces, last = [], 0
    for span in find_pii(text, use_nlp=use_nlp, use_ner=use_ner):
        pieces += [text[last : span.start], f"<{span.kind}>"]
        last = span.end
    return "".join(pieces) + text[last:]


def present(part: str, text: str) -> bool:
    """`part` still in `text`; Latin-script parts as whole words only (not inside a longer word)."""
    if not re.match(r"\w", part[0]) or re.match(r"[\u4e00-\u9fff]", part[0]):
        return part in text
    return re.search(rf"(?<![^\W_]){re.escape(part)}(?![^\W_])", text) is not None


PARTICLES = frozenset("de del la las los van von der den da di du dos das le ten zu y i e".split())


def found(value: str, kind: str, scrubbed: str) -> bool:
    parts = value.split() if kind == "name" else [value]
    if kind == "name" and len(parts) > 1:  # "María de la Fuente": "de", "la" stay in the rest of the text
        parts = [p for p in parts if p not in PARTICLES]
    return not any(present(p, scrubbed) for p in parts)


def score(rows: list[dict], *, use_nlp: bool = True, use_ner: bool = False) -> dict:
    """{'recall': {(kind, locale): [hit, total]}, 'keep': {locale: [kept, total]}, 'misses': [...]}"""
    recall: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    keep: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[tuple[str, str, str, str]] = []
    for row in rows:
        text, locale = row["text"], row["locale"]
        scrubbed = scrub(text, use_nlp=use_nlp, use_ner=use_ner)
        for item in row["pii"]:
            ok = found(item["value"], item["kind"], scrubbed)
            for key in ((item["kind"], locale), (item["kind"], "all")):
                recall[key][0] += ok
                recall[key][1] += 1
            if not ok:
                misses.append((row["id"], item["kind"], item["value"], text))
        for value in row["keep"]:
            ok = scrubbed.count(value) >= text.count(value)
            for key in (locale, "all"):
                keep[key][0] += ok
                keep[key][1] += 1
            if not ok:
                misses.append((row["id"], "keep", value, scrubbed))
    return {"recall": dict(recall), "keep": dict(keep), "misses": misses}


def _cell(pair: list[int] | None) -> str:
    if not pair or not pair[1]:
        return "-"
    return f"{pair[0]}/{pair[1]} {100 * pair[0] / pair[1]:.1f}%"


def table(result: dict) -> str:
    kinds = sorted({k for k, _ in result["recall"]}, key=lambda k: (k != "name", k))
    columns = [*LOCALES, "all"]
    lines = ["kind     " + "".join(f"{c:>18}" for c in columns)]
    for kind in kinds:
        lines.append(f"{kind:<9}" + "".join(f"{_cell(result['recall'].get((kind, c))):>18}" for c in columns))
    lines.append(f"{'keep':<9}" + "".join(f"{_cell(result['keep'].get(c)):>18}" for c in columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "holdout", "blind", "all"), default="dev")
    parser.add_argument("--set", type=Path, default=SET)
    parser.add_argument("--no-nlp", action="store_true", help="without jieba (the nlp extra)")
    parser.add_argument("--misses", default="", help="print misses of these kinds (comma list; 'keep' too)")
    args = parser.parse_args(argv)
    rows = load(args.set, args.split)
    print(f"{len(rows)} records ({args.split}), nlp={'off' if args.no_nlp else 'on'}")
    result = score(rows, use_nlp=not args.no_nlp)
    print(table(result))
    wanted = set(filter(None, args.misses.split(",")))
    for rid, kind, value, text in result["misses"]:
        if kind in wanted:
            print(f"  MISS {rid} {kind} {value!r}: {text[:160]!r}")
    backend = ner.backend()
    if backend is None:
        print(f"\nnamed-entity backend: not installed ({ner.why_not()})")
    else:
        print(f"\nwith the named-entity backend ({backend.description}):")
        print(table(score(rows, use_nlp=not args.no_nlp, use_ner=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
