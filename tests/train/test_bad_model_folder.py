"""A model folder that cannot train is one line naming it and what to do, exit 2, before anything is written:
through run.yaml (which skips the planner, so train's own checks in prepare are what stop it) and
through --model. Also seq_len beyond the model's max_position_embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gpudoctor.train.model import safetensors_problem


def _no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def _config_not_json(folder: Path) -> None:
    (folder / "config.json").write_text("{oops")


def _config_a_list(folder: Path) -> None:
    (folder / "config.json").write_text("[1, 2]")


def _no_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _truncated(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _header_cut(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])


def _empty_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"")


def _garbage_header(folder: Path) -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[8:16] = b"\x00\xff{}[]\x01\x02"
    (folder / "model.safetensors").write_bytes(bytes(data))


def _missing_shard(folder: Path) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))


def _no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


def _pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


BROKEN = {
    "no config.json": (_no_config, "no config.json"),
    "config.json not JSON": (_config_not_json, "config.json: not valid JSON"),
    "config.json a list": (_config_a_list, "config.json: expected a JSON object"),
    "no weights": (_no_weights, "no .safetensors weights"),
    "pickle weights only": (_pickle_only, "safetensors only"),
    "truncated weights": (_truncated, "model.safetensors: cannot load the weights (truncated ("),
    "header cut": (_header_cut, "model.safetensors: cannot load the weights (truncated ("),
    "empty weights": (_empty_weights, "model.safetensors: cannot load the weights (not a safetensors file (0 bytes)"),
    "garbage header": (_garbage_header, "model.safetensors: cannot load the weights (not a safetensors file"),
    "missing shard": (_missing_shard, "model-00002-of-00002.safetensors"),
    "no tokenizer": (_no_tokenizer, "no tokenizer files"),
}


@pytest.fixture
def broken_copy(tiny_model, tmp_path):
    def make(breaks) -> Path:
        folder = tmp_path / "model"
        shutil.copytree(tiny_model, folder)
        breaks(folder)
        return folder

    return make


def run_yaml(tmp_path: Path, model: Path | str, data: Path, **settings) -> Path:
    path = tmp_path / "run.yaml"
    document = {"model": str(model), "data": str(data), "output": str(tmp_path / "out"), "settings": {"compute_dtype": "fp32", "seq_len": 256, **settings},
                "training": {"max_steps": 1}}  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("gpudoctor: error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_folder_is_one_line_exit_2_nothing_written(cli, broken_copy, support_data, tmp_path, case):
    breaks, needle = BROKEN[case]
    folder = broken_copy(breaks)
    result = cli("train", run_yaml(tmp_path, folder, support_data), "--skip-check")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert needle in line and str(folder) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["truncated weights", "no tokenizer", "config.json not JSON"])
def test_the_same_through_model_flag(cli, broken_copy, support_data, tmp_path, case):
    breaks, needle = BROKEN[case]
    folder = broken_copy(breaks)
    result = cli("train", "--model", folder, "--data", support_data, "--output", tmp_path / "out", "--skip-check", "--gpu", "cpu", "--max-steps", "1")
    assert result.exit_code == 2 and needle in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_file_or_a_missing_folder_as_model(cli, support_data, tmp_path):
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    result = cli("train", run_yaml(tmp_path, a_file, support_data), "--skip-check")
    assert result.exit_code == 2 and "is a file, not a model folder" in one_error_line(result)
    result = cli("train", run_yaml(tmp_path, tmp_path / "gone", support_data), "--skip-check")
    assert result.exit_code == 2 and f"no such folder {tmp_path / 'gone'}" in one_error_line(result)
    assert "hf download" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_seq_len_beyond_the_models_positions(cli, tiny_model, support_data, tmp_path):
    limit = json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"]
    result = cli("train", run_yaml(tmp_path, tiny_model, support_data, seq_len=limit + 1), "--skip-check")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"seq_len {limit + 1}" in line and f"longer than the {limit} positions" in line and "max_position_embeddings" in line
    assert not (tmp_path / "out").exists()


def test_a_whole_safetensors_file_passes(tiny_model):
    assert safetensors_problem(tiny_model / "model.safetensors") is None
