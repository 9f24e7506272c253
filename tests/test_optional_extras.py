"""Optional extras never corrupt the output: with `gpudoctor[amd]` installed on a box without ROCm, the amdsmi
wheel prints "Unable to find libamd_smi.so …" to standard output when imported, which used to land in
`check --json` and `plan --json`. Each command runs here as its own process, with the recorded test host
(tests/conftest.py) except that amdsmi is really imported (machines.host_sources_with_real_amdsmi): first a
fake noisy amdsmi that writes to descriptor 1 at import and in its init (os.write, print, a buffered C
printf), then the real wheel where it is installed. And the Makefile installs every extra the project declares.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOISE = "Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager"

FAKE_AMDSMI = '''
import ctypes, os
def _log(what):
    with open(os.environ["FAKE_AMDSMI_LOG"], "a") as log:
        log.write(what + "\\n")
_log("imported")
os.write(1, b"/opt/rocm/lib/libamd_smi.so: cannot open shared object file: No such file or directory\\n")
print("amdsmi: printed from Python at import")
ctypes.CDLL(None).printf(b"amdsmi: buffered C printf at import\\n")
class AmdSmiLibraryException(Exception):
    pass
def amdsmi_init():
    _log("init")
    os.write(1, NOISE.encode() + b"\\n")
    raise AmdSmiLibraryException("Error code:\\n\\t34 | AMDSMI_STATUS_DRIVER_NOT_LOADED")
def amdsmi_shut_down():
    pass
'''.replace("NOISE.encode()", repr(NOISE.encode()))


def run_gpudoctor(args: list[str], tmp_path: Path, *, fake: bool, host: str = "rtx-4090-ubuntu") -> subprocess.CompletedProcess:
    paths = [str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    if fake:
        package = tmp_path / "fake" / "amdsmi"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(textwrap.dedent(FAKE_AMDSMI))
        paths.insert(0, str(tmp_path / "fake"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "GPUDOCTOR_PROBE_SOURCES": "machines:host_sources_with_real_amdsmi",
        "GPUDOCTOR_TEST_HOST": host,
        "FAKE_AMDSMI_LOG": str(tmp_path / "amdsmi.log"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "ROCM_PATH": str(tmp_path / "no-rocm"),  # the real wheel must not find a real ROCm either
    }
    return subprocess.run([sys.executable, "-m", "gpudoctor", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)


def amdsmi_probe(document: dict) -> dict:
    return next(p for p in document["probes"] if p["source"] == "amdsmi")


def test_check_json_stays_json_with_a_noisy_amdsmi(tmp_path):
    done = run_gpudoctor(["check", "--json", "--fast"], tmp_path, fake=True)
    document = json.loads(done.stdout)  # the whole of stdout is the document
    assert (tmp_path / "amdsmi.log").read_text().split() == ["imported", "init"]
    # The noise went into the facts, as the reason amdsmi failed, and nowhere else.
    probe = amdsmi_probe(document)
    assert probe["status"] == "error" and probe["error"].startswith("amdsmi_init failed: Error code:")
    assert NOISE in probe["error"]
    assert "printf" not in done.stdout and "printed from Python" not in done.stdout
    assert "amdsmi:" not in done.stderr and NOISE not in done.stderr
    assert document["host"]["os_id"] == "ubuntu" and document["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"


def test_plan_json_stays_json_with_a_noisy_amdsmi(tmp_path):
    done = run_gpudoctor(["plan", "--model", "mistral-7b", "--json"], tmp_path, fake=True)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document  # a plan for the probed RTX 4090
    assert "imported" in (tmp_path / "amdsmi.log").read_text()  # `plan` probed, so amdsmi really was imported
    for noise in (NOISE, "libamd_smi.so", "amdsmi:"):
        assert noise not in done.stdout and noise not in done.stderr


def real_rocm_library() -> bool:
    return bool(ctypes.util.find_library("amd_smi")) or Path("/opt/rocm/lib/libamd_smi.so").exists()


@pytest.mark.skipif(importlib.util.find_spec("amdsmi") is None, reason="the amd extra (amdsmi) is not installed: make setup installs it")
@pytest.mark.skipif(real_rocm_library(), reason="ROCm's libamd_smi.so is installed here: amdsmi would probe this machine's real GPUs")
def test_the_real_amdsmi_wheel_without_rocm(tmp_path):
    done = run_gpudoctor(["check", "--json", "--fast"], tmp_path, fake=False)
    document = json.loads(done.stdout)
    probe = amdsmi_probe(document)
    assert probe["status"] == "absent" and "libamd_smi.so" in probe["error"]
    assert "Unable to find" not in done.stdout and "cannot open shared object" not in done.stdout
    plan = run_gpudoctor(["plan", "--model", "mistral-7b", "--json"], tmp_path, fake=False)
    assert plan.returncode == 0 and json.loads(plan.stdout)


def test_the_makefile_installs_every_declared_extra():
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    makefile = (REPO / "Makefile").read_text()
    installed = re.search(r"pip install -q -e '\.\[([^\]]*)\]'", makefile)
    assert installed, "the Makefile's editable install line moved"
    assert set(installed.group(1).split(",")) == declared
