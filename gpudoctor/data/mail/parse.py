"""One message's bytes → the headers that matter and its body as text, never raising.

Parsed with email.policy.default; when that chokes on a broken header or MIME structure, parsed again
with compat32, which accepts nearly anything. The body is the first text/plain part (else text/html,
converted), never an attachment or a part of an attached message. Charsets: bytes that are valid
UTF-8 are UTF-8 whatever the label says; else the declared charset (widened to the superset mail
clients really send: latin-1 → cp1252, gb2312 → gb18030); else cp1252, then latin-1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from gpudoctor.data.mail.html import html_to_text

MAX_PART_BYTES = 2_000_000  # a body part is read up to here
MAX_RAW_CHARS = 200_000  # the text handed to quote stripping
AUTO = "auto-reply"
BULK = "bulk or list mail"
UNDECODABLE = "undecodable"
WIDER = {
    "iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030", "cp936": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs",
}
MSG_ID = re.compile(r"<[^<>\s]+>")


@dataclass
class Mail:
    where: str
    message_id: str = ""
    parents: list[str] = field(default_factory=list)  # In-Reply-To first, then References newest first
    sender: str = ""  # lower-case address
    skip: str = ""  # AUTO, BULK or UNDECODABLE
    text: str = ""
    cut: bool = False
    charset_repaired: bool = False


def parse_mail(data: bytes, where: str, *, mbox: bool = False) -> Mail:
    """The Mail in `data`; a message neither parser can read is a Mail with skip=UNDECODABLE."""
    for chosen in (policy.default, policy.compat32):
        try:
            message = BytesParser(policy=chosen).parsebytes(data)
            return _mail(message, where, mbox)
        except Exception:  # noqa: BLE001 - the email package raises many kinds on broken input
            continue
    return Mail(where=where, skip=UNDECODABLE)


def _mail(message: Message, where: str, mbox: bool) -> Mail:
    if not message.keys():
        return Mail(where=where, skip=UNDECODABLE)
    ids = MSG_ID.findall(_header(message, "Message-ID"))
    references = MSG_ID.findall(_header(message, "References"))
    parents = MSG_ID.findall(_header(message, "In-Reply-To")) + references[::-1]
    senders = [address.lower() for _, address in getaddresses([_header(message, "From")]) if "@" in address]
    mail = Mail(where=where, message_id=ids[0] if ids else "", parents=parents, sender=senders[0] if senders else "")
    mail.skip = _automatic(message)
    text, mail.charset_repaired = _body(message)
    if mbox:  # mbox "From " escaping: ">From " (mboxo) or ">>From " (mboxrd) lines lose one ">"
        text = re.sub(r"(?m)^>(>*From )", r"\1", text)
    mail.cut = len(text) > MAX_RAW_CHARS
    mail.text = text[:MAX_RAW_CHARS]
    return mail


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _automatic(message: Message) -> str:
    submitted = _header(message, "Auto-Submitted").split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return AUTO
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return AUTO
    precedence = _header(message, "Precedence").strip().lower()
    if precedence == "auto_reply":
        return AUTO
    if precedence in ("bulk", "junk", "list") or message.get("List-Id") is not None or message.get("List-Unsubscribe") is not None:
        return BULK
    return ""


def _parts(part: Message):
    """Leaf parts, not descending into attached messages (message/rfc822)."""
    payload = part.get_payload()
    if part.is_multipart() and isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message) and sub.get_content_maintype() != "message":
                yield from _parts(sub)
    elif part.get_content_maintype() != "message":
        yield part


def _body(message: Message) -> tuple[str, bool]:
    """(text, whether the charset had to be guessed); attachments are skipped unread."""
    chosen: dict[str, Message] = {}
    for part in _parts(message):
        if part.get_content_disposition() == "attachment" or part.get_filename():
            continue
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html"):
            chosen.setdefault(kind, part)
    part = chosen.get("text/plain") or chosen.get("text/html")
    if part is None:
        return "", False
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return "", False
    text, repaired = decode(raw[:MAX_PART_BYTES], part.get_content_charset() or "")
    if part.get_content_type() == "text/html":
        return html_to_text(text), repaired
    if part.get_param("format", "").lower() == "flowed":
        text = unflow(text, delsp=part.get_param("delsp", "").lower() == "yes")
    return text.replace("\r\n", "\n").replace("\r", "\n"), repaired


def decode(raw: bytes, declared: str) -> tuple[str, bool]:
    """(text, whether the declared charset was missing-but-needed, unknown or wrong)."""
    declared = declared.strip().strip('"').lower()
    if declared.startswith(("utf-16", "utf-32")):
        try:
            return raw.decode(declared), False
        except (LookupError, UnicodeDecodeError):
            pass
    if raw.isascii():
        return raw.decode("ascii"), False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    for charset in (WIDER.get(declared, declared), "cp1252"):
        try:
            return raw.decode(charset), charset != WIDER.get(declared, declared)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return raw.decode("latin-1"), True


def unflow(text: str, *, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next line of the same quote depth."""
    out: list[tuple[int, str]] = []
    joining = False
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        body = body[1:] if body.startswith(" ") else body  # space-stuffing
        if joining and out and out[-1][0] == depth:
            out[-1] = (depth, out[-1][1] + body)
        else:
            out.append((depth, body))
        joining = body.endswith(" ") and body != "-- "
        if joining and delsp:
            out[-1] = (depth, out[-1][1][:-1])
    return "\n".join(">" * d + (" " if d and b else "") + b for d, b in out)
