"""Fixtures for the launcher tests: a tiny random-weight Mistral (built once) and small datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.settings import RunConfig, Settings, TrainingOptions
from gpudoctor.train.demo import DATA

# Smaller than the demo model so every training test takes seconds.
TEST_SHAPE = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from gpudoctor.train.demo import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, shape=TEST_SHAPE)


@pytest.fixture
def support_data(tmp_path) -> Path:
    """The first 48 records of the shipped support data, as a file of their own."""
    path = tmp_path / "support.json"
    path.write_text(json.dumps(json.loads(DATA.read_text(encoding="utf-8"))[:48]), encoding="utf-8")
    return path


def _tiny_settings(**changes) -> Settings:
    base = dict(
        method="qlora", quant="nf4", double_quant=True, compute_dtype="fp32", lora_r=8, lora_alpha=16, lora_dropout=0.0,
        lora_targets=["all-linear"], seq_len=256, micro_batch=2, grad_accum=1, grad_ckpt=False,
        optimizer="adamw_torch", attn="sdpa", packing=True,
    )
    base.update(changes)
    return Settings(**base)


def _tiny_config(model: Path, data: Path, output: Path, *, settings: Settings | None = None, **training) -> RunConfig:
    options = dict(epochs=1, lr=5e-3, val_size=0, save_steps=2, seed=7, max_steps=6, warmup_ratio=0.0)
    options.update(training)
    return RunConfig(model=str(model), data=str(data), output=str(output), settings=settings or _tiny_settings(), training=TrainingOptions(**options))


@pytest.fixture(scope="session")
def tiny_settings():
    """tiny_settings(**changes) -> Settings for the tiny model (fp32, NF4, packed, r=8)."""
    return _tiny_settings


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(model, data, output, settings=None, **training) -> RunConfig: 6 steps, checkpoints every 2."""
    return _tiny_config


@pytest.fixture(scope="session")
def support_records() -> list[dict[str, str]]:
    return json.loads(DATA.read_text(encoding="utf-8"))[:48]


@pytest.fixture(scope="session")
def compared_run(tiny_model, tiny_config, support_records, tmp_path_factory):
    """A tiny run (8 records held out, 10 steps at a high learning rate, so the adapter changes the answers),
    then `compare` on the first 4 of its validation records: (run folder, compare's result, report.html as train left it)."""
    import io

    from rich.console import Console

    from gpudoctor.train.compare import CompareRequest, compare
    from gpudoctor.train.run import train

    folder = tmp_path_factory.mktemp("compared")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    config = tiny_config(tiny_model, data, folder / "run", val_size=8, max_steps=10, lr=1e-2)
    train(config, console=Console(file=io.StringIO(), width=100))
    output = Path(config.output)
    trained_page = (output / "report.html").read_text(encoding="utf-8")
    result = compare(CompareRequest(adapter=output, max_new_tokens=24, max_prompts=4), say=lambda line: None)
    return output, result, trained_page
