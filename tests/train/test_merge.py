"""`gpudoctor merge`: a tiny run merged both ways, loaded with plain transformers (no peft, no gpudoctor),
its logits against base 4-bit + adapter, the chat template against gpudoctor's prompt, and every refusal
(one line, its exit code, no OUT left behind)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from gpudoctor.errors import EXIT_PROBLEM, EXIT_USAGE, ProblemFound
from gpudoctor.train import merge as merging
from gpudoctor.train.merge import MergeRequest, Room, merge

pytestmark = pytest.mark.slow

PROMPTS = merging.PROMPTS
# Measured on this tiny model (fp32): the faithful merge reproduces base 4-bit + adapter to ~4e-7.
NF4_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run_dir(tiny_model, tiny_config, support_records, tmp_path_factory) -> Path:
    from rich.console import Console

    from gpudoctor.train.run import train

    folder = tmp_path_factory.mktemp("merge-run")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    config = tiny_config(tiny_model, data, folder / "run")
    train(config, console=Console(file=io.StringIO(), width=100))
    return Path(config.output)


@pytest.fixture(scope="module")
def merged_nf4(run_dir, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """The default merge, over a non-empty OUT with --force."""
    out = tmp_path_factory.mktemp("nf4") / "merged"
    out.mkdir()
    (out / "old.txt").write_text("left from before", encoding="utf-8")
    lines: list[str] = []
    manifest = merge(MergeRequest(adapter=run_dir, output=out, force=True), say=lines.append)
    return out, manifest, lines


@pytest.fixture(scope="module")
def merged_original(run_dir, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """--into original, in small shards, under umask 027."""
    out = tmp_path_factory.mktemp("original") / "merged"
    lines: list[str] = []
    mask = os.umask(0o027)
    try:
        manifest = merge(MergeRequest(adapter=run_dir, output=out, into="original", shard_size="300KB"), say=lines.append)
    finally:
        os.umask(mask)
    return out, manifest, lines


def prompt_ids(tokenizer, prompts=PROMPTS):
    from gpudoctor.train.formatting import alpaca_prompt

    return [tokenizer(alpaca_prompt(p), return_tensors="pt")["input_ids"] for p in prompts]


def logits_of(model, ids):
    import torch

    with torch.no_grad():
        return [model(input_ids=i).logits.float() for i in ids]


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def base_plus_adapter(tiny_model, run_dir, *, quantized: bool):
    """What chat computes, built here with plain transformers + peft: the base (4-bit NF4 as trained, or the
    original fp32 weights) with the adapter on top; bitsandbytes kept on its exact NF4 path on any CPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32, quantization_config=quant if quantized else None)
    for module in base.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return PeftModel.from_pretrained(base, str(run_dir)).eval()


def plain_load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(str(folder))


def test_nf4_merge_loads_with_plain_transformers_and_matches_base_4bit_plus_adapter(merged_nf4, tiny_model, run_dir):
    out, manifest, lines = merged_nf4
    model, tokenizer = plain_load(out)
    assert not any("4bit" in type(m).__name__ or "lora" in type(m).__name__.lower() for m in model.modules())
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    ids = prompt_ids(tokenizer)
    reference = logits_of(base_plus_adapter(tiny_model, run_dir, quantized=True), ids)
    assert max_diff(logits_of(model, ids), reference) < NF4_TOLERANCE
    check = manifest["verification"]
    assert manifest["mode"] == "nf4" and manifest["dtype"] == "fp32" and manifest["base"] == str(tiny_model.resolve())
    assert check["max_abs_logit_diff"] < NF4_TOLERANCE and check["top1_agreement"] == 1.0 and check["positions"] > 30
    assert json.loads((out / "gpudoctor_merge.json").read_text()) == manifest
    assert not (out / "old.txt").exists()  # --force replaced the folder
    assert any("dequantized NF4" in line for line in lines) and any(line.startswith("verify: max |logit difference|") for line in lines)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging or replaced folder left


def test_original_merge_is_the_original_weights_plus_adapter_and_its_distance_is_reported(merged_original, merged_nf4, tiny_model, run_dir):
    out, manifest, lines = merged_original
    model, tokenizer = plain_load(out)
    ids = prompt_ids(tokenizer)
    by_hand = base_plus_adapter(tiny_model, run_dir, quantized=False).merge_and_unload()
    assert max_diff(logits_of(model, ids), logits_of(by_hand, ids)) < NF4_TOLERANCE
    check = manifest["verification"]
    assert manifest["mode"] == "original" and "original" in manifest["merged_into"]
    # the adapter corrected for NF4's error, which the original weights do not have: further from chat
    assert check["max_abs_logit_diff"] > merged_nf4[1]["verification"]["max_abs_logit_diff"]
    assert 0 < check["top1_agreement"] <= 1
    assert any("original base weights" in line for line in lines)


def test_small_shards_and_the_users_umask(merged_original):
    out, _, _ = merged_original
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    assert out.stat().st_mode & 0o777 == 0o750
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o640 for p in out.iterdir()}


def test_chat_template_renders_gpudoctors_prompt_and_its_tokens(merged_nf4, run_dir):
    from transformers import AutoTokenizer

    from gpudoctor.data.records import Message, Record
    from gpudoctor.train.formatting import alpaca_prompt, alpaca_segments
    from gpudoctor.train.generate import Chatbot

    out, _, _ = merged_nf4
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    chat_tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    for prompt in PROMPTS + ("Ünïcode {braces} and\nnew lines",):
        messages = [{"role": "user", "content": prompt}]
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == alpaca_prompt(prompt)
        chat_ids = chat_tokenizer(Chatbot(None, chat_tokenizer).prompt_text(prompt))["input_ids"]
        assert list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]) == chat_ids
    turns = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello."), Message("tool", "42"), Message("assistant", "It is 42.")]
    trained = "".join(text for text, _ in alpaca_segments(Record(0, turns), tokenizer.eos_token))
    rendered = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in turns], tokenize=False)
    assert rendered == trained


def cli(argv, capsys) -> tuple[int, str]:
    from gpudoctor.cli.main import run

    code = run(argv)
    err = capsys.readouterr().err
    return code, err


def adapter_copy(run_dir: Path, folder: Path, **config_changes) -> Path:
    folder.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json", "run.yaml"):
        shutil.copyfile(run_dir / name, folder / name)
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(config_changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such folder"),
        ("not-an-adapter", "no adapter_model.safetensors"),
        ("base-gone", "is gone"),
        ("out-not-empty", "exists and is not empty"),
        ("out-is-file", "is a file"),
        ("bad-into", "--into fp8"),
        ("bad-dtype", "--dtype int4"),
    ],
)
def test_refusals_are_one_line_exit_2_and_write_nothing(case, expected, run_dir, tmp_path, capsys):
    out, adapter, extra = tmp_path / "out", run_dir, []
    if case == "missing":
        adapter = tmp_path / "nowhere"
    elif case == "not-an-adapter":
        adapter = tmp_path / "empty"
        adapter.mkdir()
    elif case == "base-gone":
        adapter = adapter_copy(run_dir, tmp_path / "moved", base_model_name_or_path=str(tmp_path / "gone-base"))
    elif case == "out-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine", encoding="utf-8")
    elif case == "out-is-file":
        out.write_text("a file", encoding="utf-8")
    elif case == "bad-into":
        extra = ["--into", "fp8"]
    elif case == "bad-dtype":
        extra = ["--dtype", "int4"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = cli(["merge", "--adapter", str(adapter), "-o", str(out), *extra], capsys)
    assert code == EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith("gpudoctor: error: ") and expected in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # OUT not created, no staging folder
    if case == "out-not-empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "room, expected",
    [
        (Room(disk=100_000, ram=2**40), "100000 bytes free on"),
        (Room(disk=2**40, ram=100_000), "100000 bytes of RAM free, the merge needs about"),
    ],
)
def test_short_disk_or_ram_is_one_line_exit_1_with_the_numbers_before_anything_loads(room, expected, run_dir, tiny_model, tmp_path):
    from gpudoctor.plan.memory import layer_linears, total_params
    from gpudoctor.profiles import model_from_config

    spec = model_from_config(tiny_model / "config.json")
    size = total_params(spec) * 4  # fp32, the run's compute dtype
    if room.ram < 2**40:
        size += sum(linear.params for linear in layer_linears(spec)) * 4  # and one decoder layer
    out = tmp_path / "out"
    with pytest.raises(ProblemFound) as err:
        merge(MergeRequest(adapter=run_dir, output=out), say=lambda line: None, room=room)
    message = str(err.value)
    assert err.value.exit_code == EXIT_PROBLEM and "\n" not in message
    assert expected in message
    assert f"needs {'about ' if room.ram < 2**40 else ''}{merging._gib(size)}" in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_room_check_counts_the_merged_size_and_a_layer(tmp_path):
    merging.check_room(tmp_path / "out", 1000, 100, Room(disk=1000, ram=1100))
    with pytest.raises(ProblemFound, match="needs 1000 bytes"):
        merging.check_room(tmp_path / "out", 1000, 100, Room(disk=999, ram=10**9))
    with pytest.raises(ProblemFound, match="needs about 1100 bytes"):
        merging.check_room(tmp_path / "out", 1000, 100, Room(disk=10**9, ram=1099))


def test_a_failed_write_is_one_line_and_leaves_no_out(run_dir, tmp_path, monkeypatch):
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merging, "save_merged", full_disk)
    out = tmp_path / "out"
    with pytest.raises(ProblemFound, match="No space left on device") as err:
        merge(MergeRequest(adapter=run_dir, output=out), say=lambda line: None)
    assert "\n" not in str(err.value) and not out.exists() and list(tmp_path.iterdir()) == []
