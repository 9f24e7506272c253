"""Turn a Record into text segments marked trainable or not: the chat template, else the Alpaca prompt.

A segment is (text, trainable). Only the assistant's replies are trainable by default, so the
loss counts response tokens only. Tokenizing the joined text once and mapping character spans
to tokens keeps the tokens identical to what the model sees at inference.
"""

from __future__ import annotations

import json
from typing import Any

from gpudoctor.data.records import Message, Record
from gpudoctor.errors import BadInput

# The Stanford Alpaca prompt (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT).
ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
ALPACA_PREAMBLE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)

Segment = tuple[str, bool]


def alpaca_prompt(instruction: str, input_text: str = "", system: str = "") -> str:
    """The text before the response, exactly as training formats it (used by `chat` too)."""
    preamble = system or (ALPACA_PREAMBLE_INPUT if input_text else ALPACA_PREAMBLE)
    body = f"### Instruction:\n{instruction}\n\n"
    if input_text:
        body += f"### Input:\n{input_text}\n\n"
    return f"{preamble}\n\n{body}### Response:\n"


def alpaca_segments(record: Record, eos: str) -> list[Segment]:
    """Alpaca prompt; multi-turn records repeat Instruction/Response blocks. Each reply ends with EOS."""
    system = next((m.content for m in record.messages if m.role == "system"), "")
    turns = [m for m in record.messages if m.role != "system"]
    fields = record.alpaca
    if fields is not None and len(turns) == 2:
        prompt = alpaca_prompt(fields.instruction, fields.input, fields.system or system)
        return [(prompt, False), (turns[1].content + eos, True)]
    segments: list[Segment] = []
    first = True
    for message in turns:
        if message.role == "assistant":
            segments.append((message.content + eos, True))
            continue
        label = "Instruction" if message.role == "user" else "Tool output"
        prefix = f"{system or ALPACA_PREAMBLE}\n\n" if first else "\n\n"
        segments.append((f"{prefix}### {label}:\n{message.content}\n\n### Response:\n", False))
        first = False
    return segments


def _template_messages(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def chat_template_segments(record: Record, tokenizer: Any, source: str) -> list[Segment]:
    """Render with the tokenizer's chat template; each assistant turn's added text is trainable.

    The text an assistant turn adds is render(turns ≤ k) minus render(turns < k, generation prompt),
    which holds for templates whose renders are prefixes of each other (the common case).
    """
    messages = _template_messages(record.messages)
    tools = json.loads(record.tools) if record.tools else None

    def render(upto: int, generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                messages[:upto], tools=tools, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as err:  # jinja raises its own TemplateError for unsupported roles/orders
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise BadInput(f"{source}: record {record.number}: the model's chat template rejects it ({first_line})") from None

    segments: list[Segment] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(k, True)
        full = render(k + 1, False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise BadInput(
                f"{source}: record {record.number}: the model's chat template does not render turns as prefixes; "
                "train with the Alpaca prompt by removing chat_template from tokenizer_config.json"
            )
        segments.append((prompt[len(done) :], False))
        segments.append((full[len(prompt) :], True))
        done = full
    return segments


def segments_for(record: Record, tokenizer: Any, source: str) -> list[Segment]:
    if getattr(tokenizer, "chat_template", None):
        return chat_template_segments(record, tokenizer, source)
    return alpaca_segments(record, tokenizer.eos_token or "")
