"""`gpudoctor chat` on a missing, damaged or mismatched adapter: one line each naming the folder or file
and a fix that uses a flag chat has (--base), no traceback, nothing written."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from gpudoctor.train.demo import DATA, build_demo_model


@pytest.fixture(scope="module")
def trained(tiny_model, tiny_config, tmp_path_factory) -> Path:
    """A 2-step adapter on the tiny model (the run folder without checkpoints, tb/ and the token cache)."""
    from gpudoctor.train.run import train

    work = tmp_path_factory.mktemp("chat")
    data = work / "data.json"
    data.write_text(json.dumps(json.loads(DATA.read_text(encoding="utf-8"))[:16]))
    train(tiny_config(tiny_model, data, work / "run", max_steps=2), console=Console(file=io.StringIO(), width=100))
    return work / "run"


@pytest.fixture(scope="module")
def other_bases(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Bases the adapter was not trained on: wider (other shapes) and deeper (one more layer)."""
    work = tmp_path_factory.mktemp("bases")
    config = json.loads((tiny_model / "config.json").read_text())
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    shape = {key: config[key] for key in keys}  # the tiny model's own shape
    return {
        "wide": build_demo_model(work / "wide", seed=0, shape={**shape, "hidden_size": 128}),
        "deep": build_demo_model(work / "deep", seed=0, shape={**shape, "num_hidden_layers": 3}),
    }


@pytest.fixture
def adapter(trained, tmp_path):
    """adapter(change=None) -> a copy of the trained run folder, `change(folder)` applied."""

    def make(change=None) -> Path:
        folder = tmp_path / "adapter"
        shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoints", "tb", "cache"))
        if change:
            change(folder)
        return folder

    return make


def set_base(folder: Path, base: str) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config))


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def one_error_line(result) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gpudoctor: error: "), result.stderr
    assert "Traceback" not in result.stderr and "--model" not in result.stderr
    return result.stderr.strip()


def chat(cli, folder: Path, *extra):
    before = listing(folder) if folder.is_dir() else None
    result = cli("chat", "--adapter", folder, "--prompt", "hi", "--max-new-tokens", "2", *extra)
    if before is not None:
        assert listing(folder) == before  # chat writes nothing
    return result


@pytest.mark.parametrize("kind", ["wide", "deep"])
def test_an_adapter_for_another_base(cli, adapter, other_bases, tiny_model, kind):
    folder = adapter(lambda f: set_base(f, str(other_bases[kind])))
    result = chat(cli, folder)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"gpudoctor: error: --adapter {folder}: it does not fit the base {other_bases[kind]} (")
    assert f"it was trained on {tiny_model}; pass --base with that model" in line
    assert ("is [8, 64] in the adapter, [8, 128] in the base" if kind == "wide" else "model.layers.2.") in line


def test_a_truncated_adapter_file(cli, adapter):
    def cut(folder: Path) -> None:
        weights = folder / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-100])

    folder = adapter(cut)
    result = chat(cli, folder)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"gpudoctor: error: {folder / 'adapter_model.safetensors'}: truncated (") and "checkpoints/checkpoint-N" in line


@pytest.mark.parametrize(("content", "needle"), [("{oops", "damaged (not valid JSON)"), ("[]", "damaged (expected a JSON object, got list)")])
def test_a_damaged_adapter_config(cli, adapter, content, needle):
    folder = adapter(lambda f: (f / "adapter_config.json").write_text(content))
    result = chat(cli, folder)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"gpudoctor: error: {folder / 'adapter_config.json'}: {needle}")


def test_a_moved_base_folder_says_to_pass_base_and_base_works(cli, adapter, tiny_model, tmp_path):
    folder = adapter(lambda f: set_base(f, str(tmp_path / "moved-away")))
    result = chat(cli, folder)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"its base model folder {tmp_path / 'moved-away'}" in line and "is gone; pass --base" in line and "hf download" not in line
    answered = chat(cli, folder, "--base", tiny_model)
    assert answered.exit_code == 0 and "Traceback" not in answered.stderr


def test_base_naming_a_missing_folder(cli, adapter, tmp_path):
    result = chat(cli, adapter(), "--base", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert one_error_line(result) == f"gpudoctor: error: --base {tmp_path / 'nowhere'}: no such folder {tmp_path / 'nowhere'}; give the model folder (config.json, *.safetensors, tokenizer files)"


def test_a_hub_base_not_in_the_cache_says_hf_download(cli, adapter):
    folder = adapter(lambda f: set_base(f, "someone/some-model"))
    result = chat(cli, folder)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"gpudoctor: error: --adapter {folder}: its base someone/some-model: ") and "`hf download someone/some-model`" in line


def test_no_adapter_folder_or_no_adapter_file(cli, adapter, tmp_path):
    result = chat(cli, tmp_path / "none")
    assert result.exit_code == 2 and one_error_line(result) == f"gpudoctor: error: --adapter {tmp_path / 'none'}: no such folder; give a `gpudoctor train` output folder"
    folder = adapter(lambda f: (f / "adapter_model.safetensors").unlink())
    result = chat(cli, folder)
    assert result.exit_code == 2 and "no adapter_model.safetensors" in one_error_line(result)


def test_chat_has_the_base_flag_its_advice_names(cli):
    result = cli("chat", "--help")
    assert result.exit_code == 0 and "--base" in result.stdout
