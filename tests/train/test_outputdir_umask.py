"""Every file and folder a run writes keeps the user's umask, the safetensors ones included.

safetensors 0.8 writes each file through a 0600 temp file that it renames into place
(safetensors#782), so peft's adapter_model.safetensors and every checkpoint's copy came out 0600
while the rest of the run folder followed the umask; atomic.safetensors_follow_umask fixes it for
every writer in the process.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from gpudoctor.atomic import safetensors_follow_umask
from gpudoctor.train.run import train


def wrong_modes(folder: Path, umask: int) -> list[str]:
    """'<mode> <path>' for each file not 0666 & ~umask and each folder not 0777 & ~umask."""
    wrong = []
    for path in sorted(folder.rglob("*")):
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != want:
            wrong.append(f"{mode:o} {path.relative_to(folder)}")
    return wrong


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_every_file_of_a_run_follows_the_umask(tiny_model, tiny_config, support_records, tmp_path, umask):
    from rich.console import Console

    data = tmp_path / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    output = tmp_path / "run"
    old = os.umask(umask)
    try:
        train(tiny_config(tiny_model, data, output, max_steps=2, save_steps=1), console=Console(file=io.StringIO()))
    finally:
        os.umask(old)
    written = {p.name for p in output.rglob("*")}
    assert {"adapter_model.safetensors", "tokenizer.json", "report.json", "train.log", "optimizer.pt", "checkpoint-2"} <= written
    assert any(name.startswith("events.out.tfevents") for name in written)
    assert wrong_modes(output, umask) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_safetensors_files_get_the_mode_open_gives(tmp_path, umask, mode):
    import torch
    from safetensors.torch import save_file

    safetensors_follow_umask()
    safetensors_follow_umask()  # once is enough: a second call does not wrap the wrapper
    (tmp_path / "kept.safetensors").write_bytes(b"")
    (tmp_path / "kept.safetensors").chmod(0o600)
    old = os.umask(umask)
    try:
        save_file({"w": torch.zeros(2)}, str(tmp_path / "new.safetensors"))
        save_file({"w": torch.zeros(2)}, str(tmp_path / "kept.safetensors"))  # a file it replaces keeps its mode, as with open()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.safetensors").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "kept.safetensors").stat().st_mode) == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_the_demo_model_keeps_the_umask(tmp_path, umask):
    """A fresh process (the umask hook is process-wide, so an earlier test could have installed it)."""
    import subprocess
    import sys

    folder = tmp_path / "demo-model"
    code = (
        f"import os; os.umask({umask}); from gpudoctor.train.demo import build_demo_model; "
        f"build_demo_model({str(folder)!r}, seed=0, shape=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, "
        "num_attention_heads=2, num_key_value_heads=1))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    assert (folder / "model.safetensors").is_file()
    assert wrong_modes(folder, umask) == []
