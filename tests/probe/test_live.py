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


# --- what the GPU build carries, the training libraries, a child that dies (issue 10) -------------------

def fake_gpu_torch(*, hip: str | None = None, arch_name: str = "gfx1100", on_op: str = "pass") -> str:
    """A torch whose GPU is available; `on_op` runs when the first tensor op touches the GPU."""
    return f"""
    import os, sys
    __version__ = "2.8.0+rocm6.4" if {hip!r} else "2.7.1+cu128"
    class version:
        cuda = None if {hip!r} else "12.8"
        hip = {hip!r}
    class _Props:
        gcnArchName = "{arch_name}:sramecc+:xnack-"
    class cuda:
        @staticmethod
        def is_available(): return True
        @staticmethod
        def device_count(): return 1
        @staticmethod
        def get_device_name(i): return "Fake GPU"
        @staticmethod
        def is_bf16_supported(): return True
        @staticmethod
        def get_arch_list(): return ["gfx90a", "gfx942", "gfx1100"] if {hip!r} else ["sm_75", "sm_80", "sm_86"]
        @staticmethod
        def get_device_capability(i): return (8, 9)
        @staticmethod
        def get_device_properties(i): return _Props()
    class _Tensor:
        def add_(self, x):
            {on_op}
            return self
        def item(self): return 2.0
    def ones(*a, **k): return _Tensor()
    """


def test_arch_list_and_the_device_arch_on_cuda(tmp_path):
    env = env_with(tmp_path, torch=fake_gpu_torch())
    facts = run_live_check(environ=env, timeout=20)
    assert facts.error is None and facts.gpu_available is True
    assert (facts.arch_list, facts.device_arch) == (["sm_75", "sm_80", "sm_86"], "sm_89")


def test_the_device_arch_on_rocm_is_the_gcn_name_without_features(tmp_path):
    env = env_with(tmp_path, torch=fake_gpu_torch(hip="6.4.43484", arch_name="gfx90a"))
    facts = run_live_check(environ=env, timeout=20)
    assert (facts.arch_list, facts.device_arch) == (["gfx90a", "gfx942", "gfx1100"], "gfx90a")


def test_an_abort_on_the_first_kernel_keeps_the_device_facts_and_stderr(tmp_path):
    """ROCm without kernels for the card: the HSA runtime prints why and aborts the process."""
    crash = ("sys.stderr.write('\\n'.join(['line %d' % n for n in range(8)] + "
             "['HSA_STATUS_ERROR_INVALID_ISA: The instruction set architecture is invalid.']) + '\\n'); "
             "sys.stderr.flush(); os.abort()")
    env = env_with(tmp_path, torch=fake_gpu_torch(hip="6.4.43484", arch_name="gfx1031", on_op=crash))
    facts = run_live_check(environ=env, timeout=20)
    assert facts.signal == "SIGABRT" and not facts.timed_out
    assert (facts.device_arch, facts.device_name, facts.gpu_available) == ("gfx1031", "Fake GPU", True)
    assert facts.error.startswith("the live check crashed (killed by signal 6): HSA_STATUS_ERROR_INVALID_ISA")
    tail = facts.stderr_tail.splitlines()
    assert len(tail) == 5 and tail[-1].startswith("HSA_STATUS_ERROR_INVALID_ISA") and tail[0] == "line 4"


def test_a_clean_run_keeps_no_stderr_and_no_signal(tmp_path):
    env = env_with(tmp_path, torch=FAKE_CUDA_TORCH)
    facts = run_live_check(environ=env, timeout=20)
    assert (facts.signal, facts.stderr_tail, facts.error) == (None, None, None)


TRAINING_FAKES = {
    "transformers": 'raise ImportError("/venv/lib/flash_attn_2_cuda.so: undefined symbol: _ZN3c105ErrorC2E\\nmore")\n',
    "peft": "",
    "accelerate": "",
    "trl": 'raise RuntimeError("trl needs transformers>=4.56.1")\n',
    "flash_attn": "",
}


def test_training_libraries_that_fail_to_import_are_named_with_their_first_line(tmp_path):
    env = env_with(tmp_path, torch=FAKE_CUDA_TORCH, bitsandbytes="__version__ = '0.46.0'\n", **TRAINING_FAKES)
    facts = run_live_check(environ=env, timeout=30)
    assert facts.error is None and facts.bnb_version == "0.46.0"
    assert facts.import_errors == {
        "transformers": "ImportError: /venv/lib/flash_attn_2_cuda.so: undefined symbol: _ZN3c105ErrorC2E",
        "trl": "RuntimeError: trl needs transformers>=4.56.1",
    }


def test_past_the_import_budget_the_training_libraries_are_not_imported(tmp_path, monkeypatch):
    from gpudoctor.probe import live

    monkeypatch.setattr(live, "IMPORT_BUDGET", 0.0)
    env = env_with(tmp_path, torch=FAKE_CUDA_TORCH, **TRAINING_FAKES)
    facts = run_live_check(environ=env, timeout=30)
    assert facts.import_errors == {} and facts.torch_version == "2.7.1+cu128"


def test_a_timeout_keeps_the_stages_that_finished(tmp_path):
    env = env_with(tmp_path, torch=FAKE_CUDA_TORCH, bitsandbytes="import sys, time\nsys.stderr.write('loading\\n')\nsys.stderr.flush()\ntime.sleep(60)\n")
    facts = run_live_check(environ=env, timeout=3)
    assert facts.timed_out and facts.signal is None
    assert facts.torch_version == "2.7.1+cu128" and facts.gpu_available is False
    assert facts.error == "the live check did not finish within 3 s" and facts.stderr_tail == "loading"


def test_a_marker_after_native_noise_on_the_same_line_is_found():
    assert parse_output(f"warning from a C library without a newline{MARKER}{{\"torch_version\": \"2\"}}\n") == {"torch_version": "2"}
