"""The in-memory form of a training dataset, whatever file format it came from.

Every record becomes a list of chat messages; records that came from Alpaca also keep their
original fields, so the Alpaca prompt can be rebuilt for models without a chat template.
Record numbers shown to users are 1-based (`Record.number`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Message:
    role: str  # "system" | "user" | "assistant" | "tool" (ShareGPT function_call/observation map here)
    content: str
    origin: str = ""  # the role as the file spelled it ("function_call", "observation", "human", ...)


@dataclass
class AlpacaFields:
    instruction: str
    input: str = ""
    output: str = ""
    system: str = ""


@dataclass
class Record:
    index: int  # 0-based position in the file
    messages: list[Message]
    line: int | None = None  # 1-based line in a JSONL/CSV file
    alpaca: AlpacaFields | None = None
    tools: str | None = None  # ShareGPT "tools" JSON string, kept verbatim

    @property
    def number(self) -> int:
        """The 1-based record number used in every message to the user."""
        return self.index + 1


@dataclass
class Dataset:
    path: str
    format: str  # "alpaca" | "sharegpt" | "messages"
    container: str  # "json" | "jsonl" | "csv"
    records: list[Record] = field(default_factory=list)
