"""Write a Dataset as Alpaca, ShareGPT or chat `messages`, in JSON, JSONL or CSV, atomically and in UTF-8.

The container follows the output's extension (.jsonl, .csv, else JSON). A record that the target
format cannot hold (a tool turn in Alpaca, a multi-turn record in CSV) is an error naming it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_text
from gpudoctor.data.records import Dataset, Message, Record
from gpudoctor.errors import BadInput

FORMATS = ("alpaca", "sharegpt", "messages")
SHAREGPT_NAMES = {"user": "human", "assistant": "gpt", "system": "system"}


def container_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(suffix, "json")


def to_alpaca(record: Record) -> dict[str, Any]:
    messages = record.messages
    system = messages[0].content if messages and messages[0].role == "system" else ""
    turns = messages[1:] if messages and messages[0].role == "system" else messages
    roles = [m.role for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2) or len(turns) % 2:
        raise BadInput(
            f"record {record.number} cannot be written as Alpaca (its turns are {', '.join(roles) or 'none'});"
            " write ShareGPT or messages instead (--to sharegpt)"
        )
    if record.alpaca is not None:
        document: dict[str, Any] = {
            "instruction": record.alpaca.instruction,
            "input": record.alpaca.input,
            "output": record.alpaca.output,
        }
    else:
        document = {"instruction": turns[-2].content, "input": "", "output": turns[-1].content}
    if system:
        document["system"] = system
    if len(turns) > 2:
        document["history"] = [[turns[i].content, turns[i + 1].content] for i in range(0, len(turns) - 2, 2)]
    return document


def to_sharegpt(record: Record) -> dict[str, Any]:
    conversation = []
    for m in record.messages:
        name = m.origin if m.role == "tool" and m.origin in ("function_call", "observation") else None
        conversation.append({"from": name or SHAREGPT_NAMES.get(m.role, "observation"), "value": m.content})
    document: dict[str, Any] = {"conversations": conversation}
    if record.tools:
        document["tools"] = record.tools
    return document


def to_messages(record: Record) -> dict[str, Any]:
    document: dict[str, Any] = {"messages": [{"role": m.role, "content": m.content} for m in record.messages]}
    if record.tools:
        document["tools"] = record.tools
    return document


CONVERTERS = {"alpaca": to_alpaca, "sharegpt": to_sharegpt, "messages": to_messages}


def render(dataset: Dataset, fmt: str, container: str) -> str:
    if fmt not in CONVERTERS:
        raise BadInput(f"unknown data format '{fmt}'; choose one of {', '.join(FORMATS)}")
    documents = [CONVERTERS[fmt](r) for r in dataset.records]
    if container == "jsonl":
        return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents)
    if container == "csv":
        if fmt != "alpaca":
            raise BadInput("CSV holds Alpaca columns only; write .json or .jsonl for ShareGPT or messages")
        multi = next((r for r, d in zip(dataset.records, documents) if "history" in d), None)
        if multi is not None:
            raise BadInput(f"record {multi.number} has several turns, which CSV cannot hold; write .json or .jsonl")
        columns = ["instruction", "input", "output"] + (["system"] if any("system" in d for d in documents) else [])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(documents)
        return buffer.getvalue()
    return json.dumps(documents, ensure_ascii=False, indent=2) + "\n"


def write_dataset(dataset: Dataset, path: str | Path, fmt: str | None = None) -> Path:
    """Write `dataset` to `path` in `fmt` (default: its own format); refuses to overwrite the input."""
    target = Path(path)
    if target.exists() and Path(dataset.path).exists() and target.resolve() == Path(dataset.path).resolve():
        raise BadInput(f"{path}: is the input file; gpudoctor never rewrites its input, choose another -o path")
    return write_text(target, render(dataset, fmt or dataset.format, container_for(target)))


def subset(dataset: Dataset, records: list[Record], path: str = "") -> Dataset:
    """A dataset with the given records, renumbered from 0."""
    renumbered = [
        Record(index=i, messages=[Message(m.role, m.content, m.origin) for m in r.messages], line=None, alpaca=r.alpaca, tools=r.tools)
        for i, r in enumerate(records)
    ]
    return Dataset(path=path or dataset.path, format=dataset.format, container=dataset.container, records=renumbered)
