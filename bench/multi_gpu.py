"""Several GPUs for real: `gpudoctor train --gpus N --strategy ddp|fsdp` on random weights of a profile's architecture,
a few steps, each GPU's peak (nvidia-smi, sampled while it runs) against the plan's per-GPU peak.

Nothing is downloaded: the model is built from the profile's architecture numbers (config only, random weights in
the compute dtype, gpudoctor.train.measure.write_random_model) with the demo's small tokenizer (its ids are valid
in any larger vocabulary), and trains on the demo's support data through the real CLI (check skipped, plan, accelerate
launch). A 70B model's random weights take 140 GB of disk in bf16; the script says so and stops when there is less.
On a machine without GPUs, --cpu runs the same path with the tiny demo model in 2 CPU processes over gloo (DDP; FSDP
does not shard a CPU run) and reports each process's peak resident memory instead. Usage:
    .venv/bin/python bench/multi_gpu.py --model llama-3.1-8b --gpus 2 --strategy ddp fsdp [--steps 3] [--seq-len 1024]
    .venv/bin/python bench/multi_gpu.py --model llama-2-70b --gpus 2 --strategy fsdp --vram-gib 24
    .venv/bin/python bench/multi_gpu.py --cpu [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GIB = 1024**3


def random_model(name: str, folder: Path) -> Path:
    """Random weights of profile `name`'s architecture (bf16) plus the demo's tokenizer, in `folder`."""
    from gpudoctor.plan.memory import total_params
    from gpudoctor.profiles import load_model
    from gpudoctor.settings import Settings
    from gpudoctor.train.demo import build_demo_model
    from gpudoctor.train.measure import write_random_model

    spec = load_model(name)
    need, free = total_params(spec) * 2 * 1.05, shutil.disk_usage(folder.parent).free
    if need > free:
        raise SystemExit(f"multi_gpu: {name}'s random bf16 weights need {need / GIB:.0f} GiB and {free / GIB:.0f} GiB are free at {folder.parent}; pass --work DIR")
    write_random_model(spec, Settings(compute_dtype="bf16"), folder)
    demo = build_demo_model(folder.parent / "demo-tokenizer", seed=0)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo / file, folder / file)
    return folder


class Peaks:
    """The most memory each device (nvidia-smi) or each worker process (resident set) held, sampled every 0.5 s."""

    def __init__(self, root_pid: int, on_gpu: bool) -> None:
        self.root_pid, self.on_gpu, self.peaks, self._stop = root_pid, on_gpu, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, int]:
        if self.on_gpu:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            return {f"GPU {line.split(',')[0].strip()}": int(line.split(",")[1]) * 1024**2 for line in out.splitlines() if "," in line}
        import psutil

        try:
            workers = [p for p in psutil.Process(self.root_pid).children(recursive=True) if "LOCAL_RANK" in p.environ()]
            return {f"rank {p.environ()['RANK']}": p.memory_info().rss for p in workers}
        except psutil.Error:
            return {}

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, used in self._sample().items():
                self.peaks[name] = max(self.peaks.get(name, 0), used)
            self._stop.wait(0.5)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return dict(sorted(self.peaks.items()))


def run(model: Path, data: Path, output: Path, args: argparse.Namespace, strategy: str) -> dict:
    """One `gpudoctor train` of `args.steps` steps; its report.json, the sampled peaks and the wall time."""
    command = [
        sys.executable, "-m", "gpudoctor", "train", "--model", str(model), "--data", str(data), "--output", str(output),
        "--gpus", str(args.gpus), "--seq-len", str(args.seq_len), "--micro-batch", str(args.micro_batch), "--grad-accum", "1",
        "--max-steps", str(args.steps), "--save-steps", "100000", "--warmup-ratio", "0", "--skip-check", "--yes",
    ]  # fmt: skip
    command += ["--gpu", "cpu"] if args.cpu else ["--strategy", strategy, *(["--vram-gib", str(args.vram_gib)] if args.vram_gib else [])]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    peaks = Peaks(process.pid, on_gpu=not args.cpu)
    out, err = process.communicate()
    sampled = peaks.stop()
    if process.returncode != 0:
        last = [line for line in err.splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"failed": f"exit {process.returncode}: {last[0]}"}
    report = json.loads((output / "report.json").read_text(encoding="utf-8"))
    return {"report": report, "peaks": sampled, "wall_s": time.perf_counter() - started}


def show(strategy: str, result: dict) -> None:
    if "failed" in result:
        print(f"{strategy}: failed, {result['failed']}")
        return
    report, planned = result["report"], result["report"].get("planned_peak_bytes") or 0
    print(f"{strategy}: world size {report['world_size']}, strategy {report['strategy']}, {report['steps']} steps in {result['wall_s']:.0f} s, "
          f"{report['tokens_per_s'] or 0:,.0f} real tokens/s, loss {report['losses'][0][1]:.3f} -> {report['losses'][-1][1]:.3f}")  # fmt: skip
    for device, peak in result["peaks"].items():
        against = f", planned {planned / GIB:.2f} GiB ({peak / planned - 1:+.0%})" if planned else ""
        print(f"  {device}: peak {peak / GIB:.2f} GiB{against}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-8b", help="a profile id (profiles/models)")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--strategy", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--vram-gib", type=float, default=None, help="plan for this much per GPU (e.g. 24 for the 2x24 GB FSDP-QLoRA case)")
    parser.add_argument("--cpu", action="store_true", help="the tiny demo model in 2 CPU processes (DDP), for a machine without GPUs")
    parser.add_argument("--work", type=Path, default=None, help="where the random model and the runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.cpu:
        args.gpus, args.strategy, args.seq_len, args.micro_batch = 2, ["ddp"], 256, 2
    from gpudoctor.train.demo import DATA, build_demo_model

    work = args.work or Path(tempfile.mkdtemp(prefix="gpudoctor-multi-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_demo_model(work / "tiny", seed=0) if args.cpu else random_model(args.model, work / args.model)
    print(f"model: {'the tiny demo model' if args.cpu else args.model + ' (random weights)'} · {args.gpus} {'CPU processes' if args.cpu else 'GPUs'} · "
          f"seq_len {args.seq_len} · micro batch {args.micro_batch} · {args.steps} steps")  # fmt: skip
    failed = False
    for strategy in args.strategy:
        result = run(model, DATA, work / f"run-{strategy}", args, strategy)
        show(strategy, result)
        failed = failed or "failed" in result
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
