"""Which number formats this CPU computes natively, read from /proc/cpuinfo (no torch import).

Where the CPU has bf16 instructions (AVX512_BF16 on Zen 4 / Cooper Lake and newer, AMX on
Sapphire Rapids and newer), oneDNN runs bf16 matmuls faster than fp32 — bench/cpu_dtype.py
measured 937 vs 203 GFLOP/s on this project's 2-core AMD EPYC machines. Elsewhere bf16 is emulated
and runs an order of magnitude slower than fp32, so training on such a CPU computes in fp32.
"""

from __future__ import annotations

from pathlib import Path

# Flags that mean native bf16 matmuls, best first.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(root: Path = Path("/")) -> set[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = (root / "proc" / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16_flag(root: Path = Path("/")) -> str | None:
    """The flag that gives this CPU native bf16 matmuls, or None (then compute in fp32)."""
    flags = cpu_flags(root)
    return next((flag for flag in BF16_FLAGS if flag in flags), None)
