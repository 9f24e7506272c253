"""The live check: a child Python that really imports torch and bitsandbytes and touches the GPU.

It runs in a subprocess with a timeout so that a hanging driver, a crashing native library or a
slow import cannot take gpudoctor down with it. The child prints one JSON line after a marker;
everything it could not do is a field of LiveFacts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping

from gpudoctor.probe.facts import LiveFacts

MARKER = "GPUDOCTOR_LIVE "

# Runs in the child. Each stage records its own failure and the next stage still reports; the
# result so far is printed after each stage, so a native crash (a segfault in a CUDA library)
# still leaves what was learnt before it.
SCRIPT = r'''
import json, sys, warnings
out = {}
def emit():
    sys.stdout.write("GPUDOCTOR_LIVE " + json.dumps(out) + "\n")
    sys.stdout.flush()
def reason(err):
    text = str(err).strip().splitlines()
    return type(err).__name__ + (": " + text[0] if text else "")
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
        if out["gpu_available"]:
            out["device_name"] = torch.cuda.get_device_name(0)
            out["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
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
'''


def parse_output(stdout: str) -> dict[str, object] | None:
    """The child's result: the JSON after the last marker line, None when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                value = json.loads(line[len(MARKER):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def facts_from_result(result: dict[str, object], duration_s: float) -> LiveFacts:
    known = set(LiveFacts.__dataclass_fields__) - {"ran", "skipped_reason", "timed_out", "duration_s"}
    return LiveFacts(ran=True, duration_s=duration_s, **{k: v for k, v in result.items() if k in known})


def run_live_check(*, environ: Mapping[str, str] | None = None, timeout: float = 20.0,
                   python: str | None = None) -> LiveFacts:
    """Run SCRIPT in `python` (this interpreter by default); never raises."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("PYTHONWARNINGS", "ignore")  # keep library chatter out of stderr
    argv = [python or sys.executable, "-c", SCRIPT]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, errors="replace", check=False)
    except subprocess.TimeoutExpired:
        return LiveFacts(ran=True, timed_out=True, duration_s=round(time.monotonic() - started, 2),
                         error=f"the live check did not finish within {timeout:g} s")
    except OSError as err:
        return LiveFacts(ran=False, error=f"could not start {argv[0]}: {err}")
    duration = round(time.monotonic() - started, 2)
    facts = facts_from_result(parse_output(done.stdout) or {}, duration)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        facts.error = f"the live check crashed ({_status(done.returncode)}): {why}"
    elif parse_output(done.stdout) is None:
        facts.error = "the live check printed no result"
    return facts


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
