"""Before training: the doctor's blocking checks, and the settings the planner picks for what the user left open.

Neither imports torch. A finding that only matters for GPU training (categories GPU, Driver,
PyTorch, bitsandbytes) does not block a run that goes to the CPU because no GPU was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from gpudoctor.errors import ProblemFound
from gpudoctor.plan.types import Settings

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
    on_gpu = bool(facts.gpus)
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


def settings_from(fixed: dict[str, Any], base: Settings | None = None) -> Settings:
    known = {f.name for f in fields(Settings)}
    return replace(base or Settings(), **{k: v for k, v in fixed.items() if k in known and v is not None})


def plan_settings(model: str, fixed: dict[str, Any], *, on_gpu: bool, hardware: Any = None, data_stats: Any = None) -> tuple[Settings, Any]:
    """The planner's settings with the user's fixed ones kept; (settings, Plan)."""
    from gpudoctor.plan.hardware import cpu_hardware
    from gpudoctor.plan.planner import make_plan
    from gpudoctor.profiles import load_model

    if hardware is None:
        from gpudoctor.plan.hardware import probed_hardware

        hardware = probed_hardware() if on_gpu else cpu_hardware()
    plan = make_plan(load_model(model), hardware, {k: v for k, v in fixed.items() if v is not None}, data_stats)
    return settings_from(fixed, plan.settings), plan
