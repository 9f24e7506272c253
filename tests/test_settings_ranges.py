"""Every bound of every declared run setting, as a `train` flag and as a run.yaml key: a value just past
it is exit 2, one line naming the setting (its flag, or run.yaml's file and key), and nothing written.

The violating values come from the declarations themselves (gpudoctor/settings.py), so a bound added
there is tested here without a second list; REQUIRED pins the bounds a run cannot train without.
"""

from __future__ import annotations

import math
import typing

import pytest
import yaml

from gpudoctor.settings import Declared, Settings, TrainingOptions, declaration, declared, range_text

# The bounds issue 12 asks for (name → a value that must be refused, a value just inside).
REQUIRED = {
    "lr": (0, 1e-12), "lora_r": (0, 1), "lora_alpha": (0, 1), "seed": (-1, 0), "epochs": (0, 0.01),
    "micro_batch": (0, 1), "grad_accum": (0, 1), "seq_len": (-5, 16), "save_steps": (0, 1), "val_size": (-0.5, 0),
    "lora_dropout": (1.0, 0.0), "warmup_ratio": (1.0, 0.0), "max_steps": (0, 1), "logging_steps": (0, 1), "gpus": (0, 1),
}  # fmt: skip


def _number_kind(item: Declared) -> type | None:
    kinds = [k for k in (typing.get_args(item.kind) or (item.kind,)) if k in (int, float)]
    return kinds[0] if kinds else None


def past_each_bound(item: Declared) -> list[float]:
    """One value beyond each of the declaration's bounds (and NaN for floats)."""
    rules, kind = item.rules, _number_kind(item)
    step = 1 if kind is int else 0.5
    values = []
    if rules.at_least is not None:
        values.append(rules.at_least - step)
    if rules.above is not None:
        values.append(rules.above)
    if rules.below is not None:
        values.append(rules.below)
    if rules.ceiling is not None:
        values.append(rules.ceiling)
    if rules.whole_from is not None:
        values.append(rules.whole_from + 0.5)
    if kind is float:
        values.append(math.nan)
    return [kind(v) if not (isinstance(v, float) and math.isnan(v)) else v for v in values]


NUMERIC = [item for kind in (Settings, TrainingOptions) for item in declared(kind) if _number_kind(item)]
CASES = [(item.name, value) for item in NUMERIC for value in past_each_bound(item)]


def test_every_numeric_setting_has_a_range():
    assert [item.name for item in NUMERIC if range_text(item.rules) == "a finite number"] == []


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_the_required_bounds_are_declared(name):
    from gpudoctor.settings import check_values

    bad, good = REQUIRED[name]
    kind = Settings if declaration(name).section == "settings" else TrainingOptions
    assert check_values({name: good}, kind) == {name: good}
    with pytest.raises(Exception, match=declaration(name).flag):
        check_values({name: bad}, kind)


def one_line(result) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gpudoctor: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def _shown(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else str(value)


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={_shown(v)}" for n, v in CASES])
def test_a_flag_past_its_bound_is_one_line_exit_2_nothing_written(cli, tmp_path, name, value):
    item = declaration(name)
    if not item.rules.flag:
        pytest.skip(f"{name} has no flag")
    out = tmp_path / "out"
    result = cli("train", "--model", tmp_path / "model", "--data", tmp_path / "data.json", "--output", out, "--skip-check", item.flag, _shown(value))
    assert result.exit_code == 2
    assert one_line(result).startswith(f"gpudoctor: error: {item.flag}: ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={_shown(v)}" for n, v in CASES])
def test_a_run_yaml_value_past_its_bound_is_one_line_exit_2_nothing_written(cli, tmp_path, name, value):
    section = declaration(name).section
    out = tmp_path / "out"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"model": str(tmp_path / "model"), "data": str(tmp_path / "data.json"), "output": str(out), section: {name: value}}))
    result = cli("train", run_yaml, "--skip-check")
    assert result.exit_code == 2
    assert one_line(result).startswith(f"gpudoctor: error: {run_yaml}: '{section}.{name}': ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_the_messages_say_the_range(cli, tmp_path):
    result = cli("train", "--model", "m", "--data", "d", "--output", tmp_path / "o", "--skip-check", "--seed", str(2**32))
    assert one_line(result) == "gpudoctor: error: --seed: must be below 4294967296 (got 4294967296)"
    result = cli("train", "--model", "m", "--data", "d", "--output", tmp_path / "o", "--skip-check", "--val-size", "2.5")
    assert one_line(result) == "gpudoctor: error: --val-size: a count must be a whole number and a fraction below 1 (got 2.5)"
    assert not (tmp_path / "o").exists()


def test_run_yaml_reads_1e_4_as_a_number(tmp_path):
    """YAML 1.1 reads 1e-4 as a string; people write it for a learning rate."""
    from gpudoctor.plan.runconfig import read_run_config

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: m\ntraining:\n  lr: 1e-4\n  warmup_ratio: 5E-2\n")
    config = read_run_config(run_yaml)
    assert (config.training.lr, config.training.warmup_ratio) == (1e-4, 0.05)
    run_yaml.write_text("model: m\ntraining:\n  lr: 1e-4x\n")
    with pytest.raises(Exception, match="'training.lr' has the wrong type"):
        read_run_config(run_yaml)
