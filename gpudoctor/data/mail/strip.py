"""A message body → its own new text and the text it quotes.

mail-parser-reply finds where the quoted original starts (Gmail/Apple "On … wrote:", Outlook's
"-----Original Message-----" and "From: … Sent: …" blocks, their German, French, Spanish and Chinese
forms) and proposes a signature. On top of it, a few rules of our own, each for something it misses
(tests/data/test_import_mail.py has a case for each):
- Spanish "El … escribió:" with one space before "escribió" (its pattern wants two), and Chinese
  "…写道：" lines that do not start with the date ("在 2024年3月4日…", "Bob <…> 于2024年…写道：");
- its signature is taken only when it looks like one (a "-- " line, a "Sent from my …" line, or a short
  sign-off line such as "Best regards," with at most a few short lines after it): its own rule cuts at
  any line starting "Thanks," or "Viele Grüße", which would drop the body of many replies;
- its keep_hyphen_lists switch is on: by default it takes any line starting "- " for a "-Name" signature
  and drops bullet lists with everything after them;
- mobile footers it does not know ("Von meinem iPhone gesendet", "Envoyé de mon iPhone");
- "> " lines without an attribution line are quoted text too, and a reply that starts with the attribution
  and answers between the quoted lines keeps its answers;
- its disclaimers ("CAUTION: This email originated …") go, as its own `body` drops them;
- a "From: … To: …" block with no address and no time in it is body text ("From: Berlin\nTo: Munich");
- lines longer than LONG_LINE are hidden from it (its "On … wrote:" pattern is cubic in a line's length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailparser_reply.parser import EmailMessage

LANGUAGES = ("en", "de", "fr", "es", "zh")  # not "ja": its empty "sent from" pattern matches any short line
LONG_LINE = 400
OUR_HEADER = re.compile(  # with a date, a time or an address in the line: "El cliente escribió:" is body text
    r"^(?=[^\n]*\d)(?=[^\n]*(?:@|年|\d:\d))(?:> ?)*(?:El\s[^\n]+\sescribió\s?:|[^\n]{0,300}?写道\s?[：:])[ \t]*$", re.MULTILINE
)
MOBILE = re.compile(
    r"^(?:Sent from my|Get Outlook for|Gesendet von|Von meinem [^\n,.;!?]{1,40} gesendet|Envoyé de mon|Envoyé depuis"
    r"|Enviado desde mi|从我的.{1,20}发送|发自我的)[^\n,;!?]{0,60}$",
    re.MULTILINE | re.IGNORECASE,
)
SIGN_OFF = re.compile(r"^[^\W\d_][\w \t'’/&.-]{0,40}[,，!]?$")
SENTENCE_INSIDE = re.compile(r"[.!?。！？]\s*\S")
HEADER_FIELD = re.compile(r"(?m)^[*> ]*[^\s:]{1,20} ?:")


@dataclass
class Split:
    new: str  # the message's own text: no quotes, no signature
    quoted: str  # what it quotes, attribution line gone and one level of "> " removed


def split_reply(text: str) -> Split:
    """Split a plain-text body into its own new text and the quoted original."""
    text = "\n".join(line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    text, hidden = _hide_long_lines(text)
    ours = OUR_HEADER.search(text)
    cut = ours.start() if ours else len(text)
    parsed = _parse(text[:cut])
    first = parsed.replies[0] if parsed.replies else None
    new = first.content if first is not None and not first.headers else ""
    if first is not None and not first.headers and first.signatures and _is_signature(first.signatures):
        new = new[: new.rfind(first.signatures)]
    for disclaimer in first.disclaimers if first is not None and not first.headers else []:
        new = new.replace(disclaimer, "")  # "CAUTION: This email originated from outside …"
    quoted = ""
    headers = [r.headers for r in parsed.replies if r.headers]
    if headers:
        quoted = parsed.text[parsed.text.find(headers[0]) + len(headers[0]):].lstrip()
        if len(headers) > 1 and quoted.startswith(headers[1]):  # "-----Original Message-----" then "From: … Sent: …"
            quoted = quoted[len(headers[1]):]
        quoted += "\n" + text[cut:]
    elif ours:
        quoted = text[ours.end():]
    if not new.strip() and quoted:
        new, quoted = _answers_below(quoted)
    new = re.split(r"(?m)^--[ \t]*$", new)[0]  # the "-- " signature delimiter, wherever the library stopped
    new = MOBILE.sub("", new)
    quote_lines = [line for line in new.split("\n") if line.startswith(">")]
    if quote_lines:
        new = "\n".join(line for line in new.split("\n") if not line.startswith(">"))
        quoted = quoted or "\n".join(quote_lines)
    quoted = re.sub(r"(?m)^> ?", "", quoted)
    return Split(new=_tidy(_restore(new, hidden)), quoted=_tidy(_restore(quoted, hidden)))


def _answers_below(rest: str) -> tuple[str, str]:
    """A reply that starts with the attribution and answers between "> " lines: (its lines, the quoted ones)."""
    lines = rest.split("\n")
    quoted = [line for line in lines if line.startswith(">")]
    if not quoted or not any(line and not line.startswith(">") for line in lines):
        return "", rest
    return "\n".join(line for line in lines if not line.startswith(">")), "\n".join(quoted)


def _parse(text: str) -> EmailMessage:
    """mail-parser-reply's reading, except that a "From: … To: …" block with neither an address nor a time
    in it ("From: Berlin\nTo: Munich" in an itinerary) is text, not the start of a quoted original."""
    for _ in range(5):
        parsed = EmailMessage(text=text, languages=list(LANGUAGES), keep_hyphen_lists=True).read()
        header = next((r.headers for r in parsed.replies if r.headers), "")
        if len(HEADER_FIELD.findall(header)) < 2 or re.search(r"@|\d{1,2}:\d{2}", header):
            break
        text = text.replace(header, HEADER_FIELD.sub(lambda m: m.group(0)[:-1] + "\u2060:", header))
    parsed.text = parsed.text.replace("\u2060", "")
    for reply in parsed.replies:
        reply.content, reply.headers = reply.content.replace("\u2060", ""), reply.headers.replace("\u2060", "")
        reply.signatures = reply.signatures.replace("\u2060", "")
    return parsed


def _is_signature(block: str) -> bool:
    lines = [line.strip() for line in block.split("\n") if line.strip()]
    if not lines:
        return False
    first = lines[0].lstrip("> ")
    if first in ("--", "__") or MOBILE.match(first):
        return True
    short = first.endswith((",", "，")) or len(first.split()) <= 3
    return bool(SIGN_OFF.match(first)) and short and not SENTENCE_INSIDE.search(first) and len(lines) <= 6 and all(
        len(line) <= 80 for line in lines[1:]
    )


def _hide_long_lines(text: str) -> tuple[str, list[str]]:
    hidden: list[str] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if len(line) > LONG_LINE:
            lines[i] = f"\ue000{len(hidden)}\ue001"
            hidden.append(line)
    return "\n".join(lines), hidden


def _restore(text: str, hidden: list[str]) -> str:
    if not hidden:
        return text
    return re.sub("\ue000(\\d+)\ue001", lambda m: hidden[int(m.group(1))], text)


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip()
