"""The pip steps install-torch builds and how they run (through a recording runner; pip never runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.errors import ProblemFound
from gpudoctor.install import torch_install
from gpudoctor.install.torch_index import choice_for_tag
from gpudoctor.probe.facts import PackageFacts, PythonFacts

PY = "/venv/bin/python"
SELF = ["gpudoctor[train]==0.1.0"]


def python_with(torch_version=None, flavour=None):
    return PythonFacts(executable=PY, in_venv=True,
                       packages={"torch": PackageFacts(name="torch", version=torch_version, flavour=flavour)})


def argv_of(plan):
    return [step.argv for step in plan.steps]


def test_cpu_torch_is_removed_then_the_cuda_build_installed_then_the_rest_pinned():
    plan = torch_install.plan_install(choice_for_tag("cu128"), python_with("2.13.0+cpu", "cpu"), gpudoctor_requirement=SELF)
    assert argv_of(plan) == [
        [PY, "-m", "pip", "uninstall", "-y", "torch"],
        [PY, "-m", "pip", "install", "torch", "--index-url", "https://download.pytorch.org/whl/cu128"],
        [PY, "-m", "pip", "install", "--upgrade-strategy", "only-if-needed", "bitsandbytes>=0.43.0", *SELF],
    ]
    assert [step.needs_pin for step in plan.steps] == [False, False, True]
    assert plan.steps[2].shown().endswith("gpudoctor[train]==0.1.0' --constraint <file: torch==the version installed above>")


def test_fresh_environment_installs_torch_without_an_uninstall():
    plan = torch_install.plan_install(choice_for_tag("rocm6.4"), python_with(), gpudoctor_requirement=SELF)
    assert argv_of(plan)[0] == [PY, "-m", "pip", "install", "torch<2.10", "--index-url", "https://download.pytorch.org/whl/rocm6.4"]
    assert "bitsandbytes>=0.50.0" in argv_of(plan)[1]


def test_the_right_torch_build_already_installed_is_kept():
    plan = torch_install.plan_install(choice_for_tag("cu128"), python_with("2.13.0", "cu128"), gpudoctor_requirement=SELF)
    assert plan.skipped == ["already installed: torch 2.13.0 (cu128)"]
    assert len(plan.steps) == 1


def test_run_pins_torch_to_the_version_step_one_installed(tmp_path):
    plan = torch_install.plan_install(choice_for_tag("cu128"), python_with("2.13.0+cpu", "cpu"), gpudoctor_requirement=SELF)
    seen: list[list[str]] = []
    pins: list[str] = []

    def runner(argv):
        seen.append(list(argv))
        if "--constraint" in argv:
            pins.append(Path(argv[argv.index("--constraint") + 1]).read_text())
        return 0

    echoed: list[str] = []
    torch_install.run_install(plan, runner=runner, torch_version=lambda: "2.13.0+cu128", echo=echoed.append)
    assert seen[:2] == argv_of(plan)[:2]
    assert seen[2][:-2] == argv_of(plan)[2]
    assert pins == ["torch==2.13.0+cu128\n"]
    assert echoed[0] == "[1/3] remove torch 2.13.0+cpu (cpu); pip would keep it otherwise"
    assert echoed[1] == f"running: {PY} -m pip uninstall -y torch"


def test_a_failing_step_stops_the_run():
    plan = torch_install.plan_install(choice_for_tag("cu128"), python_with(), gpudoctor_requirement=SELF)
    seen = []

    def runner(argv):
        seen.append(argv)
        return 1

    with pytest.raises(ProblemFound, match=r"^step 1 failed \(pip exit 1\): /venv/bin/python -m pip install torch"):
        torch_install.run_install(plan, runner=runner, torch_version=lambda: None, echo=lambda _: None)
    assert len(seen) == 1


def test_a_torch_build_swapped_by_the_last_step_is_reported():
    plan = torch_install.plan_install(choice_for_tag("cu128"), python_with(), gpudoctor_requirement=SELF)
    versions = iter(["2.13.0+cu128", "2.13.0+cpu"])
    with pytest.raises(ProblemFound, match=r"torch 2.13.0\+cpu is installed, not the cu128 build"):
        torch_install.run_install(plan, runner=lambda argv: 0, torch_version=lambda: next(versions), echo=lambda _: None)


def test_this_checkout_names_itself_as_an_editable_requirement():
    requirement = torch_install.self_requirement()
    assert requirement[-1].endswith("[train]")
    if requirement[0] == "-e":
        assert Path(requirement[1].removesuffix("[train]"), "pyproject.toml").is_file()
