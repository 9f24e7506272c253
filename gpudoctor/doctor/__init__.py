"""The doctor: judges SystemFacts with small checks, each giving verdicts with an exact fix.

A check returns only what it judged (`ok(...)`, `warning(...)`, `error(...)`: status, title, detail,
fix); the registry adds the check's id and category and makes Findings, and turns a check that
raises into a "crash" finding. `diagnose(facts)` runs them all and groups the findings for
`gpudoctor check`; `run_checks` is the flat list (the trainer reuses the error-level ones as a
preflight). `training_gpus(facts)` is the one rule for which GPUs training uses; the planner uses it too.
"""

from gpudoctor.doctor.diagnosis import CategoryResult, Diagnosis, diagnose
from gpudoctor.doctor.finding import CATEGORIES, STATUSES, Finding, Verdict, error, ok, warning
from gpudoctor.doctor.registry import all_checks, check, run_checks
from gpudoctor.doctor.selection import training_gpus

__all__ = [
    "CATEGORIES",
    "STATUSES",
    "CategoryResult",
    "Diagnosis",
    "Finding",
    "Verdict",
    "all_checks",
    "check",
    "diagnose",
    "error",
    "ok",
    "run_checks",
    "training_gpus",
    "warning",
]
