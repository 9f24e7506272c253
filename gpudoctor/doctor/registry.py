"""The list of checks and the runner. The registry owns each check's identity.

A check registers itself with `@check("nvidia.driver_vs_torch", category="Driver")` and returns what
it judged, never who it is: None (nothing to say), one Verdict, or a list of them (see finding.py).
The runner turns every verdict into a Finding carrying the check's id and category. Its docstring's
first line is what `gpudoctor check --list-checks` prints.

A check that raises (or returns something that is not a verdict) becomes one Finding with status
"crash", never a traceback. A crash does not block training, so a bug in the doctor cannot stop a
working machine; `gpudoctor check` still shows it as a crash and exits 1.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from gpudoctor.doctor.finding import CATEGORIES, Finding, Verdict
from gpudoctor.errors import BadInput
from gpudoctor.probe.facts import SystemFacts

CheckResult = Union[Verdict, list[Verdict], None]
CheckFunction = Callable[[SystemFacts], CheckResult]

# Modules whose checks register on import, in the order their checks run.
CHECK_MODULES = (
    "gpudoctor.doctor.gpu",
    "gpudoctor.doctor.nvidia",
    "gpudoctor.doctor.amd",
    "gpudoctor.doctor.python_env",
    "gpudoctor.doctor.live",
    "gpudoctor.doctor.environment",
    "gpudoctor.doctor.host",
)

REPORT_FIX = "gpudoctor check --report   (paste the block into a bug report)"
CRASH_DETAIL = "This is a bug in gpudoctor, not in your machine; the other checks still ran."


@dataclass(frozen=True)
class Check:
    id: str
    category: str
    function: CheckFunction

    @property
    def summary(self) -> str:
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, Check] = {}


def check(check_id: str, *, category: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register `function` as the check `check_id`, whose findings belong to `category`."""
    if category not in CATEGORIES:
        raise ValueError(f"check {check_id!r}: unknown category {category!r}")

    def register(function: CheckFunction) -> CheckFunction:
        if check_id in _REGISTRY and _REGISTRY[check_id].function is not function:
            raise ValueError(f"check {check_id!r} is registered twice")
        _REGISTRY[check_id] = Check(check_id, category, function)
        return function

    return register


def all_checks() -> list[Check]:
    """Every registered check, in running order: CHECK_MODULES' order, then the order within each file."""
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return sorted(_REGISTRY.values(), key=_running_order)


def _running_order(spec: Check) -> int:
    module = spec.function.__module__
    return CHECK_MODULES.index(module) if module in CHECK_MODULES else len(CHECK_MODULES)


def run_checks(facts: SystemFacts, only: str | None = None, checks: list[Check] | None = None) -> list[Finding]:
    """Run every check (or just the one named `only`) over `facts`; crashes become findings."""
    selected = all_checks() if checks is None else checks
    if only is not None:
        selected = [c for c in selected if c.id == only]
        if not selected:
            raise BadInput(f"--only: there is no check {only!r}; 'gpudoctor check --list-checks' lists them")
    findings: list[Finding] = []
    for spec in selected:
        findings.extend(run_one(spec, facts))
    return findings


def run_one(spec: Check, facts: SystemFacts) -> list[Finding]:
    """The findings of one check: its verdicts with its id and category, or one "crash" finding."""
    try:
        verdicts = _verdicts(spec.function(facts))
    except Exception as exc:  # noqa: BLE001 - a crashing check is itself a finding
        return [crash_finding(spec, exc)]
    return [Finding.from_verdict(spec.id, spec.category, verdict) for verdict in verdicts]


def crash_finding(spec: Check, exc: Exception) -> Finding:
    return Finding(
        id=spec.id,
        category=spec.category,
        status="crash",
        title=f"check {spec.id} crashed: {type(exc).__name__}: {exc}",
        detail=CRASH_DETAIL,
        fix=REPORT_FIX,
    )


def _verdicts(result: object) -> list[Verdict]:
    """What a check returned, as a list; anything but None, a Verdict or a list of them is a bug."""
    if result is None:
        return []
    if isinstance(result, Verdict):
        return [result]
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"returned {type(result).__name__}, not a Verdict")
    for item in result:
        if not isinstance(item, Verdict):
            raise TypeError(f"returned {type(item).__name__}, not a Verdict")
    return list(result)
