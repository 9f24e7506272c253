"""`gpudoctor plan`: which settings fit this card, what each part of memory takes, how long the run takes.

Thin shell: parse flags, build ModelSpec / Hardware / DataStats, call the planner, render.
Imports nothing heavy (no torch, transformers or datasets) unless --verify asks for a measurement:
then a few optimizer steps with random weights run here (gpudoctor.train.measure), the measured
peaks are recorded in the cache folder's memory-corrections.json, and the plan shown is the one
planned with them.
"""

from __future__ import annotations

import json
from typing import Any, Optional

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
    verify: bool = typer.Option(
        False, "--verify",
        help="Measure the plan here: 3 optimizer steps with random weights of the model, measured vs predicted peak "
        "memory; the measurement corrects later plans for this card, model and recipe (imports torch).",
    ),  # fmt: skip
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
    if verify and emit is not None:
        raise BadInput("--verify and --emit: run `gpudoctor plan --verify` first (it records the measurement), then --emit plans with it")
    plan, stats = plan_for(model, flags.settings, flags.training, data=data, gpu=flags.gpu, vram_gib=flags.vram_gib, effective_batch=effective_batch)
    verified = None
    if verify:
        verified = _verify(plan)
        plan, stats = plan_for(model, flags.settings, flags.training, data=data, gpu=flags.gpu, vram_gib=flags.vram_gib, effective_batch=effective_batch, hardware=plan.hardware)
    if emit is not None:
        if not plan.fits:
            raise ProblemFound(f"{plan.model.name} does not fit {plan.hardware.name} with these settings; " + "; ".join(plan.suggestions))
        _emit(plan, emit, data, stats, output, flags)
        return
    _show(plan, as_json, verified)
    if not plan.fits:
        raise typer.Exit(EXIT_PROBLEM)


def _show(plan: Plan, as_json: bool, verified: Any = None) -> None:
    if as_json:
        from gpudoctor.plan.report import plan_to_json

        document = plan_to_json(plan)
        if verified is not None:
            document["verify"] = _verify_json(verified)
        print_json(json.dumps(document, indent=2, ensure_ascii=False))
        return
    from gpudoctor.cli.plan_view import render

    render(plan, console())
    if verified is not None:
        console().print()
        _render_verify(verified)


def _verify(plan: Plan) -> Any:
    """Measure the plan on this machine (refused in one line where it cannot be) and record the correction."""
    from gpudoctor.plan.corrections import default_file
    from gpudoctor.train.measure import refuse_verify

    refuse_verify(plan)  # before torch is imported: a 7B model on a CPU machine stops here
    from gpudoctor.cli.output import err_console
    from gpudoctor.train.measure import verify

    s = plan.settings
    err_console().print(f"verify: {plan.model.name} with random weights, {s.method} seq_len {s.seq_len} micro batch {s.micro_batch}, 3 optimizer steps on {plan.hardware.name} …")
    return verify(plan, corrections_file=default_file())


def _verify_json(verified: Any) -> dict[str, Any]:
    measurement = verified.measurement
    return {
        "device": verified.device,
        "steps": verified.steps,
        "settings": measurement.shape,
        "figures": {
            name: {"measured_gib": round(m / 1024**3, 3), "predicted_gib": round(p / 1024**3, 3), "ratio": round(m / p, 3) if p else None}
            for name, (m, p) in measurement.figures.items()
        },
        "over_budget": verified.judged.over,
        "recorded": str(verified.judged.stored) if verified.judged.stored else None,
    }


def _render_verify(verified: Any) -> None:
    """Measured vs predicted per figure, and where the correction went."""
    from rich.table import Table

    from gpudoctor.plan.corrections import LABELS

    measurement, out = verified.measurement, console()
    shape = measurement.shape
    out.print(
        f"Verified here ({verified.device}): {verified.steps} optimizer steps with random weights, "
        f"seq_len {shape['seq_len']}, micro batch {shape['micro_batch']}, full rows of random tokens"
    )
    table = Table(box=None, padding=(0, 1))
    for column in ("figure", "measured GiB", "predicted GiB", "measured/predicted"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, (measured, predicted) in measurement.figures.items():
        ratio = f"{measured / predicted:.2f}" if predicted else "-"
        table.add_row(LABELS[name], f"{measured / 1024**3:.2f}", f"{predicted / 1024**3:.2f}", ratio)
    out.print(table)
    stored = verified.judged.stored
    here = "this machine" if verified.device == "cpu" else "this card"
    out.print(f"recorded in {stored}: later plans for {here}, model and recipe use it" if stored else "not recorded (the cache folder could not be written)", soft_wrap=True)


def _emit(plan: Plan, emit: str, data: str | None, stats: DataStats | None, output: str | None, flags: RunFlags) -> None:
    from gpudoctor.plan.emit import emit_axolotl, emit_gpudoctor
    from gpudoctor.settings import training_from

    training = training_from(flags.training)
    if emit == "gpudoctor":
        print_json(emit_gpudoctor(plan, data, output, training))
    else:
        assert data is not None and stats is not None and stats.format is not None  # refused above without --data
        print_json(emit_axolotl(plan, data, stats.format, output, training))
