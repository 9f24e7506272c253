"""The live check runs its real script in a child Python; fake torch/bitsandbytes packages steer it."""

from __future__ import annotations

import os
import stat
import sys
import textwrap

from gpudoctor.probe.live import MARKER, parse_output, run_live_check


def env_with(tmp_path, **modules: str) -> dict[str, str]:
    """An environment whose PYTHONPATH puts fake top-level modules (name -> source) first."""
    for name, source in modules.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(textwrap.dedent(source))
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


FAKE_CUDA_TORCH = """
    import warnings
    __version__ = "2.7.1+cu128"
    class version:
        cuda = "12.8"
        hip = None
    class cuda:
        @staticmethod
        def is_available():
            warnings.warn("CUDA initialization: Found no NVIDIA driver on your system.")
            return False
        @staticmethod
        def device_count():
            return 0
"""


def test_torch_import_raising_is_recorded(tmp_path):
    env = env_with(tmp_path, torch='raise ImportError("libcudart.so.12: cannot open shared object file")\n')
    facts = run_live_check(environ=env, timeout=20)
    assert facts.ran and not facts.timed_out and facts.error is None
    assert facts.torch_error == "ImportError: libcudart.so.12: cannot open shared object file"
    assert facts.gpu_available is None and facts.duration_s is not None


def test_gpu_unavailable_keeps_torch_warning_and_bnb_failure(tmp_path):
    env = env_with(
        tmp_path,
        torch=FAKE_CUDA_TORCH,
        bitsandbytes='raise RuntimeError("Configured CUDA binary not found at libbitsandbytes_cuda128.so")\n',
    )
    facts = run_live_check(environ=env, timeout=20)
    assert (facts.torch_version, facts.cuda_version, facts.hip_version) == ("2.7.1+cu128", "12.8", None)
    assert (facts.gpu_available, facts.device_count) == (False, 0)
    assert facts.gpu_error == "CUDA initialization: Found no NVIDIA driver on your system."
    assert facts.bnb_error == "RuntimeError: Configured CUDA binary not found at libbitsandbytes_cuda128.so"
    assert facts.bnb_4bit_ok is None


def test_a_native_crash_keeps_what_was_learnt(tmp_path):
    env = env_with(tmp_path, torch=FAKE_CUDA_TORCH, bitsandbytes="import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    facts = run_live_check(environ=env, timeout=20)
    assert facts.torch_version == "2.7.1+cu128" and facts.gpu_available is False
    assert facts.error.startswith("the live check crashed (killed by signal 11)")


def fake_python(tmp_path, body: str) -> str:
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_timeout_sets_timed_out(tmp_path):
    facts = run_live_check(python=fake_python(tmp_path, "exec sleep 5\n"), timeout=0.3)
    assert facts.timed_out and facts.ran
    assert facts.error == "the live check did not finish within 0.3 s"


def test_no_result_line_and_missing_interpreter(tmp_path):
    facts = run_live_check(python=fake_python(tmp_path, "echo hello\n"), timeout=5)
    assert facts.error == "the live check printed no result"
    missing = run_live_check(python=str(tmp_path / "nope" / "python"), timeout=5)
    assert not missing.ran and missing.error.startswith("could not start")


def test_parse_output_takes_the_last_marker_line():
    text = f"noise\n{MARKER}{{\"torch_version\": \"1\"}}\nmore noise\n{MARKER}{{\"torch_version\": \"2\"}}\n"
    assert parse_output(text) == {"torch_version": "2"}
    assert parse_output(f"{MARKER}not json\n") is None
    assert parse_output("") is None


def test_unknown_keys_from_a_newer_script_are_ignored(tmp_path):
    line = MARKER + '{"torch_version": "2.8.0+rocm6.4", "hip_version": "6.4", "someday": 1}'
    facts = run_live_check(python=fake_python(tmp_path, f"echo '{line}'\n"), timeout=5)
    assert (facts.torch_version, facts.hip_version, facts.error) == ("2.8.0+rocm6.4", "6.4", None)


def test_real_interpreter_and_torch_run_the_script_with_every_gpu_hidden():
    """This venv's real torch and bitsandbytes, with the GPUs hidden as the whole suite hides them (so on
    a CPU-only box and on a GPU box alike): the script reports no GPU and never tries the 4-bit matmul."""
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""}
    facts = run_live_check(environ=environ, timeout=60, python=sys.executable)
    assert facts.error is None and facts.torch_error is None
    assert facts.torch_version and facts.gpu_available is False and facts.device_count == 0
    assert facts.bnb_4bit_ok is None
