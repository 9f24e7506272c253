"""The pip commands that put the right torch, bitsandbytes and gpudoctor[train] into a virtualenv or a conda environment.

Order matters: torch comes first from its PyTorch index (the only index that step uses, so no
other index can offer a look-alike torch); then bitsandbytes and gpudoctor[train] come from PyPI
with a constraints file pinning torch to the version just installed, so nothing that step pulls in
can swap the chosen build for PyPI's. The commands run through an injectable runner.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from gpudoctor import __version__
from gpudoctor.atomic import write_text
from gpudoctor.errors import ProblemFound
from gpudoctor.install.torch_index import WheelChoice
from gpudoctor.probe.facts import PythonFacts

Runner = Callable[[Sequence[str]], int]
PINNED_TORCH = "<file: torch==the version installed above>"


@dataclass
class PipStep:
    why: str
    argv: list[str]
    needs_pin: bool = False  # add `--constraint <file pinning torch>` just before running

    def shown(self, constraint: str | None = None) -> str:
        """The command as run; before the run, the constraints file is described, not named."""
        text = shlex.join(self.argv)
        if self.needs_pin:
            text += " --constraint " + (shlex.quote(constraint) if constraint else PINNED_TORCH)
        return text


@dataclass
class TorchInstallPlan:
    choice: WheelChoice
    python: str
    steps: list[PipStep] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "already installed: …"


def in_virtualenv() -> bool:
    """A venv, or a conda environment: both are environments of their own, and pip installs into them."""
    return sys.prefix != sys.base_prefix or in_conda_env()


def in_conda_env(prefix: str | None = None) -> bool:
    """conda keeps its package records in <prefix>/conda-meta (the base environment and every `conda create`)."""
    return (Path(prefix or sys.prefix) / "conda-meta").is_dir()


def installed_by(name: str) -> str | None:
    """Who installed distribution `name`: its dist-info INSTALLER ("pip", "conda", "uv"), None when unknown."""
    try:
        text = metadata.distribution(name).read_text("INSTALLER")
    except metadata.PackageNotFoundError:
        return None
    return text.strip() if text else None


def self_requirement() -> list[str]:
    """How pip names this gpudoctor with its [train] extra: the local folder if editable, else PyPI."""
    try:
        direct = metadata.distribution("gpudoctor").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    if direct:
        info = json.loads(direct)
        url = str(info.get("url", ""))
        if url.startswith("file://"):
            path = url[len("file://"):]
            if info.get("dir_info", {}).get("editable"):
                return ["-e", f"{path}[train]"]
            return [f"gpudoctor[train] @ {url}"]
    return [f"gpudoctor[train]=={__version__}"]


def plan_install(choice: WheelChoice, python: PythonFacts, *, executable: str | None = None,
                 gpudoctor_requirement: list[str] | None = None,
                 installer: Callable[[str], str | None] | None = None) -> TorchInstallPlan:
    """The pip steps for `choice`, skipping a torch that already has the chosen build.

    In a conda environment pip installs into the environment too; only a torch that conda itself
    installed cannot be swapped by pip (conda's records would still list it), so that one stops here
    with the conda command that removes it."""
    exe = executable or python.executable or sys.executable
    plan = TorchInstallPlan(choice=choice, python=exe)
    pip = [exe, "-m", "pip", "install"]
    torch = python.packages.get("torch")
    if torch and torch.version and torch.flavour == choice.tag:
        plan.skipped.append(f"already installed: torch {torch.version} ({choice.tag})")
    else:
        if torch and torch.version and (installer or installed_by)("torch") == "conda":
            raise ProblemFound(
                f"torch {torch.version} was installed by conda, which pip cannot replace cleanly; remove it with "
                "'conda remove --force pytorch' (torchvision and torchaudio too, if installed), then run 'gpudoctor install-torch' again"
            )
        if torch and torch.version:
            plan.steps.append(PipStep(
                f"remove torch {torch.version} ({torch.flavour or 'unknown build'}); pip would keep it otherwise",
                [exe, "-m", "pip", "uninstall", "-y", "torch"],
            ))
        plan.steps.append(PipStep(
            f"torch from the {choice.tag} index",
            pip + [choice.torch_requirement, "--index-url", choice.index_url],
        ))
    plan.steps.append(PipStep(
        f"{choice.bitsandbytes_requirement} and gpudoctor[train] from PyPI, torch pinned to the build above",
        pip + ["--upgrade-strategy", "only-if-needed", choice.bitsandbytes_requirement,
               *(gpudoctor_requirement or self_requirement())],
        needs_pin=True,
    ))
    return plan


def installed_torch() -> str | None:
    """The torch version now in this environment, read fresh from its metadata."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def subprocess_runner(argv: Sequence[str]) -> int:
    return subprocess.call(list(argv))


def run_install(plan: TorchInstallPlan, *, runner: Runner = subprocess_runner,
                torch_version: Callable[[], str | None] | None = None,
                echo: Callable[[str], None] = print) -> None:
    """Run the steps in order; stop at the first failure; check torch's build survived the last step."""
    torch_version = torch_version or installed_torch
    with tempfile.TemporaryDirectory(prefix="gpudoctor-pip-") as folder:
        for number, step in enumerate(plan.steps, start=1):
            constraint = None
            if step.needs_pin:
                version = torch_version()
                if not version:
                    raise ProblemFound("torch is not installed after step 1; see pip's output above, then run 'gpudoctor install-torch' again")
                constraint = str(write_text(Path(folder) / "torch-pin.txt", f"torch=={version}\n"))
            echo(f"[{number}/{len(plan.steps)}] {step.why}")
            echo(f"running: {step.shown(constraint)}")
            argv = step.argv + (["--constraint", constraint] if constraint else [])
            code = runner(argv)
            if code != 0:
                raise ProblemFound(f"step {number} failed (pip exit {code}): {shlex.join(argv)}; fix the cause shown above and run 'gpudoctor install-torch' again")
    final = torch_version()
    if final and "+" in final and not final.endswith(f"+{plan.choice.tag}"):
        raise ProblemFound(f"torch {final} is installed, not the {plan.choice.tag} build; run 'gpudoctor install-torch --index {plan.choice.tag}' again")
