"""A passing live check is remembered for the same set-up; a failing one never is."""

from __future__ import annotations

import dataclasses

from machines import fixture_sources

from gpudoctor.probe import probe_system
from gpudoctor.probe.facts import GpuFacts, LiveFacts, PackageFacts, PythonFacts
from gpudoctor.probe.live_cache import TTL_SECONDS, cache_key, load, passed, store

PASS = LiveFacts(ran=True, torch_version="2.7.1+cu128", gpu_available=True, bnb_4bit_ok=True, duration_s=4.2)
PY = PythonFacts(executable="/venv/bin/python", version="3.12.3", packages={"torch": PackageFacts("torch", "2.7.1+cu128", "cu128")})
GPU = GpuFacts(0, "nvidia", "NVIDIA GeForce RTX 4090", "nvml", driver_version="570.133.07")


def test_a_pass_is_remembered_and_read_back(tmp_path):
    path = tmp_path / "live.json"
    key = cache_key(PY, [GPU], {})
    store(path, key, PASS, now=1000.0)
    again = load(path, key, now=1000.0 + 60)
    assert again is not None and again.gpu_available and again.cached_at
    assert dataclasses.replace(again, cached_at=None) == PASS


def test_a_failure_is_never_remembered(tmp_path):
    path = tmp_path / "live.json"
    store(path, "k", dataclasses.replace(PASS, gpu_available=False), now=1.0)
    store(path, "k", dataclasses.replace(PASS, bnb_4bit_ok=False, bnb_4bit_error="no kernel"), now=1.0)
    store(path, "k", dataclasses.replace(PASS, timed_out=True), now=1.0)
    store(path, "k", dataclasses.replace(PASS, signal="SIGABRT", stderr_tail="HSA_STATUS_ERROR_INVALID_ISA"), now=1.0)
    store(path, "k", dataclasses.replace(PASS, import_errors={"peft": "ImportError: cannot import name 'Cache'"}), now=1.0)
    assert not path.exists()
    assert passed(PASS) and not passed(LiveFacts(ran=False))


def test_any_change_to_the_set_up_or_age_is_a_miss(tmp_path):
    path = tmp_path / "live.json"
    key = cache_key(PY, [GPU], {})
    store(path, key, PASS, now=1000.0)
    newer_driver = dataclasses.replace(GPU, driver_version="575.51.03")
    other_torch = dataclasses.replace(PY, packages={"torch": PackageFacts("torch", "2.8.0+cu128", "cu128")})
    steering = [{"CUDA_VISIBLE_DEVICES": "1"}, {"BNB_CUDA_VERSION": "124"}, {"ROCM_PATH": "/opt/rocm-7.0"}, {"HSA_ENABLE_SDMA": "0"}]
    changed_keys = [cache_key(PY, [newer_driver], {}), cache_key(other_torch, [GPU], {})] + [cache_key(PY, [GPU], env) for env in steering]
    assert cache_key(PY, [GPU], {"CUDA_LAUNCH_BLOCKING": "1", "HOME": "/x"}) == key  # debugging only: same answer
    for changed in changed_keys:
        assert changed != key and load(path, changed, now=1001.0) is None
    assert load(path, key, now=1000.0 + TTL_SECONDS + 1) is None


def test_a_broken_cache_file_is_a_miss(tmp_path):
    path = tmp_path / "live.json"
    path.write_text("{not json")
    assert load(path, "k") is None


def test_probe_system_runs_the_live_check_once_then_remembers_it(tmp_path):
    calls = []
    sources = fixture_sources("rtx-3090-ti")
    real_live = sources.live

    def counting_live(environ, timeout):
        calls.append(1)
        return real_live(environ, timeout)

    sources = dataclasses.replace(sources, live=counting_live, live_cache=tmp_path / "live.json")
    first = probe_system(sources)
    second = probe_system(sources)
    assert len(calls) == 1
    assert first.python.live.cached_at is None and second.python.live.cached_at is not None
    assert second.python.live.bnb_4bit_ok is True
    from gpudoctor.doctor import diagnose

    torch_row = next(c for c in diagnose(second).categories if c.name == "PyTorch")
    assert "live check remembered from" in torch_row.headline and "--refresh" in torch_row.headline
