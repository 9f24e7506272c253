"""Whole-process time of `gpudoctor check --json` against `python -m torch.utils.collect_env`.

    .venv/bin/python bench/check_startup.py [repetitions]

Runs each command as a fresh process (one untimed warm-up, then N timed runs, default 5) and prints
the medians and their ratio. The target is check / collect_env <= 0.25. Also prints check --fast and
the import cost of the CLI alone, to show where the time goes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

TARGET_RATIO = 0.25


def median_seconds(argv: list[str], repetitions: int) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of running `argv` to completion; its exit code does not matter."""
    subprocess.run(argv, capture_output=True, check=False)  # warm-up: page cache, .pyc files
    times = []
    for _ in range(repetitions):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    python = sys.executable
    commands = {
        "python -m torch.utils.collect_env": [python, "-m", "torch.utils.collect_env"],
        "gpudoctor check --json": [python, "-m", "gpudoctor", "check", "--json"],
        "gpudoctor check --json --fast": [python, "-m", "gpudoctor", "check", "--json", "--fast"],
        "python -c 'import gpudoctor.cli.main' (CLI import only)": [python, "-c", "import gpudoctor.cli.main as m; m.build_app()"],
    }
    results = {}
    for label, argv in commands.items():
        median, low, high = median_seconds(argv, repetitions)
        results[label] = median
        print(f"{label:<58} median {median * 1000:7.0f} ms  (min {low * 1000:.0f}, max {high * 1000:.0f}, n={repetitions})")
    ratio = results["gpudoctor check --json"] / results["python -m torch.utils.collect_env"]
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"ratio check --json / collect_env = {ratio:.3f}  ({verdict} the target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
