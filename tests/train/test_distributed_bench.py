"""bench/multi_gpu.py's CPU path: the tiny demo model in 2 CPU processes through the real CLI, each process's peak
sampled while it runs and set against the plan's. The GPU path (random weights of a profile, nvidia-smi per GPU)
runs the same code with another sampler; it needs a machine with several GPUs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "multi_gpu.py"


def test_the_cpu_path_trains_in_two_processes_and_reports_each_peak(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("multi_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--cpu", "--steps", "2", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ddp: world size 2, strategy ddp, 2 steps" in out, out
    peaks = re.findall(r"rank (\d): peak (\d+\.\d+) GiB, planned (\d+\.\d+) GiB", out)
    assert sorted(rank for rank, _, _ in peaks) == ["0", "1"], out  # both workers sampled
    assert all(float(peak) > 0.05 for _, peak, _ in peaks)  # a real process holds torch and the model: more than 50 MiB
