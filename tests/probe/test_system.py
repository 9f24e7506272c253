"""probe_system: all probes at once, the live check only when it can tell something, crashes contained."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from machines import MACHINES, current_host, fixture_sources, probe_fixture

from gpudoctor.probe import Sources, default_sources, probe_system
from gpudoctor.probe.sources import SOURCES_VARIABLE
from gpudoctor.probe.facts import LiveFacts, SystemFacts

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")


@pytest.mark.parametrize("name", MACHINES)
def test_every_recorded_machine_probes_cleanly_and_round_trips(name):
    facts = probe_fixture(name)
    assert facts.errors == [] and facts.host.errors == []
    assert SystemFacts.from_dict(json.loads(json.dumps(facts.to_dict()))) == facts


EXPECTED = {
    # name: (GPU names, NVML status, live ran, torch flavour)
    "rtx-3090-ti": (["NVIDIA GeForce RTX 3090 Ti"], "ok", True, "cu128"),
    "rtx-6000-ada": (["NVIDIA RTX 6000 Ada Generation"], "ok", True, "cu128"),
    "rx-7900-xt": (["AMD Radeon RX 7900 XT"], "absent", True, "rocm6.4"),
    "radeon-pro-w7900": (["AMD Radeon Pro W7900"], "absent", True, "rocm6.4"),
    "nvidia-driver-mismatch": ([], "error", True, "cu128"),
    "cpu-torch-on-gpu": (["NVIDIA GeForce RTX 4090"], "ok", True, "cpu"),
    "amd-no-render-group": (["AMD Radeon RX 7900 XTX"], "absent", True, "rocm6.4"),
    "nouveau": ([], "absent", True, "cu128"),
    "secure-boot-unsigned": ([], "error", True, "cu128"),
    "no-gpu": ([], "absent", False, "cpu"),
    "rtx-4090-ubuntu": (["NVIDIA GeForce RTX 4090"], "ok", True, "cu128"),
}


def test_the_fixture_set_is_the_one_documented():
    assert sorted(EXPECTED) == MACHINES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_machine_summary(name):
    names, nvml_status, live_ran, flavour = EXPECTED[name]
    facts = probe_fixture(name)
    assert [gpu.name for gpu in facts.gpus] == names
    assert next(p.status for p in facts.probes if p.source == "nvml") == nvml_status
    assert facts.python.live.ran is live_ran
    assert facts.python.packages["torch"].flavour == flavour


def test_a_gpu_on_the_bus_without_a_driver_still_triggers_the_live_check():
    facts = probe_fixture("secure-boot-unsigned")
    assert [(c.vendor, c.device_id, c.driver) for c in facts.pci_gpus] == [("nvidia", "0x2684", None)]
    assert facts.python.live.gpu_error.startswith("CUDA initialization: Found no NVIDIA driver")


def recording_live(calls):
    def live(environ, timeout):
        calls.append(timeout)
        return LiveFacts(ran=True, gpu_available=True)

    return live


def test_live_is_skipped_without_a_gpu_or_without_torch_or_when_fast():
    calls = []
    sources = fixture_sources("no-gpu")
    sources.live = recording_live(calls)
    assert probe_system(sources).python.live == LiveFacts(ran=False, skipped_reason="no GPU was found")

    sources = fixture_sources("rtx-3090-ti")
    sources.live = recording_live(calls)
    sources.package_version = lambda name: None
    assert probe_system(sources).python.live.skipped_reason == "torch is not installed"

    sources = fixture_sources("rtx-3090-ti")
    sources.live = recording_live(calls)
    assert probe_system(sources, live=False).python.live == LiveFacts(ran=False, skipped_reason="skipped (--fast)")
    assert calls == []

    assert probe_system(sources).python.live.gpu_available is True
    assert calls == [20.0]


def test_a_crashing_probe_is_reported_and_the_rest_still_answer():
    sources = fixture_sources("rtx-3090-ti")

    def explode():
        raise ZeroDivisionError("division by zero")

    sources.python = explode
    facts = probe_system(sources)
    assert facts.errors == ["the python probe crashed: ZeroDivisionError: division by zero"]
    assert [gpu.name for gpu in facts.gpus] == ["NVIDIA GeForce RTX 3090 Ti"]
    assert facts.host.os_version == "24.04"


def test_a_crashing_live_callable_is_contained():
    sources = fixture_sources("rtx-3090-ti")

    def broken(environ, timeout):
        raise OSError("fork failed")

    sources.live = broken
    facts = probe_system(sources)
    assert facts.errors == ["the live probe crashed: OSError: fork failed"]
    assert facts.gpus and facts.python.packages["torch"].version == "2.7.1+cu128"


def test_a_probe_given_no_sources_reads_the_test_host_never_this_machine(host):
    """Under the suite, probe_system() with no Sources reads the recorded test host (tests/conftest.py)."""
    host("no-gpu")
    calls = []
    facts = probe_system(default_sources(live=recording_live(calls)), live=True)
    assert facts.gpus == [] and facts.errors == []
    assert facts.python.live.skipped_reason == "no GPU was found"
    assert calls == []
    assert {p.source: p.status for p in facts.probes}["nvml"] == "absent"
    assert probe_system(live=False).host.cpu_model == probe_fixture("no-gpu").host.cpu_model

    host("rtx-4090-ubuntu")
    facts = probe_system(live=True)
    assert [gpu.name for gpu in facts.gpus] == ["NVIDIA GeForce RTX 4090"]
    assert (facts.host.os_id, facts.host.os_version) == ("ubuntu", "24.04")
    assert facts.python.live.gpu_available is True


def test_default_sources_are_the_real_machine_without_the_hook(monkeypatch):
    """Outside the suite no factory is named: Sources() as it always was (built here, never probed)."""
    monkeypatch.delenv(SOURCES_VARIABLE)
    assert default_sources() == Sources()
    assert default_sources(live_cache=None, live_timeout=5.0) == Sources(live_timeout=5.0)


def test_a_broken_hook_fails_loudly_instead_of_reading_this_machine(monkeypatch):
    for spec in ("nosuchmodule:factory", "machines:nosuchfactory", "machines"):
        monkeypatch.setenv(SOURCES_VARIABLE, spec)
        with pytest.raises(RuntimeError, match=f"{SOURCES_VARIABLE}={spec}: cannot load that factory"):
            default_sources()


def test_probing_never_imports_the_training_stack():
    """A child Python probing with no Sources (it inherits the test host through GPUDOCTOR_PROBE_SOURCES)."""
    code = (
        "import sys, json\n"
        "from gpudoctor.probe import probe_system\n"
        "facts = probe_system()\n"
        f"print(json.dumps([[m for m in {HEAVY!r} if m in sys.modules], facts.host.cpu_model]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [[], probe_fixture(current_host()).host.cpu_model]
