"""How many real failures (tests/doctor/cases) the doctor diagnoses, per split and per failure mode.

    .venv/bin/python bench/doctor_cases.py                 # dev cases (the default)
    .venv/bin/python bench/doctor_cases.py --split holdout # measure only: do not tune on it
    .venv/bin/python bench/doctor_cases.py --split fresh   # gathered last, run once at the end
    .venv/bin/python bench/doctor_cases.py --split all

Each case's facts are laid over a healthy box of its vendor and judged by run_checks (see
tests/doctor/case_bank.py). A case is diagnosed when the cause is named (one error/warning/crash
finding's title or detail holds the case's cause_keywords) and the fix is given (every fix keyword
in some problem finding's fix, no fix the thread showed did not help). Cases marked `visible: false`
(their evidence is in no fact the probe reads) are listed apart and never counted. For each case not
diagnosed, or called ready to train though its failure blocks training (what test_cases.py also
asserts), it prints what went wrong and the doctor's top finding.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "doctor"))

from case_bank import Grade, grade, load_cases, system_facts  # noqa: E402

from gpudoctor.doctor import run_checks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "holdout", "fresh", "all"), default="dev")
    args = parser.parse_args(argv)
    splits = ("dev", "holdout", "fresh") if args.split == "all" else (args.split,)
    for split in splits:
        report(split)
    return 0


def report(split: str) -> None:
    cases = load_cases((split,))
    hidden = [c for c in cases if not c.visible]
    grades = [grade(c, run_checks(system_facts(c))) for c in cases if c.visible]
    diagnosed = sum(g.diagnosed for g in grades)
    print(f"== {split}: {diagnosed}/{len(grades)} diagnosed "
          f"(cause named {sum(g.cause_named for g in grades)}, fix given {sum(g.fix_given for g in grades)}, "
          f"not ready where it blocks {sum(not g.ready for g in grades if g.case.blocks_training)}"
          f"/{sum(g.case.blocks_training for g in grades)}); "
          f"{len(hidden)} not visible to the probe, not counted; test_cases.py passes {sum(g.passes for g in grades)}")
    by_mode: dict[str, list[Grade]] = defaultdict(list)
    for g in grades:
        by_mode[g.case.mode].append(g)
    width = max((len(m) for m in by_mode), default=4)
    print(f"  {'mode':<{width}}  diagnosed  cause  fix")
    for mode in sorted(by_mode, key=lambda m: (-len(by_mode[m]), m)):
        group = by_mode[mode]
        print(f"  {mode:<{width}}  {sum(g.diagnosed for g in group):>4}/{len(group):<4}  "
              f"{sum(g.cause_named for g in group):>5}  {sum(g.fix_given for g in group):>3}")
    failing = [g for g in grades if not (g.diagnosed and g.passes)]
    if failing:
        print("  not diagnosed (or called ready though it blocks training):")
        for g in failing:
            print(f"    {g.case.id}: {why(g)}")
            print(f"      top finding: {top_line(g)}")
    if hidden:
        print("  not visible (not counted):")
        for c in hidden:
            print(f"    {c.id}: {c.raw['why_not_visible']}")
    print()


def why(g: Grade) -> str:
    parts = ["ready to train, though it blocks training"] if g.case.blocks_training and g.ready else []
    if not g.cause_named:
        parts.append(f"cause not named {g.case.cause_keywords}")
    if g.missing_keywords:
        parts.append(f"fix lacks {g.missing_keywords}")
    if g.wrong_fixes_given:
        parts.append("wrong fix given: " + "; ".join(f"{text!r} by {fid}" for text, fid in g.wrong_fixes_given))
    return ", ".join(parts)


def top_line(g: Grade) -> str:
    top = g.top
    if top is None:
        return "none (the doctor found no problem)"
    fix = (top.fix or "no fix").splitlines()[0]
    return f"[{top.status}] {top.id}: {top.title} | fix: {fix}"


if __name__ == "__main__":
    raise SystemExit(main())
