"""Base vs tuned on the same prompts: `gpudoctor compare`, and the end of `gpudoctor demo`.

The prompts are the run's validation split (the records `train` held out, found again with train's
own split, seed and token cache) or the user's file: one prompt per line, or a JSON list / JSONL of
Alpaca records (or of strings). Each is formatted exactly as training formats it
(formatting.segments_for: the text before the record's last reply) and answered twice by the one
loaded model, greedy with the seed set before each answer: with the adapter switched off (peft's
disable_adapter, so the base is the very NF4 weights the adapter was trained against, loaded once)
and with it. compare.json in the run folder holds both answers; report.html is rewritten from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_json
from gpudoctor.data.records import AlpacaFields, Message, Record
from gpudoctor.errors import BadInput

COMPARE_FILE = "compare.json"
DEFAULT_MAX_PROMPTS = 16
DEFAULT_MAX_NEW_TOKENS = 96
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


@dataclass
class Prompt:
    """One prompt to answer: the record it came from (formatted as training formats it) and where."""

    record: Record
    where: str  # "record 12" (validation split, JSON list) or "line 3"

    @property
    def shown(self) -> str:
        """What the user asked: the record's last user turn (Alpaca: instruction and input)."""
        turns = [m for m in self.record.messages if m.role != "system"]
        asked = [m for m in turns[:-1] if m.role == "user"]
        return asked[-1].content if asked else ""

    @property
    def reference(self) -> str | None:
        """The data's own reply to it (None for a bare prompt)."""
        last = self.record.messages[-1] if self.record.messages else None
        return last.content if last is not None and last.role == "assistant" and last.content else None


@dataclass
class CompareRequest:
    adapter: Path
    prompts: Path | None = None  # None: the run's validation split
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int = 0
    max_prompts: int = DEFAULT_MAX_PROMPTS


# Prompts from a file.


def bare_record(text: str, index: int, line: int | None = None) -> Record:
    """A prompt with no reply yet, as an Alpaca record (so it is formatted as training formats one)."""
    return Record(index=index, messages=[Message("user", text), Message("assistant", "")], line=line, alpaca=AlpacaFields(instruction=text))


def read_text(path: Path) -> str:
    """The prompts file's text; BadInput naming it (and the line of a byte that is not UTF-8)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"--prompts {path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"--prompts {path}: is a folder; give a text file (one prompt a line) or JSON/JSONL Alpaca records") from None
    except OSError as err:
        raise BadInput(f"--prompts {path}: cannot be read ({err.strerror})") from None
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BadInput(f"--prompts {path} line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); re-save it as UTF-8") from None


def json_items(text: str, path: Path) -> list[tuple[str, Any, int | None]]:
    """(where, value, line) of each item of a JSON list, or of each non-blank line of JSONL."""
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadInput(f"--prompts {path} line {err.lineno}: invalid JSON ({err.msg})") from None
        return [(f"record {n}", value, None) for n, value in enumerate(values, start=1)]
    items = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {number}", json.loads(line), number))
        except json.JSONDecodeError as err:
            raise BadInput(f"--prompts {path} line {number}: invalid JSON at column {err.colno} ({err.msg}); one Alpaca record a line") from None
    return items


def prompt_from(value: Any, index: int, where: str, line: int | None, path: Path) -> Prompt:
    """A JSON item as a Prompt: a string, or an Alpaca record (instruction, input, system, history; output optional)."""
    from gpudoctor.data.load import record_from_dict

    named = f"--prompts {path} {where}"
    if isinstance(value, str):
        if not value.strip():
            raise BadInput(f"{named}: an empty prompt; remove it")
        return Prompt(bare_record(value, index, line), where)
    if not isinstance(value, dict) or "instruction" not in value:
        found = f"keys {', '.join(map(str, value))}" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
        raise BadInput(f"{named}: found {found}; expected a prompt string or an Alpaca record with 'instruction'")
    record = record_from_dict("alpaca", {"output": "", **value}, index, named)
    record.line = line
    if not record.alpaca or not record.alpaca.instruction.strip():
        raise BadInput(f"{named}: 'instruction' is empty; give the prompt there")
    return Prompt(record, where)


def read_prompts(path: Path) -> list[Prompt]:
    """The prompts of a user's file: one a line (blank lines skipped), or JSON/JSONL Alpaca records."""
    text = read_text(path)
    as_json = path.suffix.lower() in JSON_SUFFIXES or (path.suffix.lower() != ".txt" and text.lstrip()[:1] in ("[", "{"))
    if as_json:
        items = json_items(text, path)
        prompts = [prompt_from(value, index, where, line, path) for index, (where, value, line) in enumerate(items)]
    else:
        lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        prompts = [Prompt(bare_record(line, index, n), f"line {n}") for index, (n, line) in enumerate(lines)]
    if not prompts:
        raise BadInput(f"--prompts {path}: holds no prompts; write one prompt a line, or JSON/JSONL Alpaca records")
    return prompts


# Prompts from the run's validation split.


def validation_prompts(folder: Path) -> tuple[list[Prompt], list[str]]:
    """The records the run held out for validation, in file order, found again as `train` chose them;
    and notes (the data changed since). BadInput when the run held none out or its data is gone."""
    from gpudoctor.data.load import load_dataset
    from gpudoctor.plan.runconfig import read_run_config
    from gpudoctor.train import runfolder
    from gpudoctor.train.run import split_eval

    run_yaml = folder / "run.yaml"
    if not run_yaml.is_file():
        raise BadInput(f"--adapter {folder}: no run.yaml, so its validation split is unknown; pass --prompts FILE")
    config = read_run_config(run_yaml)
    val_size, seed, data = config.training.val_size, config.training.seed, Path(str(config.data or ""))
    if val_size <= 0:
        raise BadInput(f"{run_yaml}: the run held out no validation records (val_size 0); pass --prompts FILE")
    if not data.is_file():
        raise BadInput(f"{run_yaml}: its data {data} is gone, so its validation records cannot be read; pass --prompts FILE")
    record, notes = runfolder.read_data_record(folder) or {}, []
    if record.get("sha256") and record["sha256"] != runfolder.sha256_of(data):
        notes.append(f"{data} changed since training: the validation records were chosen again from the file as it is now")
    dataset = load_dataset(data)
    order = record.get("order") or {}
    samples = training_samples(folder, config, dataset, truncate=bool(order.get("truncate")))
    _, held = split_eval(samples, val_size, seed, str(data))
    numbers = sorted(sample.record for sample in held)
    return [Prompt(dataset.records[n - 1], f"record {n}") for n in numbers], notes


def training_samples(folder: Path, config: Any, dataset: Any, *, truncate: bool) -> list[Any]:
    """The samples `train` split, from its token cache in the run folder (tokenized again when it is gone)."""
    from gpudoctor.train.model import load_tokenizer, resolve_model_dir
    from gpudoctor.train.tokenize import tokenize_cached

    try:
        model_dir = resolve_model_dir(str(config.model))
    except BadInput:
        model_dir = folder  # the base moved: the run folder's own copy of its tokenizer
    tokenizer = load_tokenizer(folder if (folder / "tokenizer_config.json").is_file() else model_dir)
    tokenized = tokenize_cached(dataset, tokenizer, str(model_dir), config.settings.seq_len, truncate=truncate, cache_dir=folder / "cache")
    return tokenized.samples


# Answering.


def prompt_text(prompt: Prompt, tokenizer: Any) -> str:
    """The text the model sees before its reply: the record's segments before its last reply, as training joins them."""
    from gpudoctor.train.formatting import segments_for

    segments = segments_for(prompt.record, tokenizer, prompt.where)
    last = max((i for i, (_, trainable) in enumerate(segments) if trainable), default=len(segments))
    return "".join(text for text, _ in segments[:last])


def answer_both(bot: Any, prompts: list[Prompt], *, max_new_tokens: int, seed: int, tick: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Each prompt answered by the base (adapter off) and the tuned model, greedy, the seed set before each answer."""
    import torch

    answers = []
    for prompt in prompts:
        text = prompt_text(prompt, bot.tokenizer)
        torch.manual_seed(seed)
        with bot.model.disable_adapter():
            base = bot.complete(text, max_new_tokens)
        torch.manual_seed(seed)
        tuned = bot.complete(text, max_new_tokens)
        answers.append({"where": prompt.where, "prompt": prompt.shown, "reference": prompt.reference, "base": base, "tuned": tuned})
        tick()
    return answers


def check_request(request: CompareRequest) -> None:
    from gpudoctor.train.generate import check_adapter_file

    check_adapter_file(request.adapter)
    if request.max_new_tokens < 1:
        raise BadInput(f"--max-new-tokens {request.max_new_tokens}: must be at least 1")
    if request.max_prompts < 1:
        raise BadInput(f"--max-prompts {request.max_prompts}: must be at least 1")


def compare(request: CompareRequest, say: Callable[[str], None] = print, tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Answer the prompts with the base and with the adapter; write compare.json and report.html in the run folder."""
    from gpudoctor.train.generate import REPETITION_PENALTY, load_chatbot
    from gpudoctor.train.report_html import write_report_html

    started = time.perf_counter()
    check_request(request)
    folder = request.adapter
    if request.prompts is not None:
        prompts, notes = read_prompts(request.prompts), []
        source = f"{request.prompts} ({len(prompts)} prompts)"
    else:
        prompts, notes = validation_prompts(folder)
        source = f"the run's validation split ({len(prompts)} held-out records)"
    if len(prompts) > request.max_prompts:
        notes.append(f"the first {request.max_prompts} of {len(prompts)} prompts (--max-prompts)")
        prompts = prompts[: request.max_prompts]
    say(f"compare: {len(prompts)} prompts from {source}, each answered by the base and by the adapter")
    bot = load_chatbot(folder)
    answers = answer_both(bot, prompts, max_new_tokens=request.max_new_tokens, seed=request.seed, tick=tick)
    result = {
        "adapter": str(folder), "prompts_from": source, "decoding": f"greedy, repetition penalty {REPETITION_PENALTY:g}",
        "max_new_tokens": request.max_new_tokens, "seed": request.seed, "prompts": len(answers),
        "differ": sum(a["base"] != a["tuned"] for a in answers), "seconds": round(time.perf_counter() - started, 2),
        "notes": notes, "answers": answers,
    }  # fmt: skip
    write_json(folder / COMPARE_FILE, result)
    write_report_html(folder)
    return result
