"""Find out what a SOURCE is (mbox file, Maildir, folder of .eml files, one .eml) and yield its messages' bytes.

A SOURCE that does not exist or is not mail is one BadInput line; a message that cannot be read is
yielded as None, to be counted, never raised.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from pathlib import Path

from gpudoctor.errors import BadInput

HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]{1,76}:")


def kind_of(path: Path) -> str:
    """'mbox', 'maildir', 'eml folder' or 'eml'; BadInput when `path` is none of them."""
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder; give an mbox file, a Maildir or a folder of .eml files")
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return "maildir"
        if any(path.rglob("*.eml")):
            return "eml folder"
        raise BadInput(f"{path}: is a folder with neither a Maildir (cur/ and new/) nor .eml files")
    try:
        with path.open("rb") as handle:
            start = handle.read(1024)
    except OSError as err:
        raise BadInput(f"{path}: cannot be read ({err.strerror})") from None
    if start.startswith(b"From "):
        return "mbox"
    if HEADER_LINE.match(start.lstrip(b"\r\n")):
        return "eml"
    raise BadInput(f"{path}: is not mail (an mbox starts with 'From ', an .eml with headers); give an mbox file, a Maildir or a folder of .eml files")


def messages(path: Path, kind: str) -> Iterator[tuple[str, bytes | None]]:
    """(where, bytes or None) for each message in the source, in file order."""
    if kind in ("eml", "eml folder"):
        files = [path] if kind == "eml" else sorted(path.rglob("*.eml"))
        for file in files:
            try:
                yield str(file), file.read_bytes()
            except OSError:
                yield str(file), None
        return
    try:
        box: mailbox.Mailbox = mailbox.mbox(path, create=False) if kind == "mbox" else mailbox.Maildir(path, factory=None, create=False)
        keys = list(box.iterkeys()) if kind == "mbox" else sorted(box.iterkeys())
    except (OSError, mailbox.Error) as err:
        raise BadInput(f"{path}: cannot be read as {kind} ({err})") from None
    for number, key in enumerate(keys, start=1):
        where = f"{path} message {number}" if kind == "mbox" else f"{path} {key}"
        try:
            yield where, box.get_bytes(key)
        except (OSError, KeyError, mailbox.Error):
            yield where, None
