"""The live check: a child Python that really imports torch and bitsandbytes and touches the GPU.

It runs in a subprocess with a timeout so that a hanging driver, a crashing native library or a
slow import cannot take gpudoctor down with it. The child prints one JSON line after a marker;
everything it could not do is a field of LiveFacts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

from gpudoctor.probe.facts import LiveFacts

MARKER = "GPUDOCTOR_LIVE "
# The share of the timeout after which the child starts no more training-library imports.
IMPORT_BUDGET = 0.6

# Runs in the child. Each stage records its own failure and the next stage still reports; the
# result so far is printed after each stage (and before each GPU operation that can abort the
# process: a kernel missing for this GPU ends a ROCm child with SIGABRT), so a native crash still
# leaves what was learnt before it. The training libraries are imported last, only those installed,
# and only while the child is within its import budget (argv[1] seconds, IMPORT_BUDGET of the timeout).
SCRIPT = r'''
import importlib.util, json, sys, time, warnings
STARTED = time.monotonic()
IMPORT_BUDGET_S = float(sys.argv[1]) if len(sys.argv) > 1 else float("inf")
out = {}
def emit():
    sys.stdout.write("\nGPUDOCTOR_LIVE " + json.dumps(out) + "\n")
    sys.stdout.flush()
def reason(err):
    text = str(err).strip().splitlines()
    return type(err).__name__ + (": " + text[0] if text else "")
def arches():
    try:
        found = torch.cuda.get_arch_list()
        if not found:  # empty when no GPU is usable; the build's own list says what it carries
            flags = getattr(torch._C, "_cuda_getArchFlags", lambda: None)()
            found = flags.split() if flags else []
        out["arch_list"] = list(found)
    except BaseException:
        pass
def device_arch():
    try:
        if out.get("hip_version"):
            out["device_arch"] = torch.cuda.get_device_properties(0).gcnArchName.split(":")[0]
        else:
            out["device_arch"] = "sm_%d%d" % tuple(torch.cuda.get_device_capability(0))
    except BaseException:
        pass
try:
    import torch
except BaseException as err:
    out["torch_error"] = reason(err)
    emit()
    sys.exit(0)
out["torch_version"] = torch.__version__
out["cuda_version"] = torch.version.cuda
out["hip_version"] = getattr(torch.version, "hip", None)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        out["gpu_available"] = bool(torch.cuda.is_available())
        out["device_count"] = torch.cuda.device_count()
        if out["cuda_version"] or out["hip_version"]:
            arches()
        if out["gpu_available"]:
            out["device_name"] = torch.cuda.get_device_name(0)
            device_arch()
            out["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
            emit()
            torch.ones(1, device="cuda").add_(1).item()
    except BaseException as err:
        out["gpu_available"] = False
        out["gpu_error"] = reason(err)
    if not out.get("gpu_available") and not out.get("gpu_error") and caught:
        out["gpu_error"] = str(caught[-1].message).strip().splitlines()[0]
emit()
try:
    import bitsandbytes as bnb
    out["bnb_version"] = getattr(bnb, "__version__", None)
except BaseException as err:
    out["bnb_error"] = reason(err)
emit()
if out.get("gpu_available") and "bnb_version" in out:
    try:
        dtype = torch.bfloat16 if out.get("bf16_supported") else torch.float16
        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=dtype, quant_type="nf4").to("cuda")
        y = layer(torch.randn(2, 64, device="cuda", dtype=dtype))
        torch.cuda.synchronize()
        out["bnb_4bit_ok"] = bool(torch.isfinite(y).all().item())
        if not out["bnb_4bit_ok"]:
            out["bnb_4bit_error"] = "the NF4 matmul returned non-finite values"
    except BaseException as err:
        out["bnb_4bit_ok"] = False
        out["bnb_4bit_error"] = reason(err)
emit()
for name in ("transformers", "peft", "accelerate", "trl", "flash_attn"):
    if time.monotonic() - STARTED > IMPORT_BUDGET_S:
        break  # a slow box: what the GPU stages found matters more than running into the timeout
    try:
        if importlib.util.find_spec(name) is None:
            continue
        __import__(name)
    except BaseException as err:
        out.setdefault("import_errors", {})[name] = reason(err)
        emit()
emit()
'''


def parse_output(stdout: str) -> dict[str, object] | None:
    """The child's result: the JSON after the last marker line, None when there is none.

    The marker may follow text a native library printed without a newline on the same line.
    """
    for line in reversed(stdout.splitlines()):
        at = line.find(MARKER)
        if at >= 0:
            try:
                value = json.loads(line[at + len(MARKER):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def facts_from_result(result: dict[str, object], duration_s: float) -> LiveFacts:
    known = set(LiveFacts.__dataclass_fields__) - {"ran", "skipped_reason", "timed_out", "duration_s"}
    return LiveFacts(ran=True, duration_s=duration_s, **{k: v for k, v in result.items() if k in known})


def run_live_check(*, environ: Mapping[str, str] | None = None, timeout: float = 20.0,
                   python: str | None = None) -> LiveFacts:
    """Run SCRIPT in `python` (this interpreter by default); never raises.

    A child that runs past `timeout` is killed, and what it printed before still counts: the stages
    it finished are facts, `timed_out` says the rest is unknown.
    """
    env = dict(os.environ if environ is None else environ)
    env.setdefault("PYTHONWARNINGS", "ignore")  # keep library chatter out of stderr
    argv = [python or sys.executable, "-c", SCRIPT, f"{timeout * IMPORT_BUDGET:.1f}"]
    started = time.monotonic()
    try:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 env=env, text=True, errors="replace")
    except OSError as err:
        return LiveFacts(ran=False, error=f"could not start {argv[0]}: {err}")
    try:
        stdout, stderr = child.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = _remaining_output(child)
        timed_out = True
    except BaseException:  # Ctrl-C while waiting: the child goes too
        child.kill()
        child.wait()
        raise
    duration = round(time.monotonic() - started, 2)
    result = parse_output(stdout)
    facts = facts_from_result(result or {}, duration)
    if timed_out:
        facts.timed_out = True
        facts.error = f"the live check did not finish within {timeout:g} s"
    elif child.returncode != 0:
        lines = _lines(stderr)
        why = lines[-1] if lines else f"exit status {child.returncode}"
        facts.error = f"the live check crashed ({_status(child.returncode)}): {why}"
        facts.signal = _signal_name(child.returncode)
    elif result is None:
        facts.error = "the live check printed no result"
    if facts.error:
        facts.stderr_tail = "\n".join(_lines(stderr)[-STDERR_TAIL_LINES:]) or None
    return facts


STDERR_TAIL_LINES = 5
KILLED_CHILD_GRACE_S = 2.0


def _remaining_output(child: subprocess.Popen[str]) -> tuple[str, str]:
    """Everything a killed child printed; a grandchild still holding its pipes open is not waited for."""
    try:
        return child.communicate(timeout=KILLED_CHILD_GRACE_S)
    except subprocess.TimeoutExpired as err:
        def text(data: bytes | str | None) -> str:
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")

        return text(err.stdout), text(err.stderr)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _signal_name(code: int) -> str | None:
    """The signal that killed the child ("SIGABRT"), None when it exited on its own."""
    if code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
