"""Street addresses: a street with its number, or an address line that ends in a postcode, per locale; Chinese addresses.

Rules, not a parser. Found:
- number + street + type ("221B Baker Street", "5120 Cherry Creek Dr S"), street + number ("Hauptstraße 12",
  "Calle Mayor 5", "Avda. Sabino Arana 22"), number + type + name ("12 rue de la Paix", "3 allée des Tilleuls");
- an address line: comma-separated parts that end in a postcode next to a city (US "Denver, CO 80246", UK
  "Leeds LS6 4DP", India "Chennai 600017", continental "80331 München", "46001 Valencia"), walked back from the
  postcode over the parts that read as an address ("Flat 2, 17 Albert Road", "H.No. 1127, Sector 22-B",
  "C/ Mayor, 12, 2º izq."), starting at a part that holds a number or opens with a unit or street word;
- UK postcodes on their own; Chinese 省/市/区 … 路/街 … 号 with the building, floor and room after it.
Not found: an address without a number ("Paseo de Gracia"), a line without a postcode that no street rule covers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Hit = tuple[int, int, str, str]

STREET_TYPES = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Way|Terrace|Close|Crescent"
    r"|Highway|Hwy|Parkway|Pkwy|Square|Sq|Circle|Cir|Trail|Row|Mews|Gardens|Grove|Hill|Walk"
)
DIRECTION = r"(?:[ ]+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
STREET = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})?,?[ ]+(?:[A-Z][A-Za-z'.-]*[ ]+){{1,4}}(?:{STREET_TYPES})\b\.?{DIRECTION}"
    r"(?:,?[ ]+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|#)\.?[ ]*#?[\w-]+)?"
    r"(?:,[ ]*[A-Z][a-z]+(?:[ ][A-Z][a-z]+){0,2})?"  # city
    r"(?:,?[ ]*(?:[A-Z]{2}[ ]+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}))?"  # US state+ZIP or UK postcode
)
# European order: street name, then number ("Hauptstraße 12", "Rue de Rivoli 5" is rarer than "5 rue de Rivoli").
EU_STREET = re.compile(
    r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|gasse|weg|platz|allee|ring|damm|ufer|laan|straat|gracht|vej|gatan|väg)"
    r"[ ]+\d{1,4}[a-z]?\b"
)
FR_STREET = re.compile(
    r"\b\d{1,4}(?:[ ]?(?:bis|ter))?,?[ ]+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|cours|route"
    r"|via|viale|piazza|calle|avenida|plaza)[ ]+(?:[A-Za-zÀ-ÿ'-]+[ ]?){1,4}",
    re.IGNORECASE,
)
ES_STREET = re.compile(
    r"\b(?:Calle|C/|Avda\.|Avenida|Av\.|Paseo|Pº|Plaza|Pza\.|Ronda|Camino|Carrer|Travesía|Carretera|Ctra\.)[ ]?"
    r"(?:(?:de|del|la|las|los|el|d')[ ]+)*[A-ZÁÉÍÓÚÑ][\wáéíóúñ-]*(?:[ ]+(?:(?:de|del|la|y|i)[ ]+)?[A-ZÁÉÍÓÚÑ][\wáéíóúñ-]*){0,3}"
    r",?[ ]+\d{1,4}(?:,?[ ]*\d{1,2}[ºª](?:[ ]*(?:\d{1,2}[ºª]|[A-Z]\b|(?:izq|izda|dcha|der)\b\.?))?)?"
)
UK_POSTCODE = re.compile(r"\b(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b")
# What ends an address line: a postcode next to its city.
POSTCODE_END = re.compile(
    r"\b[A-Z]{2}[ ]+\d{5}(?:-\d{4})?\b"  # US: state + ZIP
    r"|\b(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b"  # UK
    r"|\b[A-Z][a-z]+[ ]+[1-9]\d{2}[ ]?\d{3}\b"  # India: city + PIN
    r"|\b\d{5}[ ]+[A-ZÀ-ÝÄÖÜ][\wà-ÿäöüß'-]+(?:[ -][A-ZÀ-ÝÄÖÜ][\wà-ÿäöüß'-]+)?"  # DE/FR/ES/IT: postcode + city
)
# Small words inside street names; an address does not start with one ("in der Goethestraße 21a").
PARTICLES = frozenset("de del la las los le les des du d' y i e am an der den dem im in of the upon on di da".split())
# prepositions of place inside a run of capitalised words: what comes before them is a firm or a person, not the address
PLACE_PREPOSITIONS = frozenset("in im bei at near nahe".split())
# Words an address part may hold besides capitalised words and numbers (compared lower-case).
ADDRESS_WORDS = PARTICLES | frozenset(
    """rue avenue av. boulevard bd place chemin allée impasse quai cours route bis ter
    calle c/ avda. avenida paseo pº plaza pza. ronda camino carrer carretera ctra. piso planta puerta bajo izq. izq
    izda. dcha. dcha der. esc. escalera portal
    flat floor apt apt. apartment suite ste unit block sector plot house no no. h.no. h.no door cross main stage phase
    road street lane nagar colony layout extension extn. near opp. behind
    bâtiment bât. bat. étage escalier appartement appt résidence
    stock etage hinterhaus vorderhaus""".split()
)
UNIT_START = re.compile(
    r"^(?:#?\d|[A-Z]-?\d|(?:Flat|Apt|Apartment|Suite|Unit|Block|House|Plot|Row House|H\.?\s?No|Door|Bâtiment|Bât|Résidence"
    r"|Escalier|Calle|C/|Avda|Avenida|Paseo|Plaza|Carrer|Rue|Avenue|Boulevard|Chemin|Allée|Impasse|Am|An der|Auf der)(?!\w))",
    re.IGNORECASE,
)
ZH_ADDRESS = re.compile(
    r"[\u4e00-\u9fff]{0,12}?(?:省|市|自治区|区|县|镇|乡)?[\u4e00-\u9fff]{1,12}?(?:路|街|大道|大街|巷|弄|胡同|里)"
    r"\s*\d+\s*(?:号|號)"  # then the building, block, floor and room: 华星时代广场B座, SOHO现代城A座1201, 3号楼502室
    r"(?:[A-Za-z\u4e00-\u9fff]{0,10}?[A-Za-z\d-]{0,6}(?:座|栋|幢|号楼|大厦|广场|单元|楼|层|室)){0,3}(?:[A-Za-z\d-]{1,6}(?![A-Za-z\d]))?"
)
ZH_LEAD = re.compile(r".*(?:住在|住址|地址|位于|寄到|送到|搬到|来到|发到|到|为|是|在|：|:|，|。|、)")


ADDRESS_HINT = re.compile(r"\d{1,5}[A-Za-z]?,?[ ]+[A-Za-z]|[a-zäöüß.][ ]+\d{1,4}\b|\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\b\d{5}[ ]+[A-ZÀ-Ý]")


def street_addresses(text: str) -> Iterator[Hit]:
    if not ADDRESS_HINT.search(text):
        return
    for pattern in (STREET, EU_STREET, FR_STREET, ES_STREET):
        for m in pattern.finditer(text):
            yield m.start(), m.start() + len(m.group().rstrip(" ,")), "ADDRESS", "street address"
    for m in UK_POSTCODE.finditer(text):
        yield m.start(), m.end(), "ADDRESS", "UK postcode"
    yield from address_lines(text)


def _word_fits(word: str) -> bool:
    core = word.strip("()")
    if not core:
        return True
    if any(c.isdigit() for c in core) or core[0].isupper() or core.lower() in ADDRESS_WORDS:
        return True
    return core.lower().split("'")[0] + "'" in ADDRESS_WORDS  # d'Italie


def _fitting_tail(part: str) -> str:
    """The longest run of words at the end of `part` that reads as an address ("… wohne ich in der Goethestraße 21a")."""
    words = part.split()
    keep = len(words)
    while keep and _word_fits(words[keep - 1]):
        keep -= 1
    tail = words[keep:]
    cut = max((i + 1 for i, w in enumerate(tail[:-1]) if w in PLACE_PREPOSITIONS), default=0)
    tail = tail[cut:]  # "bei Polstermöbel Prigge in der Lindenstraße 20": the firm before "in" is no part of it
    while tail and tail[0].lower() in PARTICLES and not UNIT_START.match(" ".join(tail)):
        tail = tail[1:]  # "der Goethestraße 21a" -> "Goethestraße 21a"
    return " ".join(tail)


def address_lines(text: str) -> Iterator[Hit]:
    """From each postcode-and-city back over the comma-separated parts of its line that read as an address."""
    for m in POSTCODE_END.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        head = text[line_start : m.start()]
        parts = head.split(",")
        parts[-1] = parts[-1] + text[m.start() : m.end()]  # the postcode's own part: "Leeds LS6 4DP", "80331 München"
        taken: list[str] = []
        for part in reversed(parts):
            label = part.rfind(":")
            piece = part[label + 1 :] if label >= 0 else part
            tail = _fitting_tail(piece)
            if not tail:
                break
            taken.insert(0, tail)
            if label >= 0 or tail != " ".join(piece.split()):
                break
        while taken and not UNIT_START.match(taken[0]) and not any(c.isdigit() for c in taken[0]):
            taken.pop(0)  # a name or a company before the address: "Gérard Fontaine, 14 impasse des Vignes, …"
        if len(taken) < 2:
            continue  # a postcode alone is left to the postcode rule (UK) or to nothing
        first = taken[0].split()[0].lstrip("\"'“‘«([")  # '"181 Thompson St' in JSON text: the quote is not the address
        found = re.compile(rf"(?<![\w]){re.escape(first)}(?![\w])").search(text, line_start, m.end())
        if found:  # a whole word: "77" of "77 Sycamore Ave", not the 77 inside "5L6032477Y932901F"
            yield found.start(), m.end(), "ADDRESS", "address line (postcode)"


def chinese_addresses(text: str) -> Iterator[Hit]:
    if "号" not in text and "號" not in text:
        return
    for m in ZH_ADDRESS.finditer(text):
        lead = ZH_LEAD.match(m.group())
        start = m.start() + (lead.end() if lead else 0)
        if m.end() - start >= 4:
            yield start, m.end(), "ADDRESS", "Chinese address"
