"""`gpudoctor train`: check → plan → QLoRA training, from flags, a run.yaml, or the built-in --demo.

Only typer is imported at module level; the check, the planner and the training stack load
when the command runs, so `gpudoctor train --help` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from gpudoctor.cli import run_options as opts
from gpudoctor.errors import BadInput

DEMO_OUTPUT = "gpudoctor-demo"


def register(app: typer.Typer) -> None:
    app.command("train", help="Fine-tune with QLoRA: check, plan, train; writes the adapter, report.json and loss.png.")(train)



def demo_workdir() -> Path:
    """Where the demo's random-weight base model is built (reused between runs)."""
    from gpudoctor.resources import gpudoctor_cache_dir

    return gpudoctor_cache_dir()


def train(
    run_yaml: Path | None = typer.Argument(None, help="A run.yaml from `gpudoctor plan --emit gpudoctor`.", show_default=False),
    model: str | None = typer.Option(None, "--model", help="Profile id, local model folder or Hugging Face id (from the local cache)."),
    data: Path | None = typer.Option(None, "--data", help="Alpaca or ShareGPT/messages JSON or JSONL."),
    output: Path | None = typer.Option(None, "--output", help="Run folder (adapter, report.json, loss.png, checkpoints/)."),
    demo: bool = typer.Option(False, "--demo", help="Train the built-in tiny model on the shipped support data (CPU: about a minute)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output."),
    force: bool = typer.Option(False, "--force", help="Train even where it would take days (a big model on the CPU)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model folder's own Python code to run."),
    skip_check: bool = typer.Option(False, "--skip-check", help="Do not run the doctor's blocking checks first."),
    truncate: bool = typer.Option(False, "--truncate", help="Cut samples longer than --seq-len instead of stopping."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the data."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    val_size: float | None = typer.Option(None, "--val-size", help="Held-out eval records: a fraction < 1 or a count."),
    save_steps: int | None = typer.Option(None, "--save-steps", help="Checkpoint every N optimizer steps."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for weights, data order and the eval split."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    method: str | None = opts.METHOD,
    lora_r: int | None = opts.LORA_R,
    lora_alpha: int | None = opts.LORA_ALPHA,
    lora_dropout: float | None = opts.LORA_DROPOUT,
    lora_targets: str | None = opts.LORA_TARGETS,
    seq_len: int | None = opts.SEQ_LEN,
    micro_batch: int | None = opts.MICRO_BATCH,
    grad_accum: int | None = opts.GRAD_ACCUM,
    grad_ckpt: bool | None = opts.GRAD_CKPT,
    optimizer: str | None = opts.OPTIMIZER,
    attn: str | None = opts.ATTN,
    compute_dtype: str | None = opts.COMPUTE_DTYPE,
    double_quant: bool | None = opts.DOUBLE_QUANT,
    packing: bool | None = opts.PACKING,
    gpus: int | None = opts.GPUS,
    strategy: str | None = opts.STRATEGY,
    vram_gib: float | None = opts.VRAM_GIB,
    gpu: str | None = opts.GPU,
) -> None:
    from gpudoctor.cli.output import err_console

    console = err_console()
    fixed = opts.fixed_settings(
        method=method, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_targets=lora_targets, seq_len=seq_len,
        micro_batch=micro_batch, grad_accum=grad_accum, grad_ckpt=grad_ckpt, optimizer=optimizer, attn=attn,
        compute_dtype=compute_dtype, double_quant=double_quant, packing=packing, gpus=gpus, strategy=strategy,
    )  # fmt: skip
    options = {"epochs": epochs, "lr": lr, "val_size": val_size, "save_steps": save_steps, "seed": seed, "max_steps": max_steps}
    if resume and run_yaml is None and not demo and output is not None and (output / "run.yaml").is_file():
        run_yaml = output / "run.yaml"  # --resume continues the run as it was planned, not as a re-plan would pick now
    config, plan = _config(run_yaml, demo, model, data, output, fixed, options, console, skip_check, vram_gib, gpu, force)
    if plan is not None:
        from gpudoctor.cli.plan import render

        render(plan)
    _print_settings(console, config, with_settings=plan is None)
    if config.settings.gpus > 1 and "LOCAL_RANK" not in os.environ:
        raise typer.Exit(_launch_distributed(config, console))
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    from gpudoctor.train.callbacks import Faults
    from gpudoctor.train.run import train as run_training

    report = run_training(
        config, resume=resume, force=force, console=console, trust_remote_code=trust_remote_code,
        truncate=truncate, faults=Faults.from_env(), planned_peak_bytes=plan.memory.peak_reserved_bytes if plan else None,
    )
    _print_report(report)


def _config(run_yaml, demo, model, data, output, fixed, options, console, skip_check, vram_gib, gpu, force) -> tuple[Any, Any]:
    """The RunConfig to train, and the Plan behind it when the planner chose the settings here."""
    from dataclasses import replace

    from gpudoctor.plan.runconfig import read_run_config
    from gpudoctor.plan.types import RunConfig, TrainingOptions
    from gpudoctor.train.preflight import plan_settings, run_preflight, settings_from

    training_overrides = {k: v for k, v in options.items() if v is not None}
    if demo:
        if run_yaml or model or data:
            raise BadInput("--demo trains the built-in model and data; drop RUN_YAML, --model and --data")
        from gpudoctor.train.demo import demo_config

        console.print("demo: building the tiny Mistral-architecture model (random weights) …")
        hardware = _hardware_override(vram_gib, gpu, fixed.get("gpus"))
        config, plan = demo_config(demo_workdir(), output or DEMO_OUTPUT, hardware, fixed)
        return replace(config, training=replace(config.training, **training_overrides)), plan
    on_gpu = True
    if not skip_check:
        preflight = run_preflight(str(output) if output else None)
        on_gpu = preflight.on_gpu
        for title in preflight.ignored:
            console.print(f"check: ignored for a CPU run: {title}")
    else:
        on_gpu = _gpu_present()
    if run_yaml is not None:
        config = read_run_config(run_yaml)
        config = replace(
            config,
            data=str(data) if data else config.data,
            output=str(output) if output else config.output,
            model=model or config.model,
            settings=settings_from(fixed, config.settings),
            training=replace(config.training, **training_overrides),
        )
        return config, None
    missing = [flag for flag, value in (("--model", model), ("--data", data), ("--output", output)) if not value]
    if missing:
        raise BadInput(f"missing {', '.join(missing)}: give --model, --data and --output, a RUN_YAML, or --demo")
    if fixed.get("packing") is None:
        fixed["packing"] = True
    hardware = _hardware_override(vram_gib, gpu, fixed.get("gpus"))
    if hardware is not None:
        on_gpu = hardware.device != "cpu"
    if not on_gpu and not force:
        _refuse_big_model_on_cpu(model)
    data_stats = _data_stats(str(data), model)
    settings, plan = plan_settings(model, fixed, on_gpu=on_gpu, hardware=hardware, data_stats=data_stats)
    if plan is not None and not plan.fits:
        from gpudoctor.errors import ProblemFound

        hint = f"; try {plan.suggestions[0]}" if plan.suggestions else ""
        raise ProblemFound(f"the plan does not fit in {plan.hardware.name}'s memory{hint} (see `gpudoctor plan`)")
    return RunConfig(model=model, data=str(data), output=str(output), settings=settings, training=TrainingOptions(**training_overrides)), plan


def _refuse_big_model_on_cpu(model: str) -> None:
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import load_model
    from gpudoctor.train.run import refuse_on_cpu

    refuse_on_cpu(model, total_params(load_model(model)))


def _gpu_present() -> bool:
    try:
        from gpudoctor.probe import probe_system

        return bool(probe_system(live=False).gpus)
    except Exception:  # the probe is advisory here: --skip-check asked not to judge
        return False


def _hardware_override(vram_gib: float | None, gpu: str | None, gpus: int | None) -> Any:
    """--gpu PROFILE / cpu / auto and --vram-gib, read the same way `gpudoctor plan` reads them."""
    if vram_gib is None and gpu is None:
        return None
    from gpudoctor.plan.hardware import hardware_for

    hardware = hardware_for(gpu or "auto", vram_gib, gpus)
    if hardware.source == "reference":
        raise BadInput("--vram-gib: no GPU was found here, so training runs on the CPU; drop --vram-gib (use `gpudoctor plan --vram-gib` to plan for another machine)")
    return hardware


def _data_stats(data: str, model: str) -> Any:
    from gpudoctor.cli.plan import data_stats as plan_data_stats
    from gpudoctor.profiles import load_model

    return plan_data_stats(data, load_model(model))


def _print_settings(console: Any, config: Any, *, with_settings: bool) -> None:
    """One line of settings (when no plan was rendered), one of what trains on what."""
    s = config.settings
    t = config.training
    targets = ",".join(s.lora_targets)
    if with_settings:
        console.print(
            f"plan: {s.method} {s.quant or ''} {s.compute_dtype} · LoRA r{s.lora_r} α{s.lora_alpha} on {targets} · "
            f"seq {s.seq_len} · micro batch {s.micro_batch} × accum {s.grad_accum} · "
            f"{'packed' if s.packing else 'padded'} · grad ckpt {'on' if s.grad_ckpt else 'off'} · {s.optimizer} · {s.attn}"
        )
    budget = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"
    console.print(f"train: {config.model} on {config.data} → {config.output} · {budget} · lr {t.lr:g} · seed {t.seed}")


def _launch_distributed(config: Any, console: Any) -> int:
    import subprocess

    from gpudoctor.plan.runconfig import write_run_config
    from gpudoctor.train.launch import accelerate_command

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    run_yaml = output / "launch.yaml"
    write_run_config(config, run_yaml)
    command = accelerate_command(str(run_yaml), config.settings.gpus, config.settings.strategy)
    console.print("launch: " + " ".join(command))
    return subprocess.call(command)


def _print_report(report: Any) -> None:
    from gpudoctor.cli.output import console

    out = console()
    gib = 1024**3
    first = report.losses[0][1] if report.losses else float("nan")
    last = report.losses[-1][1] if report.losses else float("nan")
    out.print(f"trained {report.steps} steps in {report.duration_s:.0f} s on {report.device}: loss {first:.3f} → {last:.3f}")
    if report.final_eval_loss is not None:
        out.print(f"eval loss {report.final_eval_loss:.3f}")
    if report.tokens_per_s:
        out.print(f"{report.tokens_per_s:,.0f} real tokens/s")
    measured = report.measured_peak_reserved_bytes or report.measured_peak_rss_bytes
    what = "GPU reserved" if report.measured_peak_reserved_bytes else "process RSS"
    planned = f"planned {report.planned_peak_bytes / gib:.2f} GiB, " if report.planned_peak_bytes else ""
    if measured:
        out.print(f"peak memory: {planned}measured {measured / gib:.2f} GiB ({what})")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(f"adapter: {report.output} (report.json, loss.png, tb/)")
    out.print(f"try it: gpudoctor chat --adapter {report.output} --prompt \"...\"")
