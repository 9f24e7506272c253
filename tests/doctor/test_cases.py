"""The doctor against real failures: each case in tests/doctor/cases (a public issue thread's machine,
cause and accepted fix) is judged by run_checks over a healthy box of its vendor (case_bank.py).

A case passes when every fix keyword occurs in the fix of some error/warning/crash finding, no
finding's fix is one of the fixes the thread showed did not help, and, where the failure blocks
training, the doctor does not call the machine ready (an error finding exists).

Only `split: dev` cases run here. Holdout cases measure the doctor and are not generated at all
unless GPUDOCTOR_HOLDOUT=1 (then they carry the `holdout` marker). Cases marked `visible: false`
(the evidence is in no fact the probe can read) are not judged; bench/doctor_cases.py lists them.
The bank's own consistency (every case loads strictly, its keywords occur in its own fix, new_facts
holds only evidence without a field) is checked for every case, holdout included, without the doctor.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from case_bank import OPTIONAL_KEYS, REQUIRED_KEYS, SPLITS, Case, baseline, grade, load_cases, mentions, system_facts

from gpudoctor.doctor import run_checks
from gpudoctor.probe.facts import HostFacts, LiveFacts, PythonFacts, SystemFacts

HOLDOUT = os.environ.get("GPUDOCTOR_HOLDOUT") == "1"
ALL_CASES = load_cases()


def _params() -> list:
    judged = [c for c in ALL_CASES if c.visible]
    params = [pytest.param(c, id=c.id) for c in judged if c.split == "dev"]
    if HOLDOUT:
        params += [pytest.param(c, id=c.id, marks=pytest.mark.holdout) for c in judged if c.split in ("holdout", "fresh")]
    return params


@pytest.mark.parametrize("case", _params())
def test_the_doctor_names_the_accepted_fix(case: Case):
    result = grade(case, run_checks(system_facts(case)))
    said = "\n".join(f"  [{f.status}] {f.id}: {f.title} | fix: {f.fix}" for f in result.findings if f.status != "ok")
    assert not result.missing_keywords, f"fix lacks {result.missing_keywords}; the doctor said:\n{said or '  nothing'}"
    assert not result.wrong_fixes_given, f"the doctor gave a fix the thread showed did not help: {result.wrong_fixes_given}"
    if case.blocks_training:
        assert not result.ready, f"the doctor calls the machine ready to train; it said:\n{said or '  nothing'}"


@pytest.mark.parametrize("vendor", ["nvidia", "amd"])
def test_the_baseline_is_a_healthy_box(vendor):
    """What a case is laid over has nothing wrong with it, so each finding comes from the case."""
    facts = SystemFacts.from_dict(baseline(vendor))
    assert [f"{f.id}: {f.title}" for f in run_checks(facts) if f.is_problem] == []


# --- the bank itself ----------------------------------------------------------------------------

NEWER_FIELDS = {
    f.name
    for kind in (SystemFacts, HostFacts, PythonFacts, LiveFacts)
    for f in dataclasses.fields(kind)
}


def test_the_bank_has_its_cases():
    assert len(ALL_CASES) >= 58
    assert {c.split for c in ALL_CASES} <= set(SPLITS)
    assert sum(c.split == "dev" for c in ALL_CASES) == 37


def test_every_case_has_the_schema_keys():
    problems = []
    for case in ALL_CASES:
        keys = set(case.raw)
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        unknown = sorted(keys - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if missing or unknown:
            problems.append(f"{case.id}: missing {missing}, unknown {unknown}")
        if not case.cause_keywords:
            problems.append(f"{case.id}: no cause_keywords")
        if len(case.wrong_fix_signs) != len(case.wrong_fixes):
            problems.append(f"{case.id}: one wrong_fix_signs entry per wrong_fixes entry")
        if not case.visible and not case.raw.get("why_not_visible"):
            problems.append(f"{case.id}: visible: false needs why_not_visible")
    assert not problems, "\n".join(problems)


def test_every_case_loads_strictly_over_its_baseline():
    """The case alone and over its baseline load through the strict converter, and the overlay keeps every case value."""
    for case in ALL_CASES:
        SystemFacts.from_dict(case.facts, source=case.id)
        assert within(case.facts, system_facts(case).to_dict()), case.id


def within(part, whole) -> bool:
    """Every value in `part` is in `whole` at the same place (dicts by key, lists item by item)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and within(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) == len(whole) and all(map(within, part, whole))
    return part == whole


def test_every_fix_keyword_is_in_the_cases_own_fix():
    missing = [(c.id, k) for c in ALL_CASES for k in c.fix_keywords if not mentions(c.raw["fix"], k.split("|")[0])]
    assert not missing


def test_new_facts_holds_only_evidence_without_a_field():
    """What has a field lives in `facts`; new_facts keeps the rest (and notes)."""
    clashes = [(c.id, key) for c in ALL_CASES for key in (c.raw.get("new_facts") or {}) if key in NEWER_FIELDS]
    assert not clashes
