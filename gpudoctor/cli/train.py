"""`gpudoctor train`: check → plan → QLoRA training, from flags, a run.yaml, or the built-in --demo.

Only typer is imported at module level; the check, the planner and the training stack load
when the command runs, so `gpudoctor train --help` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from gpudoctor.cli.run_options import RunFlags, run_setting_flags

DEMO_OUTPUT = "gpudoctor-demo"


def register(app: typer.Typer) -> None:
    app.command("train", help="Fine-tune with QLoRA: check, plan, train; writes the adapter, report.json and loss.png.")(train)


def demo_workdir() -> Path:
    """Where the demo's random-weight base model is built (reused between runs)."""
    from gpudoctor.resources import gpudoctor_cache_dir

    return gpudoctor_cache_dir()


@run_setting_flags
def train(
    run_yaml: Optional[Path] = typer.Argument(None, help="A run.yaml from `gpudoctor plan --emit gpudoctor`.", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", help="Profile id, local model folder or Hugging Face id (downloaded into the Hugging Face cache when missing)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Alpaca or ShareGPT/messages JSON or JSONL."),
    output: Optional[Path] = typer.Option(None, "--output", help="Run folder (adapter, report.json, loss.png, checkpoints/)."),
    demo: bool = typer.Option(False, "--demo", help="Train the built-in tiny model on the shipped support data (CPU: about a minute)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output."),
    resume_changed_data: bool = typer.Option(
        False, "--resume-changed-data", help="With --resume: go on although the data file or the settings that order it changed; the epoch restarts on the new data."
    ),
    force: bool = typer.Option(False, "--force", help="Train even where it would take days (a big model on the CPU)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model folder's own Python code to run."),
    skip_check: bool = typer.Option(False, "--skip-check", help="Do not run the doctor's blocking checks first."),
    truncate: bool = typer.Option(False, "--truncate", help="Cut samples longer than --seq-len instead of stopping."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Download a model missing from the Hugging Face cache without asking."),
    *,
    flags: RunFlags,
) -> None:
    from gpudoctor.cli.output import console as out_console
    from gpudoctor.cli.output import err_console
    from gpudoctor.train.request import TrainRequest, resolve

    console = err_console()
    request = TrainRequest(
        run_yaml=run_yaml, model=model, data=str(data) if data else None, output=str(output) if output else None,
        demo=demo, resume=resume, resume_changed_data=resume_changed_data, force=force, skip_check=skip_check, settings=flags.settings, training=flags.training,
        gpu=flags.gpu, vram_gib=flags.vram_gib,
    )  # fmt: skip
    config, plan = resolve(request, demo_workdir(), DEMO_OUTPUT, console.print)
    if plan is not None:
        from gpudoctor.cli.plan_view import render

        render(plan, out_console())
    _print_settings(console, config, with_settings=plan is None)
    from gpudoctor.cli.pull import ensure_pulled

    ensure_pulled(config.model, yes=yes, console=console)  # a hub model not cached yet: `gpudoctor pull`'s path
    if "LOCAL_RANK" not in os.environ and config.training.node_rank:
        from gpudoctor.train.distributed import nodes_of

        nodes_of(config.settings, config.training)  # a --node-rank past --nodes: one line
    if config.settings.world_size > 1 and "LOCAL_RANK" not in os.environ:
        passed = [flag for flag, given in (("--trust-remote-code", trust_remote_code), ("--truncate", truncate)) if given]
        raise typer.Exit(_launch_distributed(config, console, request, plan, passed))
    report = _train_here(config, plan, console, request, trust_remote_code=trust_remote_code, truncate=truncate)
    if os.environ.get("RANK", "0") == "0":  # accelerate launch: rank 0 speaks for the run
        _print_report(report, out_console())


def _train_here(config: Any, plan: Any, console: Any, request: Any, *, trust_remote_code: bool, truncate: bool) -> Any:
    """Train in this process (one device, or one worker of accelerate launch); the report."""
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    from gpudoctor.plan.corrections import default_file
    from gpudoctor.train.callbacks import Faults
    from gpudoctor.train.distributed import AgreedOutOfMemory
    from gpudoctor.train.run import train as run_training

    try:
        return run_training(
            config, resume=request.resume, resume_changed_data=request.resume_changed_data, force=request.force, console=console,
            trust_remote_code=trust_remote_code, truncate=truncate, faults=Faults.from_env(),
            planned_peak_bytes=plan.memory.peak_reserved_bytes if plan else None, hardware=plan.hardware if plan else None, corrections_file=default_file(),
        )  # fmt: skip
    except AgreedOutOfMemory as err:  # a worker of accelerate launch: its parent backs every rank off (or says why not)
        if str(err.note["rank"]) == os.environ.get("RANK", "0"):
            console.print(f"{err}; every rank leaves for the launch to back off")
        raise typer.Exit(err.exit_code) from None


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


def _launch_distributed(config: Any, console: Any, request: Any, plan: Any, passed: list[str]) -> int:
    """Start the run in config.settings.gpus processes through `accelerate launch` (train.distributed): DDP on the
    GPUs, or on the CPU with gloo for --gpu cpu or a machine without a GPU. Returns the launcher's exit code."""
    from gpudoctor.plan.runconfig import write_run_config
    from gpudoctor.train import distributed
    from gpudoctor.train.request import gpus_found

    processes, found = config.settings.gpus, gpus_found()
    on_cpu = plan.hardware.device == "cpu" if plan is not None else (request.gpu == "cpu" or not found)
    distributed.check_processes(processes, on_cpu=on_cpu, gpus_found=found)
    nodes = distributed.nodes_of(config.settings, config.training)
    output = Path(config.output)
    distributed.check_resume_world(output, processes, resume=request.resume, nodes=nodes.count)
    distributed.check_port(nodes)
    distributed.check_node_resume(output, nodes, resume=request.resume)
    launch_dir = distributed.launch_dir(output, nodes)
    launch_dir.mkdir(parents=True, exist_ok=True)
    run_yaml = write_run_config(config, launch_dir / distributed.RUN_NAME)
    settings = distributed.launch_config(
        processes, on_cpu=on_cpu, strategy=distributed.strategy_of(config.settings), compute_dtype=config.settings.compute_dtype, nodes=nodes
    )
    config_file = distributed.write_launch_config(launch_dir, settings)
    flags = {"--resume": request.resume, "--resume-changed-data": request.resume_changed_data, "--force": request.force}
    command = distributed.launch_command(config_file, run_yaml, [*(flag for flag, given in flags.items() if given), *passed])
    console.print("launch: " + distributed.shown_command(command))
    if nodes.count > 1 and nodes.rank == 0:
        console.print(
            f"launch: on each other node (1 to {nodes.count - 1}), with the model and data at the same paths, run: "
            f"gpudoctor train {run_yaml} --node-rank R  (a copy of that run.yaml; rendezvous at {nodes.where()})"
        )
    env = distributed.launch_env(on_cpu, processes)
    code = _launch_with_backoffs(command, env, config, nodes, console)
    if code == 0 and nodes.rank > 0:
        console.print(f"node {nodes.rank}: done; node 0 wrote the adapter, report.json and loss.png into its --output")
    return code


def _launch_with_backoffs(command: list[str], env: dict[str, str], config: Any, nodes: Any, console: Any) -> int:
    """Run the launch; after an out-of-memory on any rank (its note in .launch), launch every rank again with half
    the micro batch and twice the accumulation, from the newest checkpoint: the back-off all ranks agree on.
    ProblemFound at micro batch 1, or on several nodes (each node's parent would have to relaunch in step)."""
    import json

    from gpudoctor.errors import ProblemFound
    from gpudoctor.train import distributed
    from gpudoctor.train.checkpoints import newest_complete

    output, backoffs = Path(config.output), []
    launch_dir = distributed.launch_dir(output, nodes)
    while True:
        environment = {**env, distributed.BACKOFF_ENV: json.dumps(backoffs)}
        code = distributed.run_launcher(command, environment, joined=launch_dir / distributed.JOINED_NAME, join_timeout=config.training.join_timeout, nodes=nodes)
        note = distributed.read_note(launch_dir)
        if code == 0 or note is None:
            return code
        micro, accum, step = note["micro_batch"], note["grad_accum"], note["step"]
        if micro <= 1 or nodes.count > 1:
            fix = f"lower --seq-len (now {config.settings.seq_len}) or turn on --grad-ckpt" if micro <= 1 else f"--micro-batch {micro // 2} --grad-accum {accum * 2}"
            raise ProblemFound(f"rank {note['rank']} ran out of memory at step {step} with micro batch {micro}; {fix}, then pass --resume" + (" on every node" if nodes.count > 1 else ""))
        backoffs.append({"step": step, "micro_batch": micro // 2, "grad_accum": accum * 2})
        checkpoint = newest_complete(output)
        console.print(
            f"out of memory on rank {note['rank']} at step {step}: micro batch → {micro // 2}, gradient accumulation → {accum * 2} on every rank "
            f"(effective batch unchanged); continuing from {checkpoint.name if checkpoint else 'the start'}"
        )
        if checkpoint is not None and "--resume" not in command:
            command = [*command, "--resume"]


def _print_report(report: Any, out: Any) -> None:
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
    # planned_peak_bytes is torch's reserved figure: like for like with GPU reserved, not with a process's RSS
    planned = f"planned {report.planned_peak_bytes / gib:.2f} GiB, " if report.planned_peak_bytes and report.measured_peak_reserved_bytes else ""
    if measured:
        out.print(f"peak memory: {planned}measured {measured / gib:.2f} GiB ({what}; each figure against the plan's: report.html)")
    if report.rank_peak_bytes:
        out.print("peak memory by rank: " + ", ".join(f"{rank}: {peak / gib:.2f} GiB" for rank, peak in enumerate(report.rank_peak_bytes)))
    for note in report.notes:
        out.print(f"{'measured' if note.startswith('step 1 ') else 'note'}: {note}")
    out.print(f"adapter: {report.output} (report.json, loss.png, tb/)")
    out.print(f"try it: gpudoctor chat --adapter {report.output} --prompt \"...\"")
