"""Measure how long probing this machine takes: probe_system() in-process, and whole processes.

    .venv/bin/python bench/probe_time.py [runs]

Prints the median and range of `probe_system()` wall time, then of whole-process runs of
`gpudoctor check --json` and `python -m torch.utils.collect_env` (the bar: check at most a quarter).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time


def timed(action, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def show(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{label:<42} median {median * 1000:8.1f} ms  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})")
    return median


def process(argv: list[str]):
    return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    from gpudoctor.probe import probe_system

    facts = probe_system()
    print(f"machine: {len(facts.gpus)} GPU(s), live check: {facts.python.live.skipped_reason or 'ran'}")
    show("probe_system() in-process", timed(probe_system, runs))
    show("probe_system(live=False) in-process", timed(lambda: probe_system(live=False), runs))
    gpudoctor = shutil.which("gpudoctor") or f"{sys.prefix}/bin/gpudoctor"
    check = show("gpudoctor check --json (whole process)", timed(process([gpudoctor, "check", "--json"]), runs))
    collect = show("python -m torch.utils.collect_env", timed(process([sys.executable, "-m", "torch.utils.collect_env"]), max(3, runs // 2)))
    print(f"check / collect_env = {check / collect:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
