"""Before training: the doctor's blocking checks.

It imports no torch. A finding that only matters for GPU training (categories GPU, Driver,
PyTorch, bitsandbytes) does not block a run that goes to the CPU because no GPU was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpudoctor.errors import ProblemFound

GPU_ONLY_CATEGORIES = {"GPU", "Driver", "PyTorch", "bitsandbytes"}


@dataclass
class Preflight:
    on_gpu: bool
    ignored: list[str] = field(default_factory=list)  # error findings that do not matter on the CPU


def run_preflight(output_dir: str | None = None, facts: Any = None) -> Preflight:
    """Probe (without the live torch subprocess) and run the doctor; raise ProblemFound on a blocking error."""
    from gpudoctor.doctor import run_checks

    if facts is None:
        from gpudoctor.probe import probe_system

        facts = probe_system(live=False, output_dir=output_dir)
    from gpudoctor.doctor.selection import training_gpus

    on_gpu = bool(training_gpus(facts))
    result = Preflight(on_gpu)
    for finding in run_checks(facts):
        if finding.status != "error":
            continue
        if not on_gpu and finding.category in GPU_ONLY_CATEGORIES:
            result.ignored.append(finding.title)
            continue
        fix = f"; fix: {finding.fix.splitlines()[0]}" if finding.fix else ""
        raise ProblemFound(f"check failed: {finding.title}{fix} (or pass --skip-check)")
    return result
