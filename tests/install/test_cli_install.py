"""The install-cuda / install-rocm / install-torch commands through the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fakebox import CHANGING
from machines import current_host

import gpudoctor.cli.install as cli_install
from gpudoctor.install import scripts, torch_install
from gpudoctor.probe.facts import GpuFacts, PackageFacts, PythonFacts, SystemFacts


@pytest.fixture(autouse=True)
def installers_see_the_test_host(host):
    """No test here runs an installer against this machine: unless it names another, the scripts see a
    fake box built from the test host ($GPUDOCTOR_TEST_HOST, tests/conftest.py)."""
    return host(current_host())


def changed(box) -> list[str]:
    """The commands that change a machine among those the scripts ran on `box`."""
    return [line for line in box.logged() if line.startswith(CHANGING)]


def test_install_cuda_dry_run_on_a_box_without_a_gpu_says_why_it_would_stop(cli, host):
    """The CLI runs the real script, here against the no-gpu machine: the plan prints, then the reason, exit 1."""
    box = host("no-gpu")
    result = cli("install-cuda", "--dry-run")
    assert result.exit_code == 1
    assert "install-cuda: plan:" in result.stdout
    assert "install-cuda: would stop: no NVIDIA GPU found by lspci; " in result.stdout
    assert result.stdout.rstrip().endswith("install-cuda: dry run: nothing was changed")
    assert "Traceback" not in result.stdout + result.stderr
    assert box.logged()[0] == "lspci -nn -d 10de:" and not changed(box)


def test_install_cuda_dry_run_on_a_healthy_rtx_4090_box_has_nothing_to_do(cli, host):
    box = host("rtx-4090-ubuntu")
    result = cli("install-cuda", "--dry-run")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout == (
        "install-cuda: NVIDIA GPU(s): 10de:2684\n"
        "install-cuda: already installed: nvidia-driver-570-open (pass --driver BRANCH to switch branches)\n"
        "install-cuda: nothing to change: everything is already installed\n"
        "install-cuda: dry run: nothing was changed\n"
    )
    assert not changed(box)


@pytest.mark.parametrize("machine", ["no-gpu", "rtx-4090-ubuntu"])
def test_install_rocm_dry_run_without_an_amd_gpu_says_why_it_would_stop(cli, host, machine):
    box = host(machine)
    result = cli("install-rocm", "--dry-run")
    assert result.exit_code == 1
    assert "install-rocm: would stop: no AMD GPU found by lspci; " in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not changed(box)


def test_flags_pass_through_and_the_exit_code_comes_back(cli, monkeypatch):
    calls = []
    monkeypatch.setattr(scripts, "run_script", lambda name, args: calls.append((name, args)) or 3)
    assert cli("install-cuda", "--dry-run", "--yes", "--force", "--driver", "570", "--proprietary", "--toolkit", "12.8").exit_code == 3
    assert cli("install-rocm", "-y", "--rocm", "6.4", "--no-dkms", "--user", "alice").exit_code == 3
    assert calls == [
        ("install-cuda.sh", ["--dry-run", "--yes", "--force", "--driver", "570", "--proprietary", "--toolkit", "12.8"]),
        ("install-rocm.sh", ["--yes", "--rocm", "6.4", "--no-dkms", "--user", "alice"]),
    ]


def test_a_script_usage_error_is_exit_2_with_its_one_line(cli, host):
    host("no-gpu")
    result = cli("install-rocm", "--rocm", "1.0")
    assert result.exit_code == 2
    assert result.stderr == "install-rocm: error: ROCm '1.0' is not in compat.yaml rocm_releases (known: 7.1 7.0 6.4) (see install-rocm --help)\n"


def test_a_missing_script_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(scripts, "install_dir", lambda: tmp_path)
    result = cli("install-cuda", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == f"gpudoctor: error: {tmp_path}/install-cuda.sh is missing; reinstall gpudoctor (pip install --force-reinstall gpudoctor)\n"


def test_a_missing_bash_is_one_line(cli, monkeypatch):
    monkeypatch.setattr(scripts.shutil, "which", lambda name: None)
    result = cli("install-rocm", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == "gpudoctor: error: bash is not on PATH; the installers are bash scripts (sudo apt-get install bash)\n"


@pytest.fixture
def rtx_4090(monkeypatch):
    facts = SystemFacts(
        gpus=[GpuFacts(index=0, vendor="nvidia", name="NVIDIA GeForce RTX 4090", source="nvml",
                       driver_version="570.133.07", cuda_driver_version="12.8", compute_capability="8.9")],
        python=PythonFacts(executable=sys.executable, in_venv=True,
                           packages={"torch": PackageFacts(name="torch", version="2.13.0+cpu", flavour="cpu")}),
    )
    monkeypatch.setattr(cli_install, "_probe", lambda: facts)
    monkeypatch.setattr(torch_install, "in_virtualenv", lambda: True)
    monkeypatch.setattr(torch_install, "self_requirement", lambda: ["gpudoctor[train]==0.1.0"])
    return facts


def test_install_torch_dry_run_prints_the_pip_commands(cli, rtx_4090):
    result = cli("install-torch", "--dry-run")
    assert result.exit_code == 0, result.stderr
    py = sys.executable
    assert result.stdout == (
        "wheel index: cu128 (https://download.pytorch.org/whl/cu128)\n"
        "why: NVIDIA GeForce RTX 4090: driver 570.133.07 supports CUDA 12.8, so CUDA 12.8 wheels (cu128)\n"
        "1. remove torch 2.13.0+cpu (cpu); pip would keep it otherwise\n"
        f"   would run: {py} -m pip uninstall -y torch\n"
        "2. torch from the cu128 index\n"
        f"   would run: {py} -m pip install torch --index-url https://download.pytorch.org/whl/cu128\n"
        "3. bitsandbytes>=0.43.0 and gpudoctor[train] from PyPI, torch pinned to the build above\n"
        f"   would run: {py} -m pip install --upgrade-strategy only-if-needed 'bitsandbytes>=0.43.0' "
        "'gpudoctor[train]==0.1.0' --constraint <file: torch==the version installed above>\n"
        "dry run: nothing was changed\n"
    )


def test_install_torch_with_yes_runs_pip_through_the_runner(cli, rtx_4090, monkeypatch):
    seen = []
    monkeypatch.setattr(cli_install, "_runner", lambda: lambda argv: seen.append(list(argv)) or 0)
    monkeypatch.setattr(torch_install, "installed_torch", lambda: "2.13.0+cu128")
    result = cli("install-torch", "--yes", "--index", "cu128")
    assert result.exit_code == 0, result.stderr
    assert [argv[3:5] for argv in seen] == [["uninstall", "-y"], ["install", "torch"], ["install", "--upgrade-strategy"]]
    assert seen[2][-2] == "--constraint"
    assert result.stdout.splitlines()[-1] == (
        "done: torch from cu128, bitsandbytes>=0.43.0, gpudoctor[train]; check it with 'gpudoctor check'"
    )


def test_install_torch_without_yes_and_without_a_terminal_asks_for_yes(cli, rtx_4090):
    result = cli("install-torch")
    assert result.exit_code == 1
    assert result.stderr == "gpudoctor: error: not asking without a terminal; pass --yes to run the pip commands above\n"


def test_install_torch_refuses_outside_a_virtualenv_unless_system(cli, rtx_4090, monkeypatch):
    monkeypatch.setattr(torch_install, "in_virtualenv", lambda: False)
    result = cli("install-torch", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == (
        f"gpudoctor: error: {sys.executable} is not in a virtual environment; create one "
        "(python3 -m venv .venv && . .venv/bin/activate) and run this again, or pass --system\n"
    )
    assert cli("install-torch", "--dry-run", "--system").exit_code == 0


def test_install_torch_unknown_index_is_exit_2(cli, rtx_4090):
    result = cli("install-torch", "--dry-run", "--index", "cu999")
    assert result.exit_code == 2
    assert result.stderr.startswith("gpudoctor: error: --index cu999: unknown wheel index")


def test_install_torch_dry_run_does_not_import_the_training_stack():
    code = (
        "import sys, gpudoctor.cli.main as m;"
        "m.run(['install-torch', '--dry-run', '--system', '--index', 'cpu']);"
        "print('loaded:', ','.join(x for x in ('torch','transformers','peft','bitsandbytes','accelerate','datasets') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.splitlines()[-1] == "loaded: "
