"""`gpudoctor check` end to end: the test host, every recorded machine (full output at 100 columns),
--json keys, --report, --list-checks, --only, --facts, and that it never imports the training stack.

Golden outputs live in tests/check_golden/; after a deliberate change, rewrite them with
`GPUDOCTOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_check_cli.py` and review the diff.
A golden cannot approve a wrong row: tests/check_golden/expected.yaml says, per machine, what each row's
status must be and why (from what the machine is), and every golden's rows are checked against it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from machines import MACHINES, fixture_sources, probe_fixture

import gpudoctor.probe
from gpudoctor.probe import probe_system

GOLDEN = Path(__file__).resolve().parent / "check_golden"
EXPECTED_ROWS = GOLDEN / "expected.yaml"
UPDATE = os.environ.get("GPUDOCTOR_UPDATE_GOLDEN") == "1"
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")

# What a person with each card needs to hear: exit code, and the findings (id -> a piece of the fix).
EXPECTED = {
    "rtx-3090-ti": (0, {}),
    "rtx-6000-ada": (0, {}),
    "rx-7900-xt": (0, {}),
    "radeon-pro-w7900": (0, {}),
    "no-gpu": (1, {"gpu.present": "gpudoctor train --demo"}),
    "nvidia-driver-mismatch": (1, {"gpu.present": None, "nvidia.library_mismatch": "sudo reboot", "torch.sees_gpu": None}),
    "cpu-torch-on-gpu": (1, {"torch.build_vs_gpu": "gpudoctor install-torch"}),
    "amd-no-render-group": (1, {"amd.groups": "sudo usermod -aG render,video $USER", "torch.sees_gpu": None}),
    "nouveau": (1, {"gpu.present": None, "nvidia.nouveau": "gpudoctor install-cuda", "torch.sees_gpu": None}),
    "secure-boot-unsigned": (1, {"gpu.present": None, "nvidia.secure_boot": "sudo mokutil --import", "torch.sees_gpu": None}),
    "rtx-4090-ubuntu": (0, {}),
}


def compare_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; create it with GPUDOCTOR_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def machine(monkeypatch):
    """Make `gpudoctor check` probe a recorded machine instead of this one."""

    def use(name: str):
        facts = probe_fixture(name)
        monkeypatch.setattr(gpudoctor.probe, "probe_system", lambda **_: facts)
        return facts

    return use


def test_every_recorded_machine_is_expected():
    assert sorted(EXPECTED) == sorted(MACHINES)


@pytest.mark.parametrize("name", MACHINES)
def test_recorded_machine_full_output(cli, machine, name):
    machine(name)
    result = cli("check")
    assert result.exit_code == EXPECTED[name][0]
    assert result.stderr == ""
    compare_golden(f"{name}.txt", result.stdout)


@pytest.mark.parametrize("name", MACHINES)
def test_recorded_machine_json_findings_and_fixes(cli, machine, name):
    machine(name)
    result = cli("check", "--json")
    exit_code, expected = EXPECTED[name]
    assert result.exit_code == exit_code
    document = json.loads(result.stdout)
    assert document["ready"] is (exit_code == 0)
    problems = {f["id"]: f for f in document["findings"] if f["status"] != "ok"}
    assert {i for i, f in problems.items() if f["status"] == "error"} == set(expected)
    for check_id, fix in expected.items():
        if fix is not None:
            assert fix in problems[check_id]["fix"]


# --- every golden's rows against what the machine is (tests/check_golden/expected.yaml) ----------------

ROW_STATUS = {"✓": "ok", "!": "warning", "✗": "error", "☠": "crash"}
EXPECTABLE = {*ROW_STATUS.values(), "absent"}


def expected_rows() -> dict[str, dict[str, dict[str, str]]]:
    return yaml.safe_load(EXPECTED_ROWS.read_text(encoding="utf-8"))


def golden_machine(path: Path) -> str:
    """'rtx-3090-ti-verbose.txt' -> 'rtx-3090-ti': the machine a golden was rendered on."""
    return path.stem.removesuffix("-verbose").removesuffix("-report")


def rendered_rows(text: str) -> dict[str, str]:
    """Category -> status, from a `gpudoctor check` output's '[✓] GPU: …' rows (absent rows are left out)."""
    import re

    rows = [re.match(r"\[(.)\] (\w+)(?::|$)", line) for line in text.splitlines()]
    return {row.group(2): ROW_STATUS[row.group(1)] for row in rows if row}


def reported_rows(text: str) -> dict[str, str]:
    """Category -> worst status, from a `--report` block's '  [✗] check.id: …' lines (categories without a problem are ok)."""
    import re

    from gpudoctor.doctor import CATEGORIES, all_checks
    from gpudoctor.doctor.finding import worst

    category = {c.id: c.category for c in all_checks()}
    marks = [re.match(r"  \[(.)\] ([\w.]+): ", line) for line in text.splitlines()]
    found: dict[str, list[str]] = {}
    for mark in filter(None, marks):
        found.setdefault(category[mark.group(2)], []).append(ROW_STATUS[mark.group(1)])
    return {name: worst(found.get(name, [])) for name in CATEGORIES}


def test_every_machine_has_an_expectation_for_every_row():
    from gpudoctor.doctor import CATEGORIES

    expected = expected_rows()
    assert sorted(expected) == sorted(MACHINES)
    for name, rows in expected.items():
        assert list(rows) == list(CATEGORIES), name
        for category, row in rows.items():
            assert row["status"] in EXPECTABLE, (name, category)
            assert row["why"].strip() and "\n" not in row["why"].strip(), (name, category)


@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN.glob("*.txt")))
def test_every_golden_row_has_the_expected_status(golden):
    path = GOLDEN / golden
    expected = expected_rows()[golden_machine(path)]
    text = path.read_text(encoding="utf-8")
    if golden.endswith("-report.txt"):
        found = reported_rows(text)
        want = {category: ("ok" if row["status"] == "absent" else row["status"]) for category, row in expected.items()}
    else:
        found = rendered_rows(text)
        want = {category: row["status"] for category, row in expected.items() if row["status"] != "absent"}
    wrong = {c: f"{found.get(c, 'absent')}, expected {want.get(c, 'absent')}: {expected[c]['why']}"
             for c in expected if found.get(c) != want.get(c)}
    assert not wrong, f"{golden}: {wrong}"


def test_json_keys_are_stable(cli, machine):
    machine("rtx-3090-ti")
    document = json.loads(cli("check", "--json").stdout)
    assert list(document) == ["version", "ready", "gpus", "probes", "host", "python", "errors", "pci_gpus", "findings"]
    for finding in document["findings"]:
        assert list(finding) == ["id", "category", "status", "title", "detail", "fix"]
    assert document["gpus"][0]["name"] == "NVIDIA GeForce RTX 3090 Ti"
    assert {"os_pretty", "kernel", "disks", "shm_total_bytes"} <= set(document["host"])
    assert {"version", "packages", "live"} <= set(document["python"])


def test_verbose_output(cli, machine):
    machine("rtx-3090-ti")
    result = cli("check", "-v")
    assert result.exit_code == 0
    compare_golden("rtx-3090-ti-verbose.txt", result.stdout)


def test_report_block(cli, machine):
    machine("amd-no-render-group")
    result = cli("check", "--report")
    assert result.exit_code == 1
    assert result.stdout.startswith("```text\ngpudoctor ") and result.stdout.endswith("\n```\n")
    assert "/home/sam" not in result.stdout  # the home folder is shown as ~
    compare_golden("amd-no-render-group-report.txt", result.stdout)


def test_facts_round_trip_through_json(cli, machine, tmp_path):
    machine("cpu-torch-on-gpu")
    saved = cli("check", "--json")
    path = tmp_path / "facts.json"
    path.write_text(saved.stdout, encoding="utf-8")
    replay = cli("check", "--facts", str(path), "--json")
    assert replay.exit_code == saved.exit_code == 1
    assert json.loads(replay.stdout) == json.loads(saved.stdout)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "not JSON (line 1"),
        ("[1, 2]", "expected the object 'gpudoctor check --json' prints"),
    ],
)
def test_bad_facts_file_is_one_line_exit_2(cli, tmp_path, content, message):
    path = tmp_path / "facts.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = cli("check", "--facts", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"gpudoctor: error: --facts {path}: {message}")
    assert result.stderr.count("\n") == 1


def test_list_checks(cli):
    result = cli("check", "--list-checks")
    assert result.exit_code == 0
    ids = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"gpu.present", "nvidia.driver_vs_torch", "amd.gfx_target", "bnb.installed", "disk.free"} <= set(ids)


@pytest.fixture
def crashing_check(monkeypatch):
    """Replace host.shm with a check that raises: a bug in the doctor on a healthy machine."""
    from gpudoctor.doctor import registry

    registry.all_checks()

    def shm_bug(facts):
        """/dev/shm is at least 1 GiB (here: a bug)."""
        raise KeyError("shm_total_bytes")

    monkeypatch.setitem(registry._REGISTRY, "host.shm", registry.Check("host.shm", "Host", shm_bug))


def test_a_crashed_check_is_its_own_row_and_exits_1(cli, machine, crashing_check):
    machine("rtx-3090-ti")
    result = cli("check")
    assert result.exit_code == 1 and result.stderr == ""
    assert "[☠] Host: Ubuntu 24.04.2 LTS" in result.stdout
    assert "    ☠ check host.shm crashed: KeyError: 'shm_total_bytes'\n" in result.stdout
    assert "      fix: gpudoctor check --report   (paste the block into a bug report)\n" in result.stdout
    assert result.stdout.endswith("\n☠ 1 issue found: 1 check crashed — ready to train as far as the other checks tell\n")


def test_a_crashed_check_in_json_and_report(cli, machine, crashing_check):
    machine("rtx-3090-ti")
    result = cli("check", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 1 and document["ready"] is True  # a doctor bug never blocks a working machine
    (crash,) = [f for f in document["findings"] if f["status"] == "crash"]
    assert list(crash) == ["id", "category", "status", "title", "detail", "fix"]
    assert (crash["id"], crash["category"]) == ("host.shm", "Host")
    report = cli("check", "--report").stdout
    assert "ready to train: yes (0 errors, 0 warnings, 1 crashed check)" in report
    assert "  [☠] host.shm: check host.shm crashed: KeyError: 'shm_total_bytes'" in report


def test_a_crashed_check_does_not_block_the_training_preflight(crashing_check):
    from gpudoctor.train.preflight import run_preflight

    assert run_preflight(facts=probe_fixture("rtx-3090-ti", live=False)).on_gpu is True


def test_only_one_check(cli, machine):
    machine("cpu-torch-on-gpu")
    result = cli("check", "--only", "gpu.vram")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:] == ["[✓] GPU", "", "✓ No issues found — ready to train"]


def test_unknown_check_and_conflicting_flags_are_usage_errors(cli):
    result = cli("check", "--only", "gpu.nope")
    assert (result.exit_code, result.stderr) == (
        2,
        "gpudoctor: error: --only: there is no check 'gpu.nope'; 'gpudoctor check --list-checks' lists them\n",
    )
    assert cli("check", "--json", "--report").exit_code == 2


def test_a_broken_environment_gives_findings_not_a_traceback(cli, monkeypatch, tmp_path):
    def broken_nvml():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file: Input/output error")

    def broken_amdsmi():
        raise RuntimeError("amdsmi: init failed")

    def broken_run(argv, timeout):
        raise PermissionError(f"{argv[0]}: permission denied")

    sources = dataclasses.replace(
        fixture_sources("no-gpu"), nvml=broken_nvml, amdsmi=broken_amdsmi, root=tmp_path, run=broken_run, live_timeout=1.0
    )
    facts = probe_system(sources, live=False)
    monkeypatch.setattr(gpudoctor.probe, "probe_system", lambda **_: facts)
    result = cli("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "No GPU found" in result.stdout


def test_a_crashing_probe_is_a_finding(cli, monkeypatch):
    def crash(**_):
        raise RuntimeError("probe bug")

    monkeypatch.setattr(gpudoctor.probe, "probe_system", crash)
    result = cli("check")
    assert result.exit_code == 1
    assert "the probe crashed: RuntimeError: probe bug" in result.stdout


def test_check_with_no_facts_probes_the_host_a_box_without_a_gpu(cli, host):
    """No --facts: `check` probes "this machine", which under the suite is the host a test names."""
    host("no-gpu")
    result = cli("check", "--fast")
    assert result.exit_code == 1
    assert "[✗] GPU: none found" in result.stdout
    assert "No GPU found" in result.stdout
    assert "fix: gpudoctor train --demo" in result.stdout
    document = json.loads(cli("check", "--json").stdout)
    assert document["ready"] is False
    assert any(f["id"] == "gpu.present" and f["status"] == "error" for f in document["findings"])


def test_check_with_no_facts_probes_the_host_a_healthy_rtx_4090(cli, host):
    host("rtx-4090-ubuntu")
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert "NVIDIA GeForce RTX 4090" in result.stdout and "ready to train" in result.stdout
    document = json.loads(cli("check", "--json").stdout)
    assert document["ready"] is True and document["host"]["os_pretty"] == "Ubuntu 24.04.2 LTS"
    assert document["python"]["live"]["gpu_available"] is True


def test_check_json_does_not_import_the_training_stack(tmp_path):
    code = (
        "import sys; from gpudoctor.cli.main import run; code = run(['check', '--json']);"
        f"sys.stderr.write('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules) + '\\n')"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}  # where a passing live check would be remembered
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "HEAVY:\n" in done.stderr, done.stderr
    assert "findings" in json.loads(done.stdout)
