"""`gpudoctor install-cuda`, `install-rocm` and `install-torch`: set up the GPU stack for this machine.

install-cuda / install-rocm run the shell installers (their flags pass through, their exit code is
ours); install-torch picks the PyTorch wheel index from the probed driver and runs pip.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from gpudoctor.cli import output
from gpudoctor.errors import ProblemFound

if TYPE_CHECKING:
    from gpudoctor.install import torch_install
    from gpudoctor.probe.facts import SystemFacts


def _probe() -> SystemFacts:
    """The machine's facts without importing torch (tests replace this)."""
    from gpudoctor.probe import probe_system

    return probe_system(live=False)


def _runner() -> torch_install.Runner:
    """What runs pip (tests replace this)."""
    from gpudoctor.install import torch_install

    return torch_install.subprocess_runner


def _say(text: str) -> None:
    output.console().print(text, markup=False, highlight=False, soft_wrap=True)


def _script_args(dry_run: bool, yes: bool, force: bool) -> list[str]:
    return [flag for flag, on in (("--dry-run", dry_run), ("--yes", yes), ("--force", force)) if on]


def install_cuda(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every command it would run; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run unattended (no questions)."),
    force: bool = typer.Option(False, "--force", help="Go on even if this is not Ubuntu 24.04."),
    driver: str | None = typer.Option(None, "--driver", metavar="BRANCH", help="Driver branch, e.g. 570 (default: Ubuntu's recommendation)."),
    proprietary: bool = typer.Option(False, "--proprietary", help="Closed kernel modules even on Turing and newer."),
    toolkit: str | None = typer.Option(None, "--toolkit", metavar="X.Y", help="Also install the CUDA toolkit X.Y (only needed to compile CUDA code)."),
) -> None:
    """Install the NVIDIA driver (ubuntu-drivers, open modules on Turing+) and optionally the CUDA toolkit."""
    args = _script_args(dry_run, yes, force)
    args += ["--driver", driver] if driver else []
    args += ["--proprietary"] if proprietary else []
    args += ["--toolkit", toolkit] if toolkit else []
    from gpudoctor.install import scripts

    raise typer.Exit(scripts.run_script("install-cuda.sh", args))


def install_rocm(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every command it would run; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run unattended (no questions)."),
    force: bool = typer.Option(False, "--force", help="Go on even if this is not Ubuntu 24.04."),
    rocm: str | None = typer.Option(None, "--rocm", metavar="X.Y", help="ROCm release, e.g. 6.4 (default: compat.yaml rocm_default)."),
    no_dkms: bool = typer.Option(False, "--no-dkms", help="Keep the kernel's own amdgpu driver."),
    user: str | None = typer.Option(None, "--user", metavar="NAME", help="Account to add to render and video (default: you)."),
) -> None:
    """Install AMD ROCm with amdgpu-install and add you to the render and video groups."""
    args = _script_args(dry_run, yes, force)
    args += ["--rocm", rocm] if rocm else []
    args += ["--no-dkms"] if no_dkms else []
    args += ["--user", user] if user else []
    from gpudoctor.install import scripts

    raise typer.Exit(scripts.run_script("install-rocm.sh", args))


def install_torch(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pip commands; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run without asking."),
    index: str | None = typer.Option(None, "--index", metavar="TAG", help="Wheel index, e.g. cu128, rocm6.4 or cpu (default: chosen from the driver)."),
    system: bool = typer.Option(False, "--system", help="Allow installing outside a virtual environment."),
) -> None:
    """Install the torch build that matches this GPU's driver, a bitsandbytes for it, and gpudoctor[train]."""
    from gpudoctor.install import torch_install
    from gpudoctor.install.torch_index import choice_for_tag, choose_index

    if not torch_install.in_virtualenv() and not system:
        raise ProblemFound(
            f"{sys.executable} is not in a virtual environment; create one "
            "(python3 -m venv .venv && . .venv/bin/activate) and run this again, or pass --system"
        )
    facts = _probe()
    choice = choice_for_tag(index) if index else choose_index(facts)
    plan = torch_install.plan_install(choice, facts.python, executable=sys.executable)
    _say(f"wheel index: {choice.tag} ({choice.index_url})")
    _say(f"why: {choice.reason}")
    for note in choice.notes:
        _say(f"note: {note}")
    for line in plan.skipped:
        _say(line)
    for number, step in enumerate(plan.steps, start=1):
        _say(f"{number}. {step.why}")
        if dry_run:
            _say(f"   would run: {step.shown()}")
    if dry_run:
        _say("dry run: nothing was changed")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ProblemFound("not asking without a terminal; pass --yes to run the pip commands above")
        typer.confirm(f"run these {len(plan.steps)} pip command(s) in {sys.prefix}?", abort=True)
    torch_install.run_install(plan, runner=_runner(), echo=_say)
    _say(f"done: torch from {choice.tag}, {choice.bitsandbytes_requirement}, gpudoctor[train]; check it with 'gpudoctor check'")


def register(app: typer.Typer) -> None:
    app.command("install-cuda")(install_cuda)
    app.command("install-rocm")(install_rocm)
    app.command("install-torch")(install_torch)
