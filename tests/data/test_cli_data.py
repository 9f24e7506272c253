"""`gpudoctor data …` end to end: real public datasets, PII-laden samples, bad files, light imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpudoctor.data.load import load_dataset

PII_RECORDS = [
    {
        "instruction": "Reply to this email from Sarah Jones (sarah.jones@example.com, +44 20 7946 0958).",
        "input": "Hi, I'm Sarah Jones. My card 4111 1111 1111 1111 was charged twice.",
        "output": "Dear Sarah, sorry about the double charge on card 4111 1111 1111 1111. We'll email sarah.jones@example.com.",
    },
    {"instruction": "我叫王小明，手机 138 0013 8000，住在北京市朝阳区建国路88号。", "input": "", "output": "王小明您好，我们会联系您。"},
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "Say nothing", "input": "", "output": ""},
]


@pytest.fixture
def pii_file(tmp_path):
    path = tmp_path / "support.json"
    path.write_text(json.dumps(PII_RECORDS, ensure_ascii=False), encoding="utf-8")
    return path


def test_check_real_datasets_exit_codes(cli, shipped_datasets):
    alpaca = cli("data", "check", shipped_datasets / "alpaca_en_demo.json")
    assert alpaca.exit_code == 0, alpaca.stdout
    assert "alpaca, json, 205 records" in alpaca.stdout
    assert "exact 5" in alpaca.stdout
    assert "ready to train: 0 errors" in alpaca.stdout
    identity = cli("data", "check", shipped_datasets / "identity.json")
    assert identity.exit_code == 1
    assert "[✗] 85 records hold unfilled template placeholders ({{name}}, {{author}})" in identity.stdout
    tools = cli("data", "check", shipped_datasets / "glaive_toolcall_en_demo.json", "--seq-len", "1024")
    assert tools.exit_code == 0
    assert "sharegpt, json, 100 records" in tools.stdout
    assert "15 records (15%) are longer than 1024 tokens" in tools.stdout
    chinese = cli("data", "check", shipped_datasets / "alpaca_zh_demo.json", "--json")
    report = json.loads(chinese.stdout)
    assert report["records"] == 204 and report["trainable"] is True
    assert max(report["languages"], key=report["languages"].get) == "zh"


def test_check_full_render_of_a_small_file(cli, pii_file, monkeypatch):
    result = cli("data", "check", pii_file)
    assert result.exit_code == 1
    assert result.stdout.replace(str(pii_file), "FILE") == (
        "file        FILE\n"
        "format      alpaca, json, 5 records\n"
        "tokens      min 13 · median 14 · p95 74 · max 74 · total 173\n"
        "            approximation: 4 characters per token, 1.25 tokens per CJK character, +5 per message\n"
        "languages   en 3 · zh 1 · latin (non-English) 1  (script-based guess)\n"
        "empty       reply 1 (#5)\n"
        "duplicates  exact 1 · near 0\n"
        "personal    ADDRESS 1 in 1 records (#2) · CARD 2 in 1 records (#1) · EMAIL 2 in 1 records (#1) · NAME 4 in 2 records (#1, #2) · PHONE 2 in 2 records (#1, #2)\n"
        "            NAME: English given-name/surname lists with context, Chinese surnames with context; not scanned: Chinese names without a cue (--nlp not given)\n"
        "            not scanned: names in other scripts (Arabic, Cyrillic, Devanagari...), addresses without a house number, passport and driving-licence numbers, dates of birth\n"
        "templates   none\n"
        "\n"
        "[✗] 1 records have an empty reply (#5)\n"
        "    fix: fill them in, or drop them: gpudoctor data clean FILE -o CLEAN.json\n"
        "[✗] 1 records hold card or id numbers (CARD) (#1)\n"
        "    fix: gpudoctor data clean FILE -o CLEAN.json\n"
        "[!] personal data in 2 records (ADDRESS 1, EMAIL 2, NAME 4, PHONE 2) (#1, #2)\n"
        "    fix: review, then replace with placeholders: gpudoctor data clean FILE -o CLEAN.json\n"
        "[!] 1 exact duplicates (20%) (#4)\n"
        "    fix: gpudoctor data dedupe FILE -o DEDUPED.json\n"
        "[!] only 5 records\n"
        "    fix: about 100 good samples start to change a model's behaviour; more help\n"
        "not ready to train: 2 errors, 3 warnings\n"
    )


def test_clean_replaces_consistently_drops_and_reports(cli, pii_file, tmp_path):
    before = pii_file.read_bytes()
    out = tmp_path / "clean.json"
    result = cli("data", "clean", pii_file, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert pii_file.read_bytes() == before  # never cleaned in place
    cleaned = json.loads(out.read_text(encoding="utf-8"))
    assert len(cleaned) == 3  # the duplicate and the empty reply are gone
    first = cleaned[0]
    assert first["instruction"] == "Reply to this email from <NAME> (<EMAIL>, <PHONE>)."
    assert first["input"] == "Hi, I'm <NAME>. My card <CARD> was charged twice."
    assert first["output"] == "Dear <NAME>, sorry about the double charge on card <CARD>. We'll email <EMAIL>."
    assert cleaned[1]["instruction"] == "我叫<NAME>，手机 <PHONE>，住在<ADDRESS>。"
    report = json.loads((tmp_path / "clean.json.report.json").read_text(encoding="utf-8"))
    assert report["records_in"] == 5 and report["records_out"] == 3
    assert {d["reason"] for d in report["dropped"]} == {"duplicate of #3", "empty reply"}
    assert {"record": 1, "field": "input", "kind": "CARD", "detail": "payment card (Luhn)",
            "original": "4111 1111 1111 1111", "placeholder": "<CARD>"} in report["replacements"]
    assert "replaced   NAME" in result.stdout


def test_clean_numbered_keeps_people_apart(cli, tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps({"instruction": "Introduce Sarah Jones to Michael Thompson.",
                                "output": "Michael, meet Sarah. Sarah, this is Michael."}) + "\n", encoding="utf-8")
    cli("data", "clean", path, "-o", tmp_path / "out.jsonl", "--numbered")
    record = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert record["instruction"] == "Introduce <NAME_1> to <NAME_2>."
    assert record["output"] == "<NAME_2>, meet <NAME_1>. <NAME_1>, this is <NAME_2>."


def test_clean_real_dataset_keeps_records(cli, shipped_datasets, tmp_path):
    result = cli("data", "clean", shipped_datasets / "glaive_toolcall_en_demo.json", "-o", tmp_path / "g.jsonl")
    assert result.exit_code == 0
    data = load_dataset(tmp_path / "g.jsonl")
    assert data.format == "sharegpt" and len(data.records) == 100 - 5
    assert {m.origin for r in data.records for m in r.messages} >= {"function_call", "observation"}


def test_convert_round_trips(cli, shipped_datasets, tmp_path):
    source = shipped_datasets / "alpaca_zh_demo.json"
    assert cli("data", "convert", source, "-o", tmp_path / "m.jsonl", "--to", "messages").exit_code == 0
    assert cli("data", "convert", tmp_path / "m.jsonl", "-o", tmp_path / "a.csv", "--to", "alpaca").exit_code == 0
    assert cli("data", "convert", tmp_path / "a.csv", "-o", tmp_path / "back.json").exit_code == 0
    original, back = load_dataset(source), load_dataset(tmp_path / "back.json")
    assert [[(m.role, m.content) for m in r.messages] for r in original.records] == [
        [(m.role, m.content) for m in r.messages] for r in back.records
    ]
    assert "，" in (tmp_path / "back.json").read_text(encoding="utf-8")  # UTF-8 kept, not \\u escapes


def test_convert_refuses_tool_records_as_alpaca(cli, shipped_datasets, tmp_path):
    result = cli("data", "convert", shipped_datasets / "glaive_toolcall_en_demo.json", "-o", tmp_path / "x.json", "--to", "alpaca")
    assert result.exit_code == 2
    assert result.stderr.startswith("gpudoctor: error: record 1 cannot be written as Alpaca")
    assert not (tmp_path / "x.json").exists()


def test_split_and_dedupe(cli, shipped_datasets, tmp_path):
    result = cli("data", "split", shipped_datasets / "alpaca_en_demo.json", "-o", tmp_path / "parts", "--val", "0.2", "--test", "50")
    assert result.exit_code == 0
    sizes = {name: len(load_dataset(tmp_path / "parts" / f"{name}.json").records) for name in ("train", "val", "test")}
    assert sizes == {"train": 114, "val": 41, "test": 50}  # 205 records: 0.2 of them, 50, the rest
    result = cli("data", "dedupe", shipped_datasets / "glaive_toolcall_en_demo.json", "-o", tmp_path / "d.json", "--near")
    assert "dropped exact 5 · near 2" in result.stdout
    assert len(load_dataset(tmp_path / "d.json").records) == 100 - 5 - 2


def test_never_overwrites_its_input(cli, pii_file):
    result = cli("data", "convert", pii_file, "-o", pii_file)
    assert result.exit_code == 2 and "is the input file" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty (0 bytes)"), (b"[{\"instruction\": \"x\"", "truncated"), (b"\x00\x01binary", "looks binary")],
)
def test_bad_files_exit_2_with_one_line(cli, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = cli("data", "check", path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_data_commands_do_not_import_the_training_stack(shipped_datasets, tmp_path):
    code = (
        "import sys\n"
        "from gpudoctor.cli.main import run\n"
        f"run(['data', 'check', {str(shipped_datasets / 'identity.json')!r}, '--json'])\n"
        f"run(['data', 'clean', {str(shipped_datasets / 'identity.json')!r}, '-o', {str(tmp_path / 'c.json')!r}])\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'accelerate', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout[-500:] + result.stderr[-500:]
