"""Thread the messages and build the records: each reply of mine with the message it answers.

The original is the message named by In-Reply-To (else the newest of References) found in the
sources; failing that, the text my reply quotes. Every message that does not become part of a
record is counted under one reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gpudoctor.data.mail.parse import AUTO, BULK, UNDECODABLE, Mail, parse_mail
from gpudoctor.data.mail.source import kind_of, messages
from gpudoctor.data.mail.strip import Split, split_reply
from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record
from gpudoctor.errors import BadInput

DEFAULT_INSTRUCTION = "Reply to this e-mail."
MAX_TEXT = 20_000  # characters of own text kept per message
MAX_TURNS = 50
NOT_MINE = "not from me"
NO_TEXT = "no text after removing quotes and signature"
NOT_FOUND = "original not found"
NOT_REPLY = "not a reply"
ORIGINAL_DROPPED = "original is an auto-reply, bulk mail or has no text"
TO_MYSELF = "replies to my own message"
DUPLICATE = "duplicate Message-ID"
REASONS = (NOT_MINE, AUTO, BULK, NO_TEXT, NOT_FOUND, NOT_REPLY, ORIGINAL_DROPPED, TO_MYSELF, DUPLICATE, UNDECODABLE)
CHAT_FORMATS = {"chat": "messages", "messages": "messages", "sharegpt": "sharegpt"}


@dataclass
class ImportResult:
    dataset: Dataset
    me: list[str]
    me_guessed: bool
    read: int = 0
    kinds: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    cut: int = 0
    charset_repaired: int = 0
    originals_used: int = 0


def read_all(sources: list[Path]) -> tuple[list[Mail], list[str]]:
    kinds = [kind_of(path) for path in sources]
    mails = [
        parse_mail(data, where, mbox=kind == "mbox") if data is not None else Mail(where=where, skip=UNDECODABLE)
        for path, kind in zip(sources, kinds)
        for where, data in messages(path, kind)
    ]
    return mails, kinds


def guess_me(mails: list[Mail]) -> str:
    """The most frequent sender (auto-replies and list mail aside); a tie goes to the one who replies more."""
    senders = Counter(m.sender for m in mails if m.sender and not m.skip)
    replying = Counter(m.sender for m in mails if m.sender and not m.skip and m.parents)
    if not senders:
        raise BadInput("no message in the sources has a From address (auto-replies and list mail aside); give --me ADDRESS")
    return max(senders, key=lambda sender: (senders[sender], replying[sender]))


def import_mail(sources: list[Path], *, me: list[str] | None = None, fmt: str = "alpaca", instruction: str | None = None) -> ImportResult:
    """Read the sources and build Alpaca pairs (fmt 'alpaca') or whole threads ('chat'/'messages', 'sharegpt')."""
    if fmt != "alpaca" and fmt not in CHAT_FORMATS:
        raise BadInput(f"--format {fmt}: choose alpaca, chat (messages) or sharegpt")
    mails, kinds = read_all(sources)
    addresses = [a.strip().lower() for a in me or [] if a.strip()]
    result = ImportResult(
        dataset=Dataset(path=str(sources[0]), format=CHAT_FORMATS.get(fmt, "alpaca"), container="json"),
        me=addresses or [guess_me(mails)], me_guessed=not addresses, read=len(mails), kinds=kinds,
    )
    threads = _Threads(mails, set(result.me), result)
    chains = threads.chains()
    if fmt == "alpaca":
        records = [_alpaca(chain[-2], chain[-1], instruction or DEFAULT_INSTRUCTION, i) for i, chain in enumerate(chains)]
    else:
        records = [_chat(chain, instruction, i) for i, chain in enumerate(_longest(chains))]
    result.dataset.records = records
    result.originals_used = len({c[-2].key for c in chains})
    result.cut += sum(m.cut for m in mails)
    result.charset_repaired = sum(m.charset_repaired for m in mails)
    return result


@dataclass
class _Turn:
    mine: bool
    text: str
    key: int  # identity of the message it came from (quoted originals: negative)


class _Threads:
    """Message-ID index, each message's own text (computed once) and the chain of turns above a reply."""

    def __init__(self, mails: list[Mail], me: set[str], result: ImportResult) -> None:
        self.mails, self.me, self.result = mails, me, result
        self.by_id: dict[str, Mail] = {}
        self.splits: dict[int, Split] = {}
        self.duplicates: set[int] = set()
        for mail in mails:
            if mail.message_id and mail.message_id in self.by_id:
                self.duplicates.add(id(mail))
            elif mail.message_id and not mail.skip:
                self.by_id[mail.message_id] = mail

    def split(self, mail: Mail) -> Split:
        if id(mail) not in self.splits:
            split = split_reply(mail.text)
            if len(split.new) > MAX_TEXT:
                split.new, mail.cut = split.new[:MAX_TEXT], True
            self.splits[id(mail)] = split
        return self.splits[id(mail)]

    def text(self, mail: Mail) -> str:
        return self.split(mail).new

    def quoted(self, mail: Mail) -> str:
        """The own text of the message that `mail` quotes ('' when it quotes nothing)."""
        quoted = self.split(mail).quoted
        return split_reply(quoted).new[:MAX_TEXT] if quoted else ""

    def parent(self, mail: Mail) -> Mail | None:
        return next((self.by_id[p] for p in mail.parents if p in self.by_id and p != mail.message_id), None)

    def chains(self) -> list[list[_Turn]]:
        """For each usable reply of mine: the turns from the thread's start down to it."""
        chains = []
        for mail in self.mails:
            reason = self._reason(mail)
            if reason:
                self.result.skipped[reason] += 1
                continue
            chains.append(self._chain(mail))
        return chains

    def _reason(self, mail: Mail) -> str:
        if id(mail) in self.duplicates:
            return DUPLICATE
        if mail.skip:
            return mail.skip
        if mail.sender not in self.me:
            return NOT_MINE
        if not self.text(mail):
            return NO_TEXT
        parent = self.parent(mail)
        if parent is None:
            if self.quoted(mail):
                return ""
            return NOT_FOUND if mail.parents else NOT_REPLY
        if parent.sender in self.me:
            return TO_MYSELF
        return "" if self.text(parent) else ORIGINAL_DROPPED

    def _chain(self, mail: Mail) -> list[_Turn]:
        turns = [_Turn(True, self.text(mail), id(mail))]
        seen = {id(mail)}
        current = self.parent(mail)
        if current is None:
            return [_Turn(False, self.quoted(mail), -id(mail)), *turns]
        while current is not None and id(current) not in seen and len(turns) < MAX_TURNS:  # References may loop
            seen.add(id(current))
            if self.text(current):
                turns.insert(0, _Turn(current.sender in self.me, self.text(current), id(current)))
            current = self.parent(current)
        return turns


def _alpaca(original: _Turn, reply: _Turn, instruction: str, index: int) -> Record:
    fields = AlpacaFields(instruction=instruction, input=original.text, output=reply.text)
    prompt = instruction + "\n\n" + original.text
    return Record(index=index, messages=[Message("user", prompt), Message("assistant", reply.text)], alpaca=fields)


def _longest(chains: list[list[_Turn]]) -> list[list[_Turn]]:
    """Drop a chain that is the start of another one: the longer thread holds it."""
    prefixes = {tuple(t.key for t in chain[:n]) for chain in chains for n in range(1, len(chain))}
    return [chain for chain in chains if tuple(t.key for t in chain) not in prefixes]


def _chat(chain: list[_Turn], system: str | None, index: int) -> Record:
    messages: list[Message] = [Message("system", system)] if system else []
    for turn in chain:
        role = "assistant" if turn.mine else "user"
        if len(messages) > (1 if system else 0) and messages[-1].role == role:
            messages[-1] = Message(role, messages[-1].content + "\n\n" + turn.text)
        elif role == "user" or len(messages) > (1 if system else 0):
            messages.append(Message(role, turn.text))
    return Record(index=index, messages=messages)
