"""Token lengths per record: exact with a model's tokenizer.json, else a stated approximation.

Exact counts use the `tokenizers` library (Rust, no torch): the record is rendered with the
model's chat template when tokenizer_config.json has one (jinja2, sandboxed), otherwise its
message texts are encoded and TEMPLATE_TOKENS_PER_MESSAGE added for the role markers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpudoctor.data.records import Dataset, Record
from gpudoctor.errors import BadInput
from gpudoctor.types import ModelSpec

# Role markers and separators a chat template adds per message, e.g. ChatML's
# "<|im_start|>user\n" ... "<|im_end|>\n" (5 tokens); Llama-3 adds 5, Mistral's [INST] ~4.
TEMPLATE_TOKENS_PER_MESSAGE = 5

# Measured on the public demo sets with a 65k-vocab byte-level BPE tokenizer (the legacy Claude
# tokenizer.json): English 4.5 and tool-call JSON 4.3 characters per token, Chinese 1.23 tokens
# per CJK character. Rounded towards more tokens, since the planner sizes memory from these.
CHARS_PER_TOKEN = 4.0
TOKENS_PER_CJK_CHAR = 1.25
APPROXIMATION = (
    f"approximation: {CHARS_PER_TOKEN:g} characters per token, {TOKENS_PER_CJK_CHAR:g} tokens per CJK character, "
    f"+{TEMPLATE_TOKENS_PER_MESSAGE} per message"
)


@dataclass
class DataStats:
    """What the planner needs to know about a dataset: one token count per record."""

    path: str
    records: int
    token_lengths: list[int]  # prompt + response tokens per record
    tokenizer: str  # "tokenizer.json of <path>" or "approximation: <rule>"
    format: str | None = None  # "alpaca" | "sharegpt" | "messages": how the file is laid out


CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")


def record_text(record: Record) -> str:
    """All the text a record trains on, tools included, joined by newlines."""
    parts = [record.tools] if record.tools else []
    return "\n".join(parts + [m.content for m in record.messages])


CJK_RUN = re.compile(CJK.pattern + "+")  # runs of CJK characters: far fewer matches to build than one per character


def approximate_tokens(text: str) -> int:
    cjk = 0 if text.isascii() else sum(map(len, CJK_RUN.findall(text)))
    return round((len(text) - cjk) / CHARS_PER_TOKEN + cjk * TOKENS_PER_CJK_CHAR)


def compute_stats(dataset: Dataset, tokenizer_path: str | None = None) -> DataStats:
    """One token count per record (prompt + response, template included)."""
    if tokenizer_path is None:
        lengths = [
            approximate_tokens(record_text(r)) + TEMPLATE_TOKENS_PER_MESSAGE * len(r.messages) for r in dataset.records
        ]
        return DataStats(dataset.path, len(dataset.records), lengths, APPROXIMATION, dataset.format)
    counter = load_counter(tokenizer_path)
    return DataStats(dataset.path, len(dataset.records), counter.count(dataset.records), counter.description, dataset.format)


def stats_for_model(path: str, model: ModelSpec) -> DataStats:
    """Token lengths of a dataset file, counted with the model folder's tokenizer.json when it has one."""
    from gpudoctor.data.load import load_dataset

    tokenizer = None
    if model.local_path is not None and (Path(model.local_path) / "tokenizer.json").is_file():
        tokenizer = str(Path(model.local_path))
    return compute_stats(load_dataset(path), tokenizer)


@dataclass
class TokenCounter:
    description: str
    encode_batch: Callable[[list[str]], list[int]]
    render: Callable[[Record], str] | None  # the chat template, when the model has one

    def count(self, records: list[Record]) -> list[int]:
        if self.render is not None:
            return self.encode_batch([self.render(r) for r in records])
        lengths = self.encode_batch([record_text(r) for r in records])
        return [n + TEMPLATE_TOKENS_PER_MESSAGE * len(r.messages) for n, r in zip(lengths, records)]


def load_counter(tokenizer_path: str) -> TokenCounter:
    """A counter from a model folder (tokenizer.json [+ tokenizer_config.json]) or a tokenizer.json file."""
    path = Path(tokenizer_path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no tokenizer.json" if path.is_dir() else f"{path}: no such file"
        raise BadInput(f"{where}; give a model folder with tokenizer.json, or leave the model out for an approximation")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BadInput("exact token counts need the 'tokenizers' package: pip install tokenizers") from None
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as err:  # the Rust side raises a bare Exception with its own message
        raise BadInput(f"{file}: not a tokenizer.json the tokenizers library can read ({str(err).splitlines()[0]})") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def encode_batch(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    render = _chat_template(file.parent / "tokenizer_config.json")
    how = "chat template" if render else f"+{TEMPLATE_TOKENS_PER_MESSAGE} per message for the template"
    return TokenCounter(description=f"tokenizer.json of {file.parent} ({how})", encode_batch=encode_batch, render=render)


def _chat_template(config_path: Path) -> Callable[[Record], str] | None:
    """Render records with the model's chat template, as transformers would; None when unusable."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str):
            return None
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        compiled = env.from_string(template)
        specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    except Exception:  # no config, bad JSON, no jinja2 or a template jinja2 cannot compile
        return None

    def render(record: Record) -> str:
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in record.messages]
        try:
            return compiled.render(messages=messages, add_generation_prompt=False, **specials)
        except Exception:  # e.g. a template that rejects a system or tool role: count the plain text
            return record_text(record)

    return render


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # AddedToken serialised as {"content": "<s>", ...}
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


def find_tokenizer(model: str) -> str | None:
    """The tokenizer.json for `model` (a folder, a tokenizer.json, a profile id or a hub id) if it is on
    this machine: in the folder, or in the Hugging Face cache. None means: use the approximation."""
    from gpudoctor.resources import hf_hub_cache

    path = Path(model).expanduser()
    if path.is_file():
        return str(path) if path.name == "tokenizer.json" else find_tokenizer(str(path.parent))
    if path.is_dir():
        return str(path / "tokenizer.json") if (path / "tokenizer.json").is_file() else None
    hub_id = model if "/" in model else None
    if hub_id is None:
        from gpudoctor.profiles import load_model

        hub_id = load_model(model).hub_id
    if not hub_id:
        return None
    cache = hf_hub_cache()
    snapshots = cache / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/tokenizer.json"), key=lambda p: p.stat().st_mtime, reverse=True) if snapshots.is_dir() else []
    return str(found[0].parent) if found else None
