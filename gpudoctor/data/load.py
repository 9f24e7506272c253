"""Read a training dataset file (Alpaca, ShareGPT or chat `messages`; JSON, JSONL or CSV) into a Dataset.

The format is detected from the first record's keys; the container from the file's first
non-blank character (and the extension for CSV/JSONL). Every problem raises BadInput with one
line naming the file and the record number (1-based) or line, so a user can go and fix it.
Empty strings are accepted here: `data check` reports them, the loader only rejects what cannot
be read as records at all.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record
from gpudoctor.errors import BadInput

ALPACA_KEYS = ("instruction", "input", "output", "system", "history")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "tool",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}
MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}
EXPECTED = "Alpaca (instruction, input, output), ShareGPT (conversations) or chat (messages)"


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside. Building hundreds of thousands of small objects (records,
    messages, sketches) sets off collections that each walk every object made so far: measured, a
    sixth of `data check`'s CPU time on 50,000 records. Records hold no reference cycles, so
    reference counting frees everything as before; collection resumes (if it was on) on the way out."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_dataset(path: str | Path) -> Dataset:
    """Read `path` into a Dataset whose records all have `messages` filled."""
    with gc_paused():
        return _load(path)


def _load(path: str | Path) -> Dataset:
    name = str(path)
    text = _read_text(Path(path), name)
    stripped = text.lstrip()
    if not stripped:
        raise BadInput(f"{name}: the file holds only whitespace; expected JSON, JSONL or CSV records")
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _from_csv(text, name, delimiter="\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _from_jsonl(text, name)
    if stripped[0] == "[":
        return _from_json(text, name)
    if stripped[0] == "{":
        first_line = stripped.split("\n", 1)[0].strip()
        if _is_json_object(first_line) and ("\n" in stripped.strip() or suffix != ".json"):
            return _from_jsonl(text, name)
        return _from_json(text, name)
    if suffix == ".json":
        raise BadInput(f"{name}: does not start with '[' or '{{' (found {stripped[:20]!r}); expected a JSON list of records")
    return _from_csv(text, name, delimiter=",")


def _read_text(path: Path, name: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{name}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{name}: is a folder; give a JSON, JSONL or CSV file") from None
    except OSError as err:
        raise BadInput(f"{name}: cannot be read ({err.strerror})") from None
    if not data:
        raise BadInput(f"{name}: the file is empty (0 bytes); expected JSON, JSONL or CSV records")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadInput(f"{name}: is UTF-16 (byte-order mark); re-save it as UTF-8")
    nul = data.find(b"\x00", 0, 8192)
    if nul >= 0:
        raise BadInput(f"{name}: looks binary (NUL byte at offset {nul}); expected a JSON, JSONL or CSV text file")
    try:
        text = data.decode("utf-8-sig")  # a leading BOM is accepted and dropped
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BadInput(
            f"{name}: is not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}, line {line}); re-save it as UTF-8"
        ) from None
    return text.replace("\r\n", "\n")


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        cut = not text.rstrip().endswith(("]", "}")) and "\n" not in text[err.pos :].strip()
        ending = " (the file ends early: truncated?)" if cut else ""
        raise BadInput(f"{where}: invalid JSON at line {err.lineno}:{err.colno}: {err.msg}{ending}") from None
    except RecursionError:
        raise BadInput(f"{where}: JSON nested too deeply to be a training record") from None
    except ValueError as err:  # e.g. an integer longer than Python's digit limit
        raise BadInput(f"{where}: invalid JSON: {str(err).splitlines()[0]}") from None


def _from_json(text: str, name: str) -> Dataset:
    value = _parse_json(text, name)
    if isinstance(value, dict):
        hint = next((f"; the records seem to be under key '{k}'" for k, v in value.items() if isinstance(v, list)), "")
        raise BadInput(f"{name}: holds one JSON object, expected a list of records ([{{...}}, {{...}}]){hint}")
    if not isinstance(value, list):
        raise BadInput(f"{name}: holds a JSON {_type_name(value)}, expected a list of records")
    if not value:
        raise BadInput(f"{name}: holds an empty list: no records to train on")
    fmt = _detect_format(value[0], f"{name} record 1")
    records = [_record(fmt, item, index, None, f"{name} record {index + 1}") for index, item in enumerate(value)]
    return Dataset(path=name, format=fmt, container="json", records=records)


def _from_jsonl(text: str, name: str) -> Dataset:
    records: list[Record] = []
    fmt = ""
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name} line {line_no}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadInput(f"{where}: invalid JSON at column {err.colno}: {err.msg}") from None
        except RecursionError:
            raise BadInput(f"{where}: JSON nested too deeply to be a training record") from None
        except ValueError as err:
            raise BadInput(f"{where}: invalid JSON: {str(err).splitlines()[0]}") from None
        if not fmt:
            fmt = _detect_format(value, where)
        records.append(_record(fmt, value, len(records), line_no, where))
    if not records:
        raise BadInput(f"{name}: no records (every line is blank)")
    return Dataset(path=name, format=fmt, container="jsonl", records=records)


def _from_csv(text: str, name: str, delimiter: str) -> Dataset:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames or []
        header_keys = [h.strip() for h in header]
        if "instruction" not in header_keys or "output" not in header_keys:
            raise BadInput(
                f"{name}: CSV header has {_quoted(header_keys)}; expected columns instruction, input (optional), output"
            )
        records: list[Record] = []
        start = reader.line_num + 1
        for row in reader:
            where = f"{name} line {start}"
            if None in row:
                raise BadInput(f"{where}: more fields than the header's {len(header)}; quote fields that contain '{delimiter}'")
            values = {k.strip(): (v if v is not None else "") for k, v in row.items()}
            if any(values.values()):
                item = {k: values[k] for k in ALPACA_KEYS if k in values and k != "history"}
                records.append(_record("alpaca", item, len(records), start, where))
            start = reader.line_num + 1
    except csv.Error as err:
        raise BadInput(f"{name} line {reader.line_num}: unreadable CSV: {err}") from None
    if not records:
        raise BadInput(f"{name}: the CSV has a header but no records")
    return Dataset(path=name, format="alpaca", container="csv", records=records)


def record_from_dict(fmt: str, value: Any, index: int, where: str) -> Record:
    """Validate one record given as a parsed JSON object (e.g. one an LLM generated), as the loader would."""
    return _record(fmt, value, index, None, where)


def _detect_format(value: Any, where: str) -> str:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: is a JSON {_type_name(value)}, expected an object with {EXPECTED} keys")
    if "conversations" in value:
        return "sharegpt"
    if "messages" in value:
        return "messages"
    if "instruction" in value:
        return "alpaca"
    raise BadInput(f"{where}: found keys {_quoted(list(value))}; expected {EXPECTED}")


def _record(fmt: str, value: Any, index: int, line: int | None, where: str) -> Record:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: is a JSON {_type_name(value)}, expected an object like record 1")
    if fmt == "alpaca":
        return _alpaca(value, index, line, where)
    if fmt == "sharegpt":
        return _sharegpt(value, index, line, where)
    return _messages(value, index, line, where)


def _alpaca(value: dict[str, Any], index: int, line: int | None, where: str) -> Record:
    missing = [k for k in ("instruction", "output") if k not in value]
    if missing:
        raise BadInput(
            f"{where}: missing {_quoted(missing)}; expected keys instruction, input, output"
            f" (system, history optional), found {_quoted(list(value))}"
        )
    fields = AlpacaFields(
        instruction=_text(value, "instruction", where),
        input=_text(value, "input", where),
        output=_text(value, "output", where),
        system=_text(value, "system", where),
    )
    messages = [Message("system", fields.system)] if fields.system else []
    for pair in _history(value.get("history"), where):
        messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    prompt = fields.instruction + ("\n\n" + fields.input if fields.input else "")
    messages += [Message("user", prompt), Message("assistant", fields.output)]
    return Record(index=index, messages=messages, line=line, alpaca=fields)


def _history(value: Any, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"{where}: 'history' is a {_type_name(value)}, expected a list of [instruction, response] pairs")
    pairs = []
    for turn, pair in enumerate(value, start=1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise BadInput(f"{where}: 'history' turn {turn} must be a pair of strings [instruction, response]")
        pairs.append((_checked(pair[0], f"{where} history turn {turn}"), _checked(pair[1], f"{where} history turn {turn}")))
    return pairs


def _sharegpt(value: dict[str, Any], index: int, line: int | None, where: str) -> Record:
    turns = value.get("conversations")
    if not isinstance(turns, list):
        raise BadInput(f"{where}: 'conversations' is a {_type_name(turns)}, expected a list of {{from, value}} turns")
    messages = []
    for turn_no, turn in enumerate(turns, start=1):
        at = f"{where} turn {turn_no}"
        if not isinstance(turn, dict):
            raise BadInput(f"{at}: is a {_type_name(turn)}, expected an object with 'from' and 'value'")
        role_key, text_key = ("from", "value") if "from" in turn or "value" in turn else ("role", "content")
        if role_key not in turn or text_key not in turn:
            raise BadInput(f"{at}: expected keys 'from' and 'value', found {_quoted(list(turn))}")
        role = turn[role_key]
        if role not in SHAREGPT_ROLES:
            raise BadInput(f"{at}: unknown role {role!r}; expected one of {', '.join(SHAREGPT_ROLES)}")
        messages.append(Message(SHAREGPT_ROLES[role], _text(turn, text_key, at), origin=role))
    system = _text(value, "system", where)
    if system:
        messages.insert(0, Message("system", system, origin="system"))
    return Record(index=index, messages=messages, line=line, tools=_tools(value, where))


def _messages(value: dict[str, Any], index: int, line: int | None, where: str) -> Record:
    turns = value.get("messages")
    if not isinstance(turns, list):
        raise BadInput(f"{where}: 'messages' is a {_type_name(turns)}, expected a list of {{role, content}} messages")
    messages = []
    for turn_no, turn in enumerate(turns, start=1):
        at = f"{where} message {turn_no}"
        if not isinstance(turn, dict):
            raise BadInput(f"{at}: is a {_type_name(turn)}, expected an object with 'role' and 'content'")
        if "role" not in turn or "content" not in turn:
            raise BadInput(f"{at}: expected keys 'role' and 'content', found {_quoted(list(turn))}")
        role = turn["role"]
        if role not in MESSAGE_ROLES:
            raise BadInput(f"{at}: unknown role {role!r}; expected one of {', '.join(MESSAGE_ROLES)}")
        content = turn["content"]
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
                raise BadInput(f"{at}: 'content' parts must be objects like {{\"type\": \"text\", \"text\": \"...\"}}")
            content = "".join(p.get("text", "") for p in content)
            messages.append(Message(MESSAGE_ROLES[role], _checked(content, at), origin=role))
        else:
            messages.append(Message(MESSAGE_ROLES[role], _text(turn, "content", at), origin=role))
    return Record(index=index, messages=messages, line=line, tools=_tools(value, where))


def _tools(value: dict[str, Any], where: str) -> str | None:
    tools = value.get("tools")
    if tools is None or tools == "":
        return None
    if isinstance(tools, str):
        return _checked(tools, where)
    if isinstance(tools, (list, dict)):
        return json.dumps(tools, ensure_ascii=False)
    raise BadInput(f"{where}: 'tools' is a {_type_name(tools)}, expected a JSON string or a list of tool schemas")


def _text(value: dict[str, Any], key: str, where: str) -> str:
    """A string field; a missing or null field is ''. Numbers are not silently turned into text."""
    field = value.get(key)
    if field is None:
        return ""
    if not isinstance(field, str):
        raise BadInput(f"{where}: '{key}' is a {_type_name(field)} ({_preview(field)}), expected a string")
    return _checked(field, f"{where} '{key}'")


def _checked(text: str, where: str) -> str:
    if text.isascii():  # O(1) in CPython, and an ASCII string holds no surrogate
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadInput(f"{where}: holds an unpaired surrogate escape (\\u{ord(text[err.start]):04x}); fix the JSON escape") from None
    return text


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 30 else text[:27] + "..."


def _quoted(keys: list[Any]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:8])
    return shown + (f" and {len(keys) - 8} more" if len(keys) > 8 else "") if keys else "none"
