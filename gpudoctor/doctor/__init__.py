"""The doctor: judges SystemFacts with small checks, each returning findings with an exact fix.

`diagnose(facts)` runs them all and groups the findings for `gpudoctor check`; `run_checks` is the
flat list (the trainer reuses the error-level ones as a preflight).
"""

from gpudoctor.doctor.diagnosis import CategoryResult, Diagnosis, diagnose
from gpudoctor.doctor.finding import CATEGORIES, STATUSES, Finding
from gpudoctor.doctor.registry import all_checks, check, run_checks

__all__ = [
    "CATEGORIES",
    "STATUSES",
    "CategoryResult",
    "Diagnosis",
    "Finding",
    "all_checks",
    "check",
    "diagnose",
    "run_checks",
]
