"""Turn a mailbox (mbox, Maildir, a folder of .eml files) into training pairs: each reply you sent and the
message it answers, as plain text with quotes and signatures removed (`gpudoctor data import-mail`).

source.py finds and reads the messages, parse.py turns one into headers and body text, strip.py removes
quoted text and signatures, build.py threads the messages and writes the records.
"""

from __future__ import annotations

from gpudoctor.data.mail.build import ImportResult, import_mail

__all__ = ["ImportResult", "import_mail"]
