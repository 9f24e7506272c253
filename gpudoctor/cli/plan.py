"""`gpudoctor plan`: which settings fit this card, what each part of memory takes, how long the run takes.

Thin shell: parse flags, build ModelSpec / Hardware / DataStats, call the planner, render.
Imports nothing heavy: no torch, transformers or datasets.
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from gpudoctor.cli.output import console, print_json
from gpudoctor.cli.run_options import RunFlags, run_setting_flags
from gpudoctor.errors import EXIT_PROBLEM, BadInput, ProblemFound
from gpudoctor.data.stats import DataStats
from gpudoctor.plan.types import Plan

EMIT_FORMATS = ("gpudoctor", "axolotl")


def register(app: typer.Typer) -> None:
    app.command("plan", help="Plan a LoRA/QLoRA run that fits the GPU: settings, memory per component, time.")(plan_command)


@run_setting_flags
def plan_command(
    model: Optional[str] = typer.Option(None, "--model", help="Profile id (see --list), a local model folder or a config.json path."),
    list_profiles: bool = typer.Option(False, "--list", help="List the model and GPU profiles and exit."),
    effective_batch: int = typer.Option(16, "--effective-batch", help="Sequences per optimizer step to keep."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset file: size seq_len to its token lengths."),
    output: Optional[str] = typer.Option(None, "--output", help="Run folder written into the emitted config."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    emit: Optional[str] = typer.Option(None, "--emit", help="Print a config instead: gpudoctor (run.yaml) or axolotl."),
    *,
    flags: RunFlags,
) -> None:
    from gpudoctor.plan.request import plan_for

    if list_profiles:
        from gpudoctor.cli.plan_view import render_profiles

        render_profiles(console())
        return
    if model is None:
        raise BadInput("--model: name a model profile (see --list), a local model folder or a config.json path")
    if emit is not None and emit not in EMIT_FORMATS:
        raise BadInput(f"--emit: unknown format '{emit}'; use one of {', '.join(EMIT_FORMATS)}")
    if emit == "axolotl" and data is None:
        raise BadInput("--emit axolotl needs --data FILE: an Axolotl config must name its dataset")
    plan, stats = plan_for(model, flags.settings, flags.training, data=data, gpu=flags.gpu, vram_gib=flags.vram_gib, effective_batch=effective_batch)
    if emit is not None:
        if not plan.fits:
            raise ProblemFound(f"{plan.model.name} does not fit {plan.hardware.name} with these settings; " + "; ".join(plan.suggestions))
        _emit(plan, emit, data, stats, output, flags)
        return
    _show(plan, as_json)
    if not plan.fits:
        raise typer.Exit(EXIT_PROBLEM)


def _show(plan: Plan, as_json: bool) -> None:
    if as_json:
        from gpudoctor.plan.report import plan_to_json

        print_json(json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False))
        return
    from gpudoctor.cli.plan_view import render

    render(plan, console())


def _emit(plan: Plan, emit: str, data: str | None, stats: DataStats | None, output: str | None, flags: RunFlags) -> None:
    from gpudoctor.plan.emit import emit_axolotl, emit_gpudoctor
    from gpudoctor.settings import training_from

    training = training_from(flags.training)
    if emit == "gpudoctor":
        print_json(emit_gpudoctor(plan, data, output, training))
    else:
        assert data is not None and stats is not None and stats.format is not None  # refused above without --data
        print_json(emit_axolotl(plan, data, stats.format, output, training))
