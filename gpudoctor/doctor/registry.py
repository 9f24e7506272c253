"""The list of checks and the runner: each check is a function SystemFacts -> [Finding].

A check registers itself with `@check("nvidia.driver_vs_torch", category="Driver")`; its docstring's
first line is what `gpudoctor check --list-checks` prints. `run_checks` runs them all (or one), and a
check that raises becomes a warning finding titled "check <id> crashed", never a traceback: a bug
in the doctor must not stop a working machine from training.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from gpudoctor.doctor.finding import CATEGORIES, Finding
from gpudoctor.errors import BadInput
from gpudoctor.probe.facts import SystemFacts

CheckFunction = Callable[[SystemFacts], list[Finding]]

# Modules whose checks register on import, in the order their checks run.
CHECK_MODULES = (
    "gpudoctor.doctor.gpu",
    "gpudoctor.doctor.nvidia",
    "gpudoctor.doctor.amd",
    "gpudoctor.doctor.python_env",
    "gpudoctor.doctor.host",
)

REPORT_FIX = "gpudoctor check --report   (paste the block into a bug report)"


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
    """Every registered check, in running order."""
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return list(_REGISTRY.values())


def run_checks(facts: SystemFacts, only: str | None = None, checks: list[Check] | None = None) -> list[Finding]:
    """Run every check (or just the one named `only`) over `facts`; crashes become findings."""
    selected = all_checks() if checks is None else checks
    if only is not None:
        selected = [c for c in selected if c.id == only]
        if not selected:
            raise BadInput(f"--only: there is no check {only!r}; 'gpudoctor check --list-checks' lists them")
    findings: list[Finding] = []
    for spec in selected:
        findings.extend(_run_one(spec, facts))
    return findings


def _run_one(spec: Check, facts: SystemFacts) -> list[Finding]:
    try:
        result = spec.function(facts)
        return [_checked(spec, item) for item in result]
    except Exception as exc:  # noqa: BLE001 - a crashing check is itself a finding
        return [
            Finding(
                id=spec.id,
                category=spec.category,
                status="warning",
                title=f"check {spec.id} crashed: {type(exc).__name__}: {exc}",
                detail="This is a bug in gpudoctor, not in your machine; the other checks still ran.",
                fix=REPORT_FIX,
            )
        ]


def _checked(spec: Check, item: object) -> Finding:
    if not isinstance(item, Finding):
        raise TypeError(f"returned {type(item).__name__}, not a Finding")
    return item
