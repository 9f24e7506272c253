"""Verifying checkpoints for --resume: without torch (the output folder is checked before the training
stack loads), and still catching a pickle that would not load."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpudoctor.plan.runconfig import write_run_config
from gpudoctor.settings import RunConfig, Settings, TrainingOptions
from gpudoctor.train import checkpoints


def save_checkpoint(folder: Path, step: int) -> Path:
    """What the Trainer writes into checkpoint-N (small tensors, the same kinds of files), sealed."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"lora_A": torch.ones(4, 2), "lora_B": torch.zeros(2, 4)}, str(folder / "adapter_model.safetensors"))
    moments = {0: {"step": torch.tensor(float(step)), "exp_avg": torch.ones(4, 2), "exp_avg_sq": torch.ones(4, 2)}}
    torch.save({"state": moments, "param_groups": [{"lr": 1e-3, "params": [0]}]}, folder / "optimizer.pt")
    torch.save({"last_epoch": step, "_last_lr": [1e-3]}, folder / "scheduler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}), encoding="utf-8")
    checkpoints.seal(folder, step)
    return folder


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A run folder as a stopped run leaves it: run.yaml, checkpoint-1 and checkpoint-2."""
    out = tmp_path / "run"
    out.mkdir()
    data = tmp_path / "data.json"
    data.write_text("[]", encoding="utf-8")
    config = RunConfig(model="tiny", data=str(data), output=str(out), settings=Settings(), training=TrainingOptions(max_steps=4))
    write_run_config(config, out / "run.yaml")
    for step in (1, 2):
        save_checkpoint(out / "checkpoints" / f"checkpoint-{step}", step)
    return out


CHECK = """
import sys
from pathlib import Path
from gpudoctor.plan.runconfig import read_run_config
from gpudoctor.train.outputdir import check_output
out = Path(sys.argv[1])
found = check_output(out, read_run_config(out / "run.yaml"), resume=True)
print(found.checkpoint.name)
print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "transformers", "peft")))
"""


def test_the_output_check_imports_no_torch(run_folder):
    spoil_pickle(run_folder / "checkpoints" / "checkpoint-2" / "optimizer.pt", keep=0.5)  # the newest is passed over
    result = subprocess.run([sys.executable, "-c", CHECK, str(run_folder)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["checkpoint-1", "[]"]


def spoil_pickle(path: Path, *, keep: float = 1.0, drop: str | None = None) -> None:
    """Rewrite the torch archive with its data.pkl cut to `keep` of its bytes, or without the record ending in
    `drop`: every record's CRC still holds, so only reading the pickle tells."""
    with zipfile.ZipFile(path) as archive:
        records = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for info, data in records:
            if drop and info.filename.endswith(drop):
                continue
            archive.writestr(info.filename, data[: int(len(data) * keep)] if info.filename.endswith("data.pkl") else data)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (dict(keep=0.5), "optimizer.pt does not unpickle"),
        (dict(drop="data/0"), "optimizer.pt does not load (tensor record data/0 is missing)"),
    ],
)
def test_a_pickle_that_would_not_load_is_passed_over(run_folder, spoil, reason):
    newest = run_folder / "checkpoints" / "checkpoint-2"
    spoil_pickle(newest / "optimizer.pt", **spoil)
    checkpoints.seal(newest, 2)  # sealed at the spoiled sizes: the sizes alone do not tell
    choice = checkpoints.resumable(run_folder)
    assert choice.checkpoint == run_folder / "checkpoints" / "checkpoint-1"
    assert len(choice.skipped) == 1 and choice.skipped[0].startswith(f"skipped checkpoint-2: {reason}")


def test_whole_checkpoints_pass_numpy_rng_state_included(run_folder):
    for step in (1, 2):
        assert checkpoints.problem(run_folder / "checkpoints" / f"checkpoint-{step}") is None
    assert checkpoints.resumable(run_folder).checkpoint == run_folder / "checkpoints" / "checkpoint-2"
