"""How long --resume spends verifying its checkpoint, on a fake checkpoint the size of a 7B adapter's.

Mistral-7B's shape with LoRA r=16 on every linear layer trains 41.9M weights; the Trainer's
optimizer.pt then holds two fp32 Adam moments of each (335 MB). The script writes such a
checkpoint (zeros; the verification reads every byte of the CRC'd records, whatever they hold)
and times what a --resume runs before training: the output folder's check, then the lines that
say which checkpoint it continues from.

    .venv/bin/python bench/resume_verify.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

HIDDEN, INTERMEDIATE, KV, LAYERS, RANK = 4096, 14336, 1024, 32, 16


def lora_shapes() -> list[tuple[int, int]]:
    """(in, out) of every adapted linear layer of Mistral-7B."""
    per_layer = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV), (HIDDEN, HIDDEN), (HIDDEN, INTERMEDIATE), (HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
    return per_layer * LAYERS


def write_run(out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from gpudoctor.plan.runconfig import write_run_config
    from gpudoctor.settings import RunConfig, Settings, TrainingOptions
    from gpudoctor.train import checkpoints

    (out / "data.json").write_text("[]", encoding="utf-8")
    write_run_config(RunConfig(model="m", data=str(out / "data.json"), output=str(out), settings=Settings(), training=TrainingOptions(max_steps=200)), out / "run.yaml")
    folder = out / "checkpoints" / "checkpoint-100"
    folder.mkdir(parents=True)
    weights, state = {}, {}
    for index, (fan_in, fan_out) in enumerate(lora_shapes()):
        for part, shape in (("A", (RANK, fan_in)), ("B", (fan_out, RANK))):
            key = len(state)
            weights[f"layer{index}.lora_{part}"] = torch.zeros(shape)
            state[key] = {"step": torch.tensor(100.0), "exp_avg": torch.zeros(shape), "exp_avg_sq": torch.zeros(shape)}
    save_file(weights, str(folder / "adapter_model.safetensors"))
    torch.save({"state": state, "param_groups": [{"lr": 1e-4, "params": list(state)}]}, folder / "optimizer.pt")
    torch.save({"last_epoch": 100}, folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text('{"global_step": 100, "log_history": []}', encoding="utf-8")
    checkpoints.seal(folder, 100)
    print(f"trainable weights {sum(a * RANK + RANK * b for a, b in lora_shapes()) / 1e6:.1f}M, optimizer.pt {(folder / 'optimizer.pt').stat().st_size / 1e6:.0f} MB")


def resume_checks(out: Path) -> float:
    """Seconds for what --resume runs on the folder before training (run.prepare's check, run.fit's lines)."""
    from gpudoctor.plan.runconfig import read_run_config
    from gpudoctor.train import checkpoints
    from gpudoctor.train.outputdir import check_output

    config = read_run_config(out / "run.yaml")
    started = time.perf_counter()
    found = check_output(out, config, resume=True)
    with redirect_stdout(io.StringIO()):
        checkpoints.announce(found, print)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        write_run(out)
        resume_checks(out)  # once to warm the page cache: every timed run reads from memory
        times = [resume_checks(out) for _ in range(runs)]
    print(f"--resume checks: median {statistics.median(times):.3f} s, min {min(times):.3f} s over {runs} runs (page cache warm)")


if __name__ == "__main__":
    main()
