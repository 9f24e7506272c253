"""Recognisers for personal data with a fixed shape: e-mails, phones, cards, IP addresses, ids.

Each returns (start, end, kind, detail) tuples. Cards, Chinese ids and IBANs must pass their
checksums, so ordinary numbers are left alone; phones come from Google's libphonenumber.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import phonenumbers

Hit = tuple[int, int, str, str]

# Regions whose national formats are recognised; "+CC ..." international numbers match anywhere.
PHONE_REGIONS = ("US", "GB", "CN", "DE", "FR", "IT", "ES", "NL", "IN", "AU")

# Boundaries are ASCII-only ((?<![A-Za-z0-9]) rather than \b): in "请联系a@163.com" the Chinese
# character before the address is a word character to \b.
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")
DIGIT_RUN = re.compile(r"\+?\(?\d(?:[\s().\-/]{0,3}\d){6,}")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
IPV6 = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:])"
)
US_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")


def emails(text: str) -> Iterator[Hit]:
    if "@" not in text:
        return
    for m in EMAIL.finditer(text):
        yield m.start(), m.end(), "EMAIL", "email"


def phones(text: str, regions: tuple[str, ...] = PHONE_REGIONS) -> Iterator[Hit]:
    if not DIGIT_RUN.search(text):  # libphonenumber is slow: skip texts without 7 digits in a row
        return
    seen: set[tuple[int, int]] = set()
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            span = (match.start, match.end)
            inside_number = text[max(0, match.start - 2) : match.start][-1:] in (".", ",") and text[
                max(0, match.start - 2) : match.start
            ][:1].isdigit()
            if span not in seen and not inside_number and _phone_like(match.raw_string):
                seen.add(span)
                yield match.start, match.end, "PHONE", "phone"


YEAR_RANGE = re.compile(r"^\(?\d{4}\s*[-\u2013/]\s*\d{4}\)?$")
DECIMAL = re.compile(r"^\(?-?\d+[.,]\d+$")


def _phone_like(raw: str) -> bool:
    """Drop what libphonenumber's lenient mode accepts but people write for other things."""
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or YEAR_RANGE.match(raw) or DECIMAL.search(raw) or "  " in raw:  # "  " : a table row
        return False
    if raw.isdigit() and digits < 10:  # a bare 7-9 digit number is a quantity more often than a phone
        return False
    return True


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


CARD_HINT = re.compile(r"\d{4}[ -]?\d{4}")


def cards(text: str) -> Iterator[Hit]:
    if not CARD_HINT.search(text):
        return
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits):
            yield m.start(), m.end(), "CARD", "payment card (Luhn)"


def ips(text: str) -> Iterator[Hit]:
    if "." in text:
        for m in IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield m.start(), m.end(), "IP", "IPv4"
    if text.count(":") >= 2:
        for m in IPV6.finditer(text):
            candidate = m.group().split("%")[0]
            if candidate.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield m.start(), m.end(), "IP", "IPv6"


def cn_id_ok(value: str) -> bool:
    """GB 11643-1999: ISO 7064 MOD 11-2 check character."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(value[:17], weights))
    return "10X98765432"[total % 11] == value[17].upper()


def iban_ok(value: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = value.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


ID_HINT = re.compile(r"\d{3}[- ]\d{2}[- ]\d{4}|\d{17}|[A-Z]{2} ?\d{2}")


def national_ids(text: str) -> Iterator[Hit]:
    if not ID_HINT.search(text):
        return
    for m in US_SSN.finditer(text):
        yield m.start(), m.end(), "ID", "US SSN"
    for m in UK_NINO.finditer(text):
        yield m.start(), m.end(), "ID", "UK NINO"
    for m in CN_ID.finditer(text):
        if cn_id_ok(m.group()):
            yield m.start(), m.end(), "ID", "Chinese resident id"
    for m in IBAN.finditer(text):
        if iban_ok(m.group()):
            yield m.start(), m.end(), "ID", "IBAN"
