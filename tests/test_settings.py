"""Each run setting is declared once (gpudoctor/settings.py) and every reader obeys that declaration:
the plan and train flags, run.yaml, the planner and the memory model."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from gpudoctor.cli.main import build_app
from gpudoctor.errors import BadInput
from gpudoctor.plan import memory
from gpudoctor.plan.runconfig import read_run_config
from gpudoctor.plan.types import Hardware
from gpudoctor.profiles import load_model
from gpudoctor.settings import OPTIMIZERS, Settings, TrainingOptions, check_values, declared, settings_from
from gpudoctor.types import GIB


def command_flags(name: str) -> set[str]:
    command = typer.main.get_command(build_app()).commands[name]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def declared_flags() -> set[str]:
    return {item.flag for kind in (Settings, TrainingOptions) for item in declared(kind) if item.rules.flag}


def test_every_setting_is_declared_with_help():
    for kind in (Settings, TrainingOptions):
        assert [item.name for item in declared(kind)] == [f.name for f in dataclasses.fields(kind)]
        assert all(item.rules.help for item in declared(kind))


@pytest.mark.parametrize("command", ["plan", "train"])
def test_plan_and_train_take_every_declared_flag(command):
    assert declared_flags() <= command_flags(command)
    assert {"--gpu", "--vram-gib"} <= command_flags(command)


def test_the_memory_model_counts_every_optimizer_the_settings_accept():
    model, hardware = load_model("mistral-7b"), Hardware("cuda", "x", 24 * GIB)
    for optimizer in OPTIMIZERS:
        assert memory.estimate(model, Settings(optimizer=optimizer), hardware).peak_reserved_bytes > 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lora_r": 0}, "--lora-r: must be at least 1 (got 0)"),
        ({"lora_alpha": 0}, "--lora-alpha: must be at least 1 (got 0)"),
        ({"lora_dropout": 1.0}, "--lora-dropout: must be at least 0 and below 1 (got 1)"),
        ({"seq_len": -5}, "--seq-len: must be at least 16 (got -5)"),
        ({"micro_batch": 0}, "--micro-batch: must be at least 1 (got 0)"),
        ({"optimizer": "sgd"}, "--optimizer: unknown value 'sgd'; use one of adamw_torch,"),
        ({"seq_len": "long"}, "--seq-len has the wrong type ('long'); expected int"),
        ({"warp_speed": 9}, "unknown setting 'warp_speed'"),
    ],
)
def test_check_values_names_the_flag(values, message):
    with pytest.raises(BadInput) as err:
        check_values(values, Settings)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": -1}, "--lr: must be more than 0 and below 1 (got -1)"),
        ({"lr": 0}, "--lr: must be more than 0 and below 1 (got 0)"),
        ({"epochs": -2}, "--epochs: must be more than 0 (got -2)"),
        ({"seed": -1}, "--seed: must be at least 0 (got -1)"),
        ({"save_steps": 0}, "--save-steps: must be at least 1 (got 0)"),
        ({"lr": float("nan")}, "--lr: must be more than 0 and below 1 (got nan)"),
    ],
)
def test_training_options_are_range_checked(values, message):
    with pytest.raises(BadInput) as err:
        check_values(values, TrainingOptions)
    assert str(err.value) == message


def test_aliases_become_the_canonical_name():
    assert check_values({"optimizer": "adamw", "attn": "flash_attention_2"}, Settings) == {"optimizer": "adamw_torch", "attn": "flash"}


def test_derived_defaults():
    assert settings_from({"lora_r": 8}).lora_alpha == 16
    assert settings_from({"lora_r": 8, "lora_alpha": 8}).lora_alpha == 8
    assert settings_from({"method": "lora"}).quant is None
    assert settings_from({"gpus": 2}).strategy == "ddp"
    assert settings_from({"gpus": 1, "strategy": "fsdp"}).strategy == "single"


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("settings", "seq_len: -5", "'settings.seq_len': must be at least 16 (got -5)"),
        ("settings", "lora_r: -4", "'settings.lora_r': must be at least 1 (got -4)"),
        ("settings", "micro_batch: 0", "'settings.micro_batch': must be at least 1 (got 0)"),
        ("training", "lr: -1", "'training.lr': must be more than 0 and below 1 (got -1)"),
        ("training", "epochs: -2", "'training.epochs': must be more than 0 (got -2)"),
        ("settings", "optimizer: sgd", "'settings.optimizer': unknown value 'sgd'"),
    ],
)
def test_run_yaml_values_are_range_checked_naming_file_and_key(tmp_path, section, line, message):
    path = write(tmp_path, f"model: mistral-7b\n{section}:\n  {line}\n")
    with pytest.raises(BadInput) as err:
        read_run_config(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_a_hand_written_run_yaml_with_an_alias_gets_a_planned_peak(tmp_path):
    """The disagreement the settings module removes: an alias the trainer mapped but the memory model refused."""
    config = read_run_config(write(tmp_path, "model: mistral-7b\nsettings:\n  optimizer: adamw\n  lora_r: 8\n"))
    assert config.settings.optimizer == "adamw_torch" and config.settings.lora_alpha == 16
    estimate = memory.estimate(load_model(config.model), config.settings, Hardware("cuda", "x", 24 * GIB))
    assert estimate.peak_reserved_bytes > 0


def test_plan_flag_errors_are_one_line_exit_2(cli):
    result = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--lora-r", "0")
    assert result.exit_code == 2
    assert result.stderr == "gpudoctor: error: --lora-r: must be at least 1 (got 0)\n"


def test_train_refuses_an_impossible_lr_before_writing_anything(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--model", "mistral-7b", "--data", tmp_path / "d.json", "--output", out, "--lr", "-1")
    assert result.exit_code == 2
    assert result.stderr == "gpudoctor: error: --lr: must be more than 0 and below 1 (got -1)\n"
    assert not out.exists()
