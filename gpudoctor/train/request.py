"""From what `gpudoctor train` was given to the RunConfig it trains: a run.yaml, flags, or --demo.

Runs the doctor's blocking checks first (unless skipped), then reads the run.yaml or asks the
planner for the settings the user left open. Nothing here imports torch, and nothing prints:
messages for the user go through `say`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.plan.types import Hardware, Plan
from gpudoctor.settings import RunConfig, settings_from, training_from

CPU_PARAMETER_LIMIT = 1_500_000_000  # above this a CPU run takes days; it needs --force


@dataclass
class TrainRequest:
    """The `train` command's inputs, as given (None: not given)."""

    run_yaml: Path | None = None
    model: str | None = None
    data: str | None = None
    output: str | None = None
    demo: bool = False
    resume: bool = False
    resume_changed_data: bool = False  # --resume-changed-data: go on although the data or its order changed
    force: bool = False
    skip_check: bool = False
    settings: dict[str, Any] = field(default_factory=dict)  # checked flag values
    training: dict[str, Any] = field(default_factory=dict)
    gpu: str | None = None
    vram_gib: float | None = None


def resolve(request: TrainRequest, demo_workdir: Path, demo_output: str, say: Callable[[str], None]) -> tuple[RunConfig, Plan | None]:
    """The RunConfig to train, and the Plan behind it when the planner chose the settings here."""
    if request.resume_changed_data and not request.resume:
        raise BadInput("--resume-changed-data goes with --resume: add --resume, or drop --resume-changed-data to start a new run")
    if request.resume and request.run_yaml is None and not request.demo and request.output and (Path(request.output) / "run.yaml").is_file():
        request = replace(request, run_yaml=Path(request.output) / "run.yaml")  # resume the run as it was planned
    if request.demo:
        return _demo(request, demo_workdir, demo_output, say)
    on_gpu = _check_machine(request, say)
    if request.run_yaml is not None:
        return _from_run_yaml(request), None
    return _from_flags(request, on_gpu)


def _demo(request: TrainRequest, workdir: Path, output: str, say: Callable[[str], None]) -> tuple[RunConfig, Plan]:
    if request.run_yaml or request.model or request.data:
        raise BadInput("--demo trains the built-in model and data; drop RUN_YAML, --model and --data")
    from gpudoctor.train.demo import demo_config

    say("demo: building the tiny Mistral-architecture model (random weights) …")
    hardware = _hardware(request)
    config, plan = demo_config(workdir, request.output or output, hardware, request.settings)
    return replace(config, training=training_from(request.training, config.training)), plan


def _check_machine(request: TrainRequest, say: Callable[[str], None]) -> bool:
    """Run the doctor's blocking checks (ProblemFound on an error); True when a GPU was found."""
    from gpudoctor.train.preflight import run_preflight

    if request.skip_check:
        return _gpu_present()
    preflight = run_preflight(request.output)
    for title in preflight.ignored:
        say(f"check: ignored for a CPU run: {title}")
    return preflight.on_gpu


def _from_run_yaml(request: TrainRequest) -> RunConfig:
    from gpudoctor.plan.runconfig import read_run_config

    config = read_run_config(request.run_yaml)
    return replace(
        config,
        data=request.data or config.data,
        output=request.output or config.output,
        model=request.model or config.model,
        settings=settings_from(request.settings, config.settings),
        training=training_from(request.training, config.training),
    )


def _from_flags(request: TrainRequest, on_gpu: bool) -> tuple[RunConfig, Plan]:
    from gpudoctor.plan.hardware import cpu_hardware, probed_hardware
    from gpudoctor.plan.request import plan_for

    missing = [flag for flag, value in (("--model", request.model), ("--data", request.data), ("--output", request.output)) if not value]
    if missing:
        raise BadInput(f"missing {', '.join(missing)}: give --model, --data and --output, a RUN_YAML, or --demo")
    hardware = _hardware(request)
    if hardware is not None:
        on_gpu = hardware.device != "cpu"
    else:
        hardware = probed_hardware() if on_gpu else cpu_hardware()
    if not on_gpu and not request.force:
        refuse_big_model_on_cpu(request.model)
    plan, _ = plan_for(request.model, request.settings, request.training, data=request.data, hardware=hardware)
    if not plan.fits:
        hint = f"; try {plan.suggestions[0]}" if plan.suggestions else ""
        raise ProblemFound(f"the plan does not fit in {plan.hardware.name}'s memory{hint} (see `gpudoctor plan`)")
    settings = settings_from(request.settings, plan.settings)
    return RunConfig(model=request.model, data=request.data, output=request.output, settings=settings, training=training_from(request.training)), plan


def _hardware(request: TrainRequest) -> Hardware | None:
    """--gpu PROFILE / cpu / auto and --vram-gib, read the same way `gpudoctor plan` reads them."""
    if request.vram_gib is None and request.gpu is None:
        return None
    from gpudoctor.plan.hardware import hardware_for

    hardware = hardware_for(request.gpu or "auto", request.vram_gib, request.settings.get("gpus"))
    if hardware.source == "reference":
        raise BadInput("--vram-gib: no GPU was found here, so training runs on the CPU; drop --vram-gib (use `gpudoctor plan --vram-gib` to plan for another machine)")
    return hardware


def gpus_found() -> int | None:
    """How many GPUs training could use here (the doctor's rule); None when the probe cannot tell."""
    try:
        from gpudoctor.doctor.selection import training_gpus
        from gpudoctor.probe import probe_system

        return len(training_gpus(probe_system(live=False)))
    except Exception:  # advisory: the launch judges what it can
        return None


def _gpu_present() -> bool:
    try:
        from gpudoctor.probe import probe_system

        return bool(probe_system(live=False).gpus)
    except Exception:  # the probe is advisory here: --skip-check asked not to judge
        return False


def refuse_big_model_on_cpu(model: str) -> None:
    """A model this big takes days per epoch on a CPU: stop unless --force (ProblemFound, exit 1)."""
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import load_model

    parameters = total_params(load_model(model))
    if parameters > CPU_PARAMETER_LIMIT:
        raise ProblemFound(
            f"--model {model}: {parameters / 1e9:.1f}B parameters is too big to train on the CPU "
            "(days per epoch) and no GPU was found; run `gpudoctor check`, or pass --force to try anyway"
        )
