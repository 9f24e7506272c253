"""A plan from what a user names: a model, the settings they fixed, a data file, a card or budget.

The one place `plan` and `train` turn their flags into a Plan: load the model spec, decide the
hardware (--gpu / --vram-gib / the probe), count the data's tokens, plan with what was measured on
this card (gpudoctor.plan.corrections: the memory-corrections.json of the cache folder), and say
what the probe found when that matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpudoctor.data.stats import DataStats, stats_for_model
from gpudoctor.plan import corrections
from gpudoctor.plan.hardware import hardware_for
from gpudoctor.plan.planner import make_plan
from gpudoctor.plan.types import Hardware, Plan
from gpudoctor.profiles import load_model
from gpudoctor.settings import training_from


def plan_for(
    model: str,
    fixed: dict[str, Any],
    training: dict[str, Any] | None = None,
    *,
    data: str | None = None,
    gpu: str | None = None,
    vram_gib: float | None = None,
    hardware: Hardware | None = None,
    effective_batch: int = 16,
    corrections_file: Path | None = None,
) -> tuple[Plan, DataStats | None]:
    """The plan for `model` with the `fixed` settings, and the data's stats when `data` was given.

    `hardware` (already decided by the caller) wins over `gpu`/`vram_gib`; with a data file the
    time estimate covers its tokens times the epochs. Peaks measured on this card for this model
    and recipe (`corrections_file`, default the cache folder's) correct the memory model's."""
    spec = load_model(model)
    if hardware is None:
        hardware = hardware_for(gpu or "auto", vram_gib, fixed.get("gpus"))
    stats = stats_for_model(data, spec) if data is not None else None
    entries = corrections.load(corrections_file)
    correct = corrections.corrector(spec, hardware, entries)
    plan = make_plan(spec, hardware, fixed, stats, effective_batch, correct=correct)
    if stats is not None and plan.estimate is not None:
        epochs = training_from(training or {}).epochs
        plan = make_plan(spec, hardware, fixed, stats, effective_batch, int(plan.estimate.tokens_total * epochs), correct=correct)
    if correct is not None:
        _note_correction(plan, entries)
    if gpu in (None, "auto"):
        _note_probe(plan, fixed)
    return plan, stats


def _note_correction(plan: Plan, entries: dict[str, corrections.Entry]) -> None:
    """Say which measurement on this card stands behind (or beside) the chosen settings' figures."""
    found = corrections.find(plan.model, plan.settings, plan.hardware, entries)
    if found is not None:
        plan.notes.insert(0, corrections.note(found, plan.hardware.device))


def _note_probe(plan: Plan, fixed: dict[str, Any]) -> None:
    """Say what `--gpu auto` found when it matters: no GPU at all, or more GPUs than planned for."""
    hw = plan.hardware
    if hw.source == "reference":
        plan.notes.insert(0, "no GPU was found, so --vram-gib plans for a GPU with that memory; name your card with --gpu for its own speed")
    elif hw.device == "cpu":
        plan.notes.insert(0, "no GPU was found (run `gpudoctor check` to see why), so this plan is for the CPU; --gpu NAME plans for a card")
    elif hw.gpus > plan.settings.gpus and "gpus" not in fixed:
        plan.notes.insert(0, f"{hw.gpus} GPUs of this kind were found; --gpus {hw.gpus} plans for all of them")


