"""`gpudoctor compare`: the user's prompts files (and every way one can be wrong: one line, exit 2, before
any model loads), prompts formatted as training and chat format them, and on a trained tiny run
(conftest.compared_run): the validation records are the ones train held out, the base answers are the
base model's own, the tuned ones the adapter's, and they differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.train.compare import COMPARE_FILE, Prompt, bare_record, prompt_text, read_prompts


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# Prompts files.


def test_a_text_file_is_one_prompt_a_line_blank_lines_skipped(tmp_path):
    prompts = read_prompts(write(tmp_path / "p.txt", "My webcam is dead.\r\n\n  \n{not json in a .txt}\nWhere is my order?\n"))
    assert [(p.where, p.shown, p.reference) for p in prompts] == [
        ("line 1", "My webcam is dead.", None), ("line 4", "{not json in a .txt}", None), ("line 5", "Where is my order?", None),
    ]  # fmt: skip


def test_jsonl_and_json_alpaca_records_keep_their_input_and_reply(tmp_path):
    lines = [{"instruction": "Summarise", "input": "a long text", "output": "short"}, {"instruction": "Say hi", "system": "Be brief."}]
    jsonl = read_prompts(write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n\n"))
    assert [(p.where, p.shown, p.reference) for p in jsonl] == [("line 1", "Summarise\n\na long text", "short"), ("line 2", "Say hi", None)]
    assert jsonl[0].record.alpaca.input == "a long text" and jsonl[1].record.alpaca.system == "Be brief."
    listed = read_prompts(write(tmp_path / "p.json", json.dumps(["plain prompt", lines[0]])))
    assert [(p.where, p.shown) for p in listed] == [("record 1", "plain prompt"), ("record 2", "Summarise\n\na long text")]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", '{"instruction": "ok"}\n\n{"instruction": "broken",\n', "line 3: invalid JSON"),
        ("bad.json", '[\n{"instruction": "ok"},\n{"instruction": }\n]', "line 3: invalid JSON"),
        ("latin1.txt", b"fine\nna\xefve\n", "line 2: not UTF-8"),
        ("empty.txt", "\n   \n", "holds no prompts"),
        ("empty.json", "[]", "holds no prompts"),
        ("keys.jsonl", '{"prompt": "hi"}\n', "line 1: found keys prompt; expected a prompt string or an Alpaca record"),
        ("blank.jsonl", '{"instruction": "  "}\n', "line 1: 'instruction' is empty"),
        ("number.json", "[3]", "record 1: found a JSON int"),
        ("types.jsonl", '{"instruction": "hi", "input": 5}\n', "line 1"),
    ],
)
def test_a_bad_prompts_file_is_one_line_naming_it_and_where(tmp_path, name, content, expected):
    path = write(tmp_path / name, content)
    with pytest.raises(BadInput) as raised:
        read_prompts(path)
    message = str(raised.value)
    assert message.startswith(f"--prompts {path}") and expected in message and "\n" not in message


def test_a_missing_or_folder_prompts_path_is_named(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        read_prompts(tmp_path / "nope.txt")
    with pytest.raises(BadInput, match="is a folder"):
        read_prompts(tmp_path)


def adapter_folder(folder: Path) -> Path:
    """A folder whose adapter_model.safetensors is whole (the check before anything loads), holding no real adapter."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir()
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    return folder


def test_the_cli_refuses_bad_input_in_one_line_before_loading_a_model(cli, tmp_path):
    missing = cli("compare", "--adapter", tmp_path / "gone")
    assert missing.exit_code == 2 and "no such folder" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    adapter = adapter_folder(tmp_path / "run")
    empty = cli("compare", "--adapter", adapter, "--prompts", write(tmp_path / "p.txt", "\n"))
    assert empty.exit_code == 2 and "holds no prompts" in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    no_split = cli("compare", "--adapter", adapter)
    assert no_split.exit_code == 2 and "no run.yaml" in no_split.stderr and "--prompts" in no_split.stderr
    zero = cli("compare", "--adapter", adapter, "--prompts", tmp_path / "p.txt", "--max-new-tokens", "0")
    assert zero.exit_code == 2 and "--max-new-tokens 0" in zero.stderr
    assert not (adapter / COMPARE_FILE).exists()


# Formatting: as training formats a record, and as chat formats a prompt.


def test_prompts_are_formatted_as_chat_formats_them_with_and_without_a_chat_template(tiny_model):
    from gpudoctor.train.formatting import alpaca_prompt
    from gpudoctor.train.generate import Chatbot
    from gpudoctor.train.model import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    bot = Chatbot(model=None, tokenizer=tokenizer)
    prompt = Prompt(bare_record("Where is my parcel?", 0), "line 1")
    assert prompt_text(prompt, tokenizer) == bot.prompt_text("Where is my parcel?") == alpaca_prompt("Where is my parcel?")
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert prompt_text(prompt, tokenizer) == bot.prompt_text("Where is my parcel?") == "<user>Where is my parcel?</s><assistant>"


# A trained run.


@pytest.mark.slow
def test_the_validation_prompts_are_the_records_train_held_out(compared_run, tiny_config):
    from gpudoctor.plan.runconfig import read_run_config
    from gpudoctor.train.run import prepare

    folder, result, _ = compared_run
    config = read_run_config(folder / "run.yaml")
    config.output = str(folder.parent / "fresh")  # prepare writes nothing; a fresh folder to check
    held_out = sorted({n for row in prepare(config).eval_rows for n in row.records})
    assert len(held_out) == 8 and [a["where"] for a in result["answers"]] == [f"record {n}" for n in held_out[:4]]
    assert result["notes"] == ["the first 4 of 8 prompts (--max-prompts)"]
    records = json.loads(Path(config.data).read_text(encoding="utf-8"))
    assert [a["reference"] for a in result["answers"]] == [records[n - 1]["output"] for n in held_out[:4]]
    assert json.loads((folder / COMPARE_FILE).read_text(encoding="utf-8")) == result


@pytest.mark.slow
def test_base_answers_are_the_base_models_and_differ_from_the_tuned_ones(compared_run):
    from gpudoctor.train.generate import Chatbot, load_chatbot
    from gpudoctor.train.model import load_base, load_tokenizer
    from gpudoctor.settings import Settings

    folder, result, _ = compared_run
    answers = result["answers"]
    assert result["differ"] == sum(a["base"] != a["tuned"] for a in answers) and result["differ"] >= len(answers) // 2
    base_dir = Path(json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"])
    plain = Chatbot(load_base(base_dir, Settings(compute_dtype="fp32")).eval(), load_tokenizer(base_dir))  # no peft at all
    tuned = load_chatbot(folder)
    records = json.loads(Path(json.loads((folder / "report.json").read_text())["data"]).read_text(encoding="utf-8"))
    for answer in answers[:2]:
        number = int(answer["where"].split()[1])
        text = plain.prompt_text(records[number - 1]["instruction"])
        assert plain.complete(text, 24) == answer["base"]
        assert tuned.complete(text, 24) == answer["tuned"]


@pytest.mark.slow
def test_the_cli_answers_a_prompts_file_side_by_side_and_rewrites_the_report(compared_run, cli, tmp_path):
    folder = Path(shutil.copytree(compared_run[0], tmp_path / "run"))  # the shared run keeps its own compare.json
    prompts = write(tmp_path / "mine.txt", "My <Iris> webcam will not turn on.\nThe battery drains fast.\n")
    result = cli("compare", "--adapter", folder, "--prompts", prompts, "--max-new-tokens", "12")
    assert result.exit_code == 0, result.stderr
    saved = json.loads((folder / COMPARE_FILE).read_text(encoding="utf-8"))
    assert [a["prompt"] for a in saved["answers"]] == ["My <Iris> webcam will not turn on.", "The battery drains fast."]
    assert str(prompts) in saved["prompts_from"] and saved["max_new_tokens"] == 12
    assert "My <Iris> webcam" in result.stdout and "tuned (base + adapter)" in result.stdout
    assert f"report: {folder / 'report.html'}" in result.stdout
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "My &lt;Iris&gt; webcam will not turn on." in page
