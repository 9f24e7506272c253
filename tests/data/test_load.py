"""The loader: every format and container, and one clear line for every malformed file."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudoctor.data.load import load_dataset
from gpudoctor.errors import BadInput

ALPACA = [
    {"instruction": "Say hi", "input": "", "output": "Hi!"},
    {"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief."},
]


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def error_of(path) -> str:
    with pytest.raises(BadInput) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_alpaca_json_becomes_messages_and_keeps_fields(tmp_path):
    data = load_dataset(write(tmp_path, "a.json", json.dumps(ALPACA)))
    assert (data.format, data.container, len(data.records)) == ("alpaca", "json", 2)
    first, second = data.records
    assert [(m.role, m.content) for m in first.messages] == [("user", "Say hi"), ("assistant", "Hi!")]
    assert [(m.role, m.content) for m in second.messages] == [
        ("system", "Be brief."),
        ("user", "Translate\n\nchat"),
        ("assistant", "cat"),
    ]
    assert second.alpaca.input == "chat" and second.number == 2


def test_alpaca_history_comes_before_the_turn(tmp_path):
    record = {"instruction": "and 3?", "output": "9", "history": [["2 squared?", "4"]]}
    data = load_dataset(write(tmp_path, "h.json", json.dumps([record])))
    assert [m.content for m in data.records[0].messages] == ["2 squared?", "4", "and 3?", "9"]


def test_sharegpt_roles_tools_and_origin(tmp_path):
    record = {
        "conversations": [
            {"from": "human", "value": "weather?"},
            {"from": "function_call", "value": "{\"name\": \"w\"}"},
            {"from": "observation", "value": "{\"t\": 3}"},
            {"from": "gpt", "value": "3 degrees"},
        ],
        "tools": [{"name": "w"}],
        "system": "You help.",
    }
    data = load_dataset(write(tmp_path, "s.json", json.dumps([record])))
    messages = data.records[0].messages
    assert [m.role for m in messages] == ["system", "user", "tool", "tool", "assistant"]
    assert [m.origin for m in messages] == ["system", "human", "function_call", "observation", "gpt"]
    assert json.loads(data.records[0].tools) == [{"name": "w"}]


def test_openai_messages_jsonl_with_line_numbers(tmp_path):
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
        "",
        json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "c"}]}]}),
    ]
    data = load_dataset(write(tmp_path, "m.jsonl", "\n".join(lines) + "\n"))
    assert (data.format, data.container) == ("messages", "jsonl")
    assert [r.line for r in data.records] == [1, 3]
    assert data.records[1].messages[0].content == "c"


def test_jsonl_content_in_a_json_named_file_is_detected(tmp_path):
    text = "\n".join(json.dumps(r) for r in ALPACA)
    assert load_dataset(write(tmp_path, "x.json", text)).container == "jsonl"


def test_csv_with_alpaca_columns_quotes_and_crlf(tmp_path):
    text = 'instruction,input,output\r\n"Say ""hi""",,"line one\r\nline two"\r\nAdd,"1, 2",3\r\n'
    data = load_dataset(write(tmp_path, "d.csv", text))
    assert (data.format, data.container) == ("alpaca", "csv")
    assert data.records[0].alpaca.instruction == 'Say "hi"'
    assert data.records[0].alpaca.output == "line one\nline two"
    assert data.records[1].messages[0].content == "Add\n\n1, 2"
    assert [r.line for r in data.records] == [2, 4]


def test_bom_and_crlf_are_accepted(tmp_path):
    text = json.dumps(ALPACA, indent=2).replace("\n", "\r\n")
    data = load_dataset(write(tmp_path, "bom.json", b"\xef\xbb\xbf" + text.encode()))
    assert len(data.records) == 2


def test_multi_megabyte_file_loads(tmp_path):
    big = [{"instruction": "q" * 100, "input": "", "output": "word " * 2000} for _ in range(500)]
    path = write(tmp_path, "big.json", json.dumps(big))
    assert path.stat().st_size > 5_000_000
    assert len(load_dataset(path).records) == 500


def test_real_datasets_load(shipped_datasets):
    expected = {
        "alpaca_en_demo.json": ("alpaca", 205),
        "alpaca_zh_demo.json": ("alpaca", 204),
        "identity.json": ("alpaca", 91),
        "glaive_toolcall_en_demo.json": ("sharegpt", 100),
    }
    for name, (fmt, count) in expected.items():
        data = load_dataset(shipped_datasets / name)
        assert (data.format, len(data.records)) == (fmt, count)
        assert all(r.messages for r in data.records)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.json", json.dumps(ALPACA)[:-20], "invalid JSON at line 1:"),
        ("t.json", json.dumps(ALPACA)[:-20], "truncated"),
        ("d.json", json.dumps({"data": ALPACA}), "expected a list of records"),
        ("d.json", json.dumps({"data": ALPACA}), "under key 'data'"),
        ("k.json", json.dumps([{"question": "a", "answer": "b"}]), "record 1: found keys 'question', 'answer'; expected"),
        ("k2.json", json.dumps(ALPACA + [{"instruction": "x", "ouput": "y"}]), "record 3: missing 'output'"),
        ("k2.json", json.dumps(ALPACA + [{"instruction": "x", "ouput": "y"}]), "found 'instruction', 'ouput'"),
        ("v.json", json.dumps(ALPACA + [{"instruction": "x", "output": 42}]), "record 3: 'output' is a number (42), expected a string"),
        ("v.json", json.dumps([{"conversations": "hi"}]), "record 1: 'conversations' is a string"),
        ("r.json", json.dumps([{"conversations": [{"from": "bot", "value": "x"}]}]), "record 1 turn 1: unknown role 'bot'"),
        ("l.json", json.dumps([ALPACA[0], "text"]), "record 2: is a JSON string"),
        ("e.json", "", "empty (0 bytes)"),
        ("w.json", "  \n ", "only whitespace"),
        ("e.json", "[]", "empty list"),
        ("n.json", "42", "does not start with '[' or '{' (found '42')"),
        ("bin.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "looks binary (NUL byte at offset 8)"),
        ("latin.json", '[{"instruction": "caf\xe9", "output": "x"}]'.encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 21, line 1)"),
        ("u16.json", json.dumps(ALPACA).encode("utf-16"), "UTF-16"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("s.json", '[{"instruction": "\\ud800", "output": "x"}]', "unpaired surrogate"),
        ("c.csv", "question,answer\nq,a\n", "CSV header has 'question', 'answer'; expected columns instruction"),
        ("c.csv", "instruction,output\na,b,c\n", "line 2: more fields than the header's 2"),
        ("c.csv", "instruction,output\n", "header but no records"),
    ],
)
def test_malformed_files_give_one_line(tmp_path, name, content, expected):
    assert expected in error_of(write(tmp_path, name, content))


def test_jsonl_with_one_bad_line_names_it(tmp_path):
    lines = [json.dumps(r) for r in ALPACA] + ['{"instruction": "x", "output": '] + [json.dumps(ALPACA[0])]
    message = error_of(write(tmp_path, "bad.jsonl", "\n".join(lines)))
    assert "bad.jsonl line 3: invalid JSON at column" in message


def test_jsonl_wrong_type_on_a_line(tmp_path):
    lines = [json.dumps(ALPACA[0]), json.dumps({"instruction": ["a"], "output": "b"})]
    assert "line 2: 'instruction' is a list" in error_of(write(tmp_path, "t.jsonl", "\n".join(lines)))


def test_missing_file_and_folder(tmp_path):
    assert "no such file" in error_of(tmp_path / "nope.json")
    assert "is a folder" in error_of(tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".json", ".jsonl", ".csv", ".txt"]))
def test_no_bytes_crash_the_loader(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        load_dataset(path)
    except BadInput as err:
        assert "\n" not in str(err)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["instruction", "input", "output", "system", "history", "conversations", "messages",
                         "from", "value", "role", "content", "tools", "x"]), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, suffix=st.sampled_from([".json", ".jsonl"]))
def test_no_json_structure_crashes_the_loader(tmp_path, value, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(json.dumps(value), encoding="utf-8")
    try:
        data = load_dataset(path)
    except BadInput as err:
        assert "\n" not in str(err)
    else:
        assert all(isinstance(m.content, str) for r in data.records for m in r.messages)
