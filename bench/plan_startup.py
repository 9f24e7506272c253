"""Whole-process time of `gpudoctor plan` against `python -m torch.utils.collect_env` (target ratio <= 0.25).

Run: .venv/bin/python bench/plan_startup.py [runs]
Prints the median wall time of each command over `runs` runs (default 5) and their ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

PLAN = [sys.executable, "-m", "gpudoctor", "plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--json"]
COLLECT_ENV = [sys.executable, "-m", "torch.utils.collect_env"]


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    median_seconds(PLAN, 1)  # warm the file cache for both
    median_seconds(COLLECT_ENV, 1)
    plan = median_seconds(PLAN, runs)
    collect = median_seconds(COLLECT_ENV, runs)
    print(f"gpudoctor plan --model mistral-7b --gpu rtx-4090 --json: median {plan:.3f} s over {runs} runs")
    print(f"python -m torch.utils.collect_env:                      median {collect:.3f} s over {runs} runs")
    print(f"ratio: {plan / collect:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
