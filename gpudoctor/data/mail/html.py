"""HTML mail bodies as plain text, with the standard library's html.parser.

Block elements end lines, <br> breaks them, script/style/head are dropped, and text inside <blockquote>
(how Gmail, Apple Mail and Thunderbird quote in HTML) gets "> " prefixes so the quote stripper sees it
as quoted.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = {
    "p", "div", "table", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "hr", "section", "article", "header", "footer", "dl", "dt", "dd", "center", "address",
}
HIDDEN = {"script", "style", "head", "title", "template"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []  # (quote depth, text)
        self.line: list[str] = []
        self.depth = 0
        self.hidden = 0
        self.pre = 0

    def _end_line(self, *, blank: bool = False) -> None:
        """End the current line; `blank` (a <br> on an empty line, a </p>) also leaves one empty line."""
        raw = "".join(self.line)
        text = raw if self.pre else re.sub(r"[ \t\r\n\f\u00a0]+", " ", raw).strip()
        blank = blank or (not text and "\u00a0" in raw)  # <div>&nbsp;</div>: Outlook's empty line
        if text:
            self.lines.append((self.depth, text))
        if (blank or (self.pre and not text)) and self.lines and self.lines[-1][1]:
            self.lines.append((self.depth, ""))
        self.line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN:
            self.hidden += 1
        elif tag == "hr":
            self._end_line(blank=True)
        elif tag == "br":
            self._end_line(blank=not "".join(self.line).strip())
        elif tag in BLOCKS or tag == "blockquote":
            self._end_line()
            self.depth += tag == "blockquote"
            self.pre += tag == "pre"
        elif tag in ("td", "th") and self.line:
            self.line.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in BLOCKS or tag == "blockquote":
            self._end_line(blank=tag == "p")
            if tag == "blockquote":
                self.depth = max(0, self.depth - 1)
            self.pre = max(0, self.pre - (tag == "pre"))

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.pre:
            for i, piece in enumerate(data.split("\n")):
                if i:
                    self._end_line()
                self.line.append(piece)
        else:
            self.line.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body; lines inside <blockquote> start with "> " per level."""
    parser = _TextParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on badly broken markup; keep what was read
        pass
    parser._end_line()
    while parser.lines and not parser.lines[-1][1]:
        parser.lines.pop()
    lines = [("> " * depth + text).rstrip() if text else ">" * depth for depth, text in parser.lines]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
