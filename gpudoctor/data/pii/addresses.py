"""Street addresses: house number + street name + street type (US/UK/EU-style), UK postcodes, Chinese addresses.

Rules, not a parser: an address without a house number and a street type word ("Main Street")
or a Chinese address without a road and number (路/街 … 号) is not caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Hit = tuple[int, int, str, str]

STREET_TYPES = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Way|Terrace|Close|Crescent"
    r"|Highway|Hwy|Parkway|Pkwy|Square|Sq|Circle|Cir|Trail|Row|Mews|Gardens|Grove|Hill|Walk"
)
STREET = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})?,?[ ]+(?:[A-Z][A-Za-z'.-]*[ ]+){{1,4}}(?:{STREET_TYPES})\b\.?"
    r"(?:,?[ ]+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|#)\.?[ ]*#?[\w-]+)?"
    r"(?:,[ ]*[A-Z][a-z]+(?:[ ][A-Z][a-z]+){0,2})?"  # city
    r"(?:,?[ ]*(?:[A-Z]{2}[ ]+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}))?"  # US state+ZIP or UK postcode
)
# European order: street name, then number ("Hauptstraße 12", "Rue de Rivoli 5" is rarer than "5 rue de Rivoli").
EU_STREET = re.compile(r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|gasse|weg|platz|allee|laan|straat|gracht|vej|gatan|väg)[ ]+\d{1,4}[a-z]?\b")
FR_STREET = re.compile(r"\b\d{1,4}(?:[ ]?bis)?,?[ ]+(?:rue|avenue|boulevard|place|chemin|allée|impasse|quai|via|viale|piazza|calle|avenida|plaza)[ ]+(?:[A-Za-zÀ-ÿ'-]+[ ]?){1,4}", re.IGNORECASE)
UK_POSTCODE = re.compile(r"\b(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b")
ZH_ADDRESS = re.compile(
    r"[\u4e00-\u9fff]{0,12}?(?:省|市|自治区|区|县|镇|乡)?[\u4e00-\u9fff]{1,12}?(?:路|街|大道|大街|巷|弄|胡同|里)"
    r"\s*\d+\s*(?:号|號)(?:\s*(?:[\dA-Za-z-]+\s*(?:楼|室|单元|栋|幢|层|号楼)))*"
)
ZH_LEAD = re.compile(r".*(?:住在|住址|地址|位于|寄到|送到|搬到|来到|是|在|：|:|，|。|、)")


ADDRESS_HINT = re.compile(r"\d{1,5}[A-Za-z]?,?[ ]+[A-Za-z]|[a-zäöüß][ ]+\d{1,4}\b|\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b")


def street_addresses(text: str) -> Iterator[Hit]:
    if not ADDRESS_HINT.search(text):
        return
    for pattern in (STREET, EU_STREET, FR_STREET):
        for m in pattern.finditer(text):
            yield m.start(), m.end(), "ADDRESS", "street address"
    for m in UK_POSTCODE.finditer(text):
        yield m.start(), m.end(), "ADDRESS", "UK postcode"


def chinese_addresses(text: str) -> Iterator[Hit]:
    if "号" not in text and "號" not in text:
        return
    for m in ZH_ADDRESS.finditer(text):
        lead = ZH_LEAD.match(m.group())
        start = m.start() + (lead.end() if lead else 0)
        if m.end() - start >= 4:
            yield start, m.end(), "ADDRESS", "Chinese address"
