"""Personal data in training text: find it (`find_pii`) and replace it with typed placeholders (`scrub`).

Kinds and their placeholders: EMAIL, PHONE, CARD, IP, ID (national ids, IBAN), NAME, ADDRESS.
Pattern kinds come from well-tested rules (libphonenumber, checksums); names and addresses from
shipped word lists and context rules, made stronger by the optional `nlp` extra (jieba).
"""

from __future__ import annotations

from gpudoctor.data.pii.find import KINDS, Span, find_pii, scan_texts, scanners_in_use

__all__ = ["KINDS", "Span", "find_pii", "scan_texts", "scanners_in_use"]
