"""The runner and the printed layout, with one fake check per status (flutter doctor's test style).

Checks return verdicts (status, title, detail, fix); the registry gives them the check's id and
category. A check that raises is a "crash" finding: its own row mark, never a traceback, not a blocker.
"""

from __future__ import annotations

import io
import json

import pytest
from doctor_facts import nvidia_box
from rich.console import Console

from gpudoctor.cli.check import render, summary_line
from gpudoctor.doctor import Finding, Verdict, all_checks, diagnose, error, ok, run_checks, warning
from gpudoctor.doctor.registry import REPORT_FIX, Check
from gpudoctor.errors import BadInput


def passing(facts):
    """Always fine."""
    return ok("the card is fine")


def warns(facts):
    """Always a warning."""
    return [warning("the host is odd", "Some detail about it.", "do-this --now")]


def failing(facts):
    """Always an error."""
    return error("the driver is broken", "", "fix-one\nfix-two")


def crashing(facts):
    """Always raises."""
    raise RuntimeError("boom")


def wrong_type(facts):
    """Returns something that is not a Verdict."""
    return ["not a verdict"]


def claims_an_identity(facts):
    """Returns a Finding: a check must not say who it is, the registry does."""
    return [Finding("fake.other", "GPU", "ok", "I am someone else")]


def silent(facts):
    """Nothing to say (brew doctor: a check that finds nothing returns nothing)."""
    return None


FAKES = [
    Check("fake.ok", "GPU", passing),
    Check("fake.warning", "Host", warns),
    Check("fake.error", "Driver", failing),
    Check("fake.crash", "Disk", crashing),
]


def rendered(diagnosis, *, verbose=False) -> str:
    buffer = io.StringIO()
    render(Console(file=buffer, width=100, no_color=True, color_system=None, highlight=False), diagnosis, verbose=verbose)
    return buffer.getvalue()


def test_one_fake_check_per_status_prints_the_whole_layout():
    diagnosis = diagnose(nvidia_box(), checks=FAKES)
    assert rendered(diagnosis) == (
        "gpudoctor check (sizes in GiB = 1024³ bytes)\n"
        "[✓] GPU: NVIDIA GeForce RTX 4090 (24.0 GiB, driver 570.133.07, CUDA 12.8)\n"
        "[✗] Driver: NVIDIA 570.133.07, Secure Boot off\n"
        "    ✗ the driver is broken\n"
        "      fix: fix-one\n"
        "           fix-two\n"
        "[✓] PyTorch: Python 3.12.3 (venv), torch 2.7.1+cu128 (CUDA 12.8), live check skipped (not run)\n"
        "[✓] bitsandbytes: bitsandbytes 0.46.0\n"
        "[!] Host: Ubuntu 24.04.2 LTS, kernel 6.8.0-60-generic, 64.0 GiB RAM, 32 CPUs\n"
        "    ! the host is odd\n"
        "      Some detail about it.\n"
        "      fix: do-this --now\n"
        "[☠] Disk: 400.0 GiB free at /home/ada/.cache/huggingface/hub, 400.0 GiB free at /home/ada/work\n"
        "    ☠ check fake.crash crashed: RuntimeError: boom\n"
        "      This is a bug in gpudoctor, not in your machine; the other checks still ran.\n"
        "      fix: gpudoctor check --report   (paste the block into a bug report)\n"
        "\n"
        "✗ 3 issues found: 1 error, 1 warning, 1 check crashed — not ready to train\n"
    )
    assert not diagnosis.ready


def test_verbose_also_lists_what_passed():
    out = rendered(diagnose(nvidia_box(), checks=FAKES[:1]), verbose=True)
    assert "[✓] GPU: NVIDIA GeForce RTX 4090 (24.0 GiB, driver 570.133.07, CUDA 12.8)\n    • the card is fine\n" in out
    assert out.endswith("\n✓ No issues found — ready to train\n")
    assert "• the card is fine" not in rendered(diagnose(nvidia_box(), checks=FAKES[:1]))


def test_warnings_do_not_block_training():
    diagnosis = diagnose(nvidia_box(), checks=[FAKES[1]])
    assert diagnosis.ready
    assert summary_line(diagnosis) == "! 1 issue found: 1 warning — ready to train"


def test_the_registry_gives_each_verdict_the_checks_id_and_category():
    findings = run_checks(nvidia_box(), checks=[Check("fake.ok", "GPU", passing), Check("fake.warning", "Host", warns),
                                                Check("fake.silent", "Disk", silent)])
    assert findings == [
        Finding("fake.ok", "GPU", "ok", "the card is fine"),
        Finding("fake.warning", "Host", "warning", "the host is odd", "Some detail about it.", "do-this --now"),
    ]


def test_real_checks_return_verdicts_and_never_name_themselves():
    facts = nvidia_box()
    for spec in all_checks():
        result = spec.function(facts)
        verdicts = [] if result is None else [result] if isinstance(result, Verdict) else result
        assert all(type(v) is Verdict for v in verdicts), spec.id


def test_a_crash_is_its_own_status_and_does_not_block_training():
    diagnosis = diagnose(nvidia_box(), checks=[FAKES[0], FAKES[3]])
    (crash,) = diagnosis.crashes
    assert (crash.id, crash.category, crash.status, crash.fix) == ("fake.crash", "Disk", "crash", REPORT_FIX)
    assert [c.status for c in diagnosis.categories if c.name == "Disk"] == ["crash"]
    assert diagnosis.ready and diagnosis.errors == [] and diagnosis.warnings == []
    assert summary_line(diagnosis) == "☠ 1 issue found: 1 check crashed — ready to train as far as the other checks tell"


def test_an_error_outranks_a_crash_in_the_same_row():
    diagnosis = diagnose(nvidia_box(), checks=[Check("fake.error", "Disk", failing), Check("fake.crash", "Disk", crashing)])
    (disk,) = [c for c in diagnosis.categories if c.name == "Disk"]
    assert disk.status == "error"
    assert "[✗] Disk:" in rendered(diagnosis) and "    ☠ check fake.crash crashed" in rendered(diagnosis)


@pytest.mark.parametrize(
    ("function", "title"),
    [
        (wrong_type, "check fake.garbage crashed: TypeError: returned str, not a Verdict"),
        (claims_an_identity, "check fake.garbage crashed: TypeError: returned Finding, not a Verdict"),
        (lambda facts: "fine", "check fake.garbage crashed: TypeError: returned str, not a Verdict"),
    ],
    ids=["list-of-str", "finding", "str"],
)
def test_a_check_returning_garbage_is_reported_as_crashed(function, title):
    (finding,) = run_checks(nvidia_box(), checks=[Check("fake.garbage", "GPU", function)])
    assert (finding.id, finding.status, finding.title) == ("fake.garbage", "crash", title)


def test_a_crash_on_broken_facts_is_a_finding_for_every_real_check():
    facts = nvidia_box()
    facts.gpus = [None]  # nonsense no probe produces: every GPU check must crash politely
    findings = run_checks(facts)
    crashed = {f.id for f in findings if f.status == "crash"}
    assert {"gpu.present", "gpu.vram", "gpu.vram_in_use", "gpu.pcie_link"} <= crashed
    assert all(f.title.startswith(f"check {f.id} crashed: ") for f in findings if f.status == "crash")


def test_only_runs_one_check_and_rejects_unknown_ids():
    assert {f.id for f in run_checks(nvidia_box(), only="gpu.vram")} == {"gpu.vram"}
    with pytest.raises(BadInput, match="there is no check 'gpu.nope'"):
        run_checks(nvidia_box(), only="gpu.nope")


def test_check_ids_are_unique_and_documented():
    checks = all_checks()
    assert len({c.id for c in checks}) == len(checks)
    assert all(c.summary for c in checks)


def test_finding_rejects_unknown_status_and_category():
    with pytest.raises(ValueError):
        Finding("x", "GPU", "fine", "t")
    with pytest.raises(ValueError):
        Finding("x", "Kitchen", "ok", "t")
    assert Finding("x", "GPU", "crash", "t").is_problem


def test_only_the_registry_says_crash():
    with pytest.raises(ValueError):
        Verdict("crash", "a check cannot say it crashed")
    with pytest.raises(ValueError):
        Verdict("fine", "t")


def test_checks_run_in_module_order_whatever_was_imported_first():
    import importlib

    from gpudoctor.doctor.registry import CHECK_MODULES

    importlib.import_module("gpudoctor.doctor.host")  # importing one module early must not reorder them
    modules = [c.function.__module__ for c in all_checks()]
    assert modules == sorted(modules, key=CHECK_MODULES.index)
    assert [c.id for c in all_checks()][:2] == ["gpu.present", "gpu.vram"]


def test_the_doctor_imports_only_layers_below_it():
    import subprocess
    import sys

    code = (
        "import json, sys, gpudoctor.doctor as d; d.all_checks();"
        "print(json.dumps(sorted({m.split('.')[1] for m in sys.modules if m.startswith('gpudoctor.')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    layers = set(json.loads(out))
    # convert: the one dict -> dataclass reader (it imports only errors), which the probe reads saved facts with
    assert layers <= {"doctor", "probe", "compat", "resources", "errors", "atomic", "convert"}, layers
    assert not layers & {"plan", "cli", "train", "install", "data"}, layers
