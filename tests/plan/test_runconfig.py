"""run.yaml round-trips, and every malformed one is a one-line BadInput naming file and key."""

from __future__ import annotations

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.plan.runconfig import read_run_config, write_run_config
from gpudoctor.settings import RunConfig, Settings, TrainingOptions


def test_round_trip(tmp_path):
    config = RunConfig(model="mistral-7b", data="d.json", output="out", settings=Settings(seq_len=1024, lora_targets=["q_proj", "v_proj"]), training=TrainingOptions(epochs=2, lr=1e-4))
    path = write_run_config(config, tmp_path / "run.yaml")
    assert read_run_config(path) == config


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: [\n", "not valid YAML at line"),
        ("- a\n", "expected a mapping"),
        ("model: m\nsettings: {seq_lenn: 5}\n", "unknown key 'settings.seq_lenn'"),
        ("model: m\nsettings: {seq_len: long}\n", "'settings.seq_len' has the wrong type"),
        ("model: m\nsettings: {grad_ckpt: 1}\n", "'settings.grad_ckpt' has the wrong type"),
        ("settings: {}\n", "'model' must name"),
        ("model: m\nextra: 1\n", "unknown key 'extra'"),
    ],
)
def test_bad_run_yaml(tmp_path, text, needle):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as err:
        read_run_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)
