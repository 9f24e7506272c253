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
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
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
    """Numbers libphonenumber calls valid for one of `regions` (or possible, with a cue: "+CC", a phone word
    before it, alone on its line); never a date, a number joined to letters (INV-2024-53407, SF1412345678901),
    a number right after an order/invoice/ticket/id label, or a toll-free or shared-cost service number."""
    if not DIGIT_RUN.search(text):  # libphonenumber is slow: skip texts without 7 digits in a row
        return
    dates = [m.span() for m in DATE.finditer(text)]
    verdicts: dict[tuple[int, int], dict[str, str]] = {}  # span -> region -> verdict (see _verdict)
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            span = (match.start, match.end)
            if span not in verdicts:
                if not _phone_like(match.raw_string) or any(s < match.end and match.start < e for s, e in dates):
                    continue
                if _inside_number(text, *span) or joined_to_letters(text, *span) or after_reference_label(text, match.start):
                    continue
                verdicts[span] = {}
            if "personal grouped" in verdicts[span].values():
                continue  # settled: a person's number, written the way its region prints it
            key = (match.raw_string, "+" if match.raw_string.startswith("+") else region)
            if key not in _VERDICTS:
                if len(_VERDICTS) > 20_000:
                    _VERDICTS.clear()
                _VERDICTS[key] = _verdict(match.number, match.raw_string)
            verdicts[span][region] = _VERDICTS[key]
    home = "CN" if CJK.search(text) else None
    for (start, end), by_region in sorted(verdicts.items()):
        if _personal(by_region, home) or ("service" not in " ".join(by_region.values()) and _phone_cue(text, start, end)):
            yield start, end, "PHONE", "phone"


CJK = re.compile(r"[\u4e00-\u9fff]")
# (raw number, region or "+") -> verdict: the same number recurs (a signature, a hotline), and judging it is slow
_VERDICTS: dict[tuple[str, str], str] = {}


def _personal(by_region: dict[str, str], home: str | None) -> bool:
    """A person's number for the text's own region (Chinese text: CN), else for the regions whose way of grouping
    the digits it follows (1860-500-1066: India's, toll-free), else for any region where it is valid."""
    if home and by_region.get(home, "possible") != "possible":
        return by_region[home].startswith("personal")
    grouped = [v for v in by_region.values() if v.endswith("grouped")]
    valid = grouped or [v for v in by_region.values() if v != "possible"]
    return any(v.startswith("personal") for v in valid)


def _verdict(number: phonenumbers.PhoneNumber, raw: str) -> str:
    """"possible", or "personal"/"service", with " grouped" when the digits are grouped as the region prints them."""
    if not phonenumbers.is_valid_number(number):
        return "possible"
    kind = "service" if _is_service_number(number) else "personal"
    groups = [len(g) for g in re.findall(r"\d+", raw)]
    if len(groups) < 2:
        return kind
    style = phonenumbers.PhoneNumberFormat.INTERNATIONAL if raw.lstrip("(").startswith("+") else phonenumbers.PhoneNumberFormat.NATIONAL
    printed = [g for g in re.findall(r"\d+", phonenumbers.format_number(number, style))]
    if style == phonenumbers.PhoneNumberFormat.NATIONAL and printed and printed[0][:1] in "01" and groups[0] == len(printed[0]) - 1:
        printed[0] = printed[0][1:]  # the trunk prefix the writer left out: 098110 22334 written 98110 22334
    if groups[0] == 1 and len(groups) == len(printed) + 1:
        groups = groups[1:]  # a trunk digit the region does not print: 1-800-555-0199
    return kind + (" grouped" if groups == [len(g) for g in printed] else "")


# Dates in the common written forms: 12.03.2024, 12/03/2024, 03-14-24, 2024-03-14, 2024/3/14, 2024年3月14日.
DATE = re.compile(
    r"(?<![\d.])(?:\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})|\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{4}\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)(?![\d])"
)
# Words that name a transaction or a document: the number after them is a reference, not a phone.
# the start of a turn that answers with a number: "customer: ", "User: ", "客户："
ANSWER_START = re.compile(r"[ \t]*(?:[^\W\d_]{2,15}[ \t]*[:：][ \t]*)?")
# a turn that asks for a reference number: the label's word, then a request or a question
ASKED_REFERENCE = re.compile(
    r"(?i)^(?![^\n]*\b(?:phone|mobile|cell|telephone|tel|whatsapp|contact|handy|telefon\w*|rufnummer|portable|téléphone"
    r"|móvil|teléfono|celular)\b)(?=[^\n]*\b(?:order|invoice|ticket|case|reference|tracking|booking|reservation|complaint|claim|transaction|bestell\w*"
    r"|auftrags\w*|rechnungs\w*|sendungs\w*|commande|facture|dossier|réservation|pedido|factura|reserva|localizador)\b)"
    r"(?=[^\n]*(?:\?|\b(?:share|provide|give|send|enter|confirm|type|nennen|angeben|senden|indiquer|donner|communiquer"
    r"|indicar|facilitar|dar)\b))"
    r"|^(?![^\n]*(?:电话|手机))[^\n]*(?:订单号|单号|工单号)[^\n]*[?？]"
)
REFERENCE_LABEL = re.compile(
    r"(?:\b(?:order|orders|invoice|inv|ticket|case|ref|reference|tracking|waybill|awb|consignment|shipment|parcel|transaction"
    r"|txn|contract|policy|booking|reservation|pnr|complaint|claim|receipt|serial|s/n|model|sku|part|article|version|build"
    r"|acknowledgement|acknowledgment|ack|docket|token|application|registration|enrolment|enrollment"
    r"|gtin|ean|isbn|upc|imei|asin|artikelnummer|art\.-nr"
    r"|bestellnummer|bestellung|rechnungsnummer|rechnung|auftrag|auftragsnummer|vertrag|vertragsnummer|sendungsnummer"
    r"|vorgang|vorgangsnummer|aktenzeichen|kundennummer|commande|facture|dossier|contrat|colis|r[ée]f[ée]rence|pedido"
    r"|factura|contrato|expediente|env[íi]o|localizador|albar[áa]n)\b|订单号?|运单号?|快递单号?|单号|发票号?|编号|合同号?|工单号?|流水号)"
    r"[^\d\n,;!?()]{0,20}$",
    re.IGNORECASE,
)
PHONE_CUE = re.compile(
    r"(?:\b(?:tel|tél|phone|telephone|téléphone|mobile|mob|cell|call|ring|text|whatsapp|contact|reach|fax|handy|telefon"
    r"|rufnummer|mobil|portable|appel\w*|m[óo]vil|tel[ée]fono|llam\w*|number)\b|电话|手机|致电|联系|拨打)[^\d\n]{0,15}$",
    re.IGNORECASE,
)
SERVICE_TYPES = (phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.SHARED_COST,
                 phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.UAN)


def _inside_number(text: str, start: int, end: int) -> bool:
    """"1.234.567.890" or "3,141 592 65": the match is the tail of a longer number."""
    before = text[max(0, start - 2) : start]
    return before[-1:] in (".", ",") and before[:1].isdigit()


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def joined_to_letters(text: str, start: int, end: int) -> bool:
    """Digits glued to letters, directly or by one '-', '/', '#' or '_': an id (A12-99812, INV-2024-53407, 1Z999AA…)."""
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    if before[-1:] and _is_ascii_alnum(before[-1]) or after[:1] and _is_ascii_alnum(after[0]):
        return True
    if len(before) == 2 and before[1] in "-/#_" and _is_ascii_alnum(before[0]):
        return True
    return len(after) == 2 and after[0] in "-/_" and _is_ascii_alnum(after[1])


# Indian UPI payment addresses: name@handle, where the handle is a payment app's or bank's (no dot, so no e-mail),
# after a UPI/VPA label or with one of the common handles
UPI_HANDLES = (
    "okaxis|okhdfcbank|okicici|oksbi|ybl|ibl|axl|paytm|pthdfc|ptsbi|ptaxis|ptyes|apl|yapl|upi|icici|sbi|hdfcbank|axisbank"
    "|kotak|indus|federal|yesbank|idfcbank|aubank|rbl|jupiteraxis|fbl|barodampay|freecharge|airtel|jio"
)
UPI_ID = re.compile(
    rf"(?i)(?:\b(?:upi|vpa)(?:[ -]?(?:id|address|handle))?[ \t]*[:：-]?[ \t]*([\w.-]{{2,64}}@[a-z]{{2,20}})(?![\w.@-]*\.[a-z])"
    rf"|(?<![\w.@-])([\w.-]{{2,64}}@(?:{UPI_HANDLES}))(?![\w@-]|\.[a-z]))"
)


def after_reference_label(text: str, start: int) -> bool:
    """The number follows "order", "invoice no.", "Bestellnummer", "订单号：", ... on the same line, or opens the answer
    to a turn that asked for one ("Kindly share the order number.\ncustomer: 7812-4409-2231")."""
    if REFERENCE_LABEL.search(text[max(0, start - 40) : start]) is not None:
        return True
    line_start = text.rfind("\n", 0, start) + 1
    if line_start == 0 or not ANSWER_START.fullmatch(text[line_start:start]):
        return False
    asked = text[text.rfind("\n", 0, line_start - 1) + 1 : line_start]
    return ASKED_REFERENCE.search(asked) is not None


def _is_service_number(number: phonenumbers.PhoneNumber) -> bool:
    """Toll-free, shared-cost and company numbers (1-800…, 0800…, 400…, 1860…): a business's, not a person's."""
    return phonenumbers.number_type(number) in SERVICE_TYPES


def _phone_cue(text: str, start: int, end: int) -> bool:
    """A possible but not valid number still counts when written as a phone: "+44 …", after "Tel:", or alone on its line."""
    if text[start] == "+" or PHONE_CUE.search(text[max(0, start - 30) : start]):
        return True
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return not text[line_start:start].strip(" \t()") and not text[end:line_end].strip(" \t().")


YEAR_RANGE = re.compile(r"^\(?\d{4}\s*[-\u2013/]\s*\d{4}\)?$")
DECIMAL = re.compile(r"^\(?-?\d+[.,]\d+$")
AMOUNT = re.compile(r"^(?:\d{1,2}(?P<a>[ .])\d{3}(?:(?P=a)\d{3})+|\d{1,3}(?:(?P<b>[ .])\d{3})*(?P=b)000)$")


def _phone_like(raw: str) -> bool:
    """Drop what libphonenumber's lenient mode accepts but people write for other things."""
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or YEAR_RANGE.match(raw) or DECIMAL.search(raw) or "  " in raw:  # "  " : a table row
        return False
    if raw.isdigit() and digits < 10:  # a bare 7-9 digit number is a quantity more often than a phone
        return False
    if "," in raw or AMOUNT.match(raw):  # 12,50,000 · 83 200 000 · 1.299.000: amounts, grouped in thousands
        return False
    if "/" in raw and "." in raw:  # "161.86 / 74.99": arithmetic, not a phone
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
        if not (13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)) or not _card_grouping(m.group()):
            continue
        if joined_to_letters(text, *m.span()) or after_reference_label(text, m.start()):
            continue  # JD0098812345670, "order 402-8812774-1190": references that happen to pass Luhn
        yield m.start(), m.end(), "CARD", "payment card (Luhn)"


def _card_grouping(value: str) -> bool:
    """Cards are printed in one block or in groups of four (Amex 4-6-5, Diners 4-6-4), never as 3-7-4."""
    groups = [len(g) for g in re.split(r"[ -]", value)]
    return len(groups) == 1 or groups[:-1] == [4] * (len(groups) - 1) or groups in ([4, 6, 5], [4, 6, 4])


VERSION_LABEL = re.compile(
    r"(?:(?<![A-Za-z])[vV]|(?i:\b(?:version|ver|build|firmware|release|update|rev)\b\.?)|[A-Za-z]*OS|版本号?|固件|系统)\s*[:：]?\s*$"
)


def ips(text: str) -> Iterator[Hit]:
    if "." in text:
        for m in IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if VERSION_LABEL.search(text[max(0, m.start() - 20) : m.start()]):
                continue  # v8.4.1.6, "HarmonyOS 4.2.0.137", "版本号 3.1.2.0": a version, not an address
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
# Cheap gates, one per pattern: a single alternation of them all scans several times slower.
DNI_HINT, PAN_HINT, NIR_HINT = re.compile(r"\d{7}-?[A-Z]"), re.compile(r"\d{4}[A-Z]"), re.compile(r"\d{3} ?\d{3} ?\d{2}(?!\d)")


def national_ids(text: str) -> Iterator[Hit]:
    yield from labelled_ids(text)  # gated by its labels
    if "@" in text:
        for m in UPI_ID.finditer(text):
            group = 1 if m.group(1) else 2
            yield m.start(group), m.end(group), "ID", "Indian UPI id"
    if DNI_HINT.search(text):
        for m in ES_DNI.finditer(text):
            if es_dni_ok(m.group()):
                yield m.start(), m.end(), "ID", "Spanish DNI/NIE"
    if PAN_HINT.search(text):
        for m in IN_PAN.finditer(text):
            yield m.start(), m.end(), "ID", "Indian PAN"
    if NIR_HINT.search(text):
        for m in FR_NIR.finditer(text):
            if fr_nir_ok(m.group()):
                yield m.start(), m.end(), "ID", "French NIR"
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


# Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter); the letter is a mod-23 check.
ES_DNI = re.compile(r"(?<![A-Za-z0-9])(?:\d{8}|[XYZ]\d{7})-?[A-HJ-NP-TV-Z](?![A-Za-z0-9])")
# Indian PAN: five letters (the fourth says who holds it: P person, C company, H HUF, ...), four digits, a letter.
IN_PAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z](?![A-Za-z0-9])")
# French NIR (numéro de sécurité sociale): sex, year, month, département (2A/2B: Corsica), commune, order, key.
FR_NIR = re.compile(r"(?<![\d])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\d])")
# Ids that are only told from other numbers by the label before them (same line or the line before).
LABELLED = [
    (re.compile(r"\bSSN\b|social security", re.I), re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\d-])"), "US SSN", None),
    (re.compile(r"aadhaa?r|\bUIDAI?\b|आधार", re.I), re.compile(r"(?<![\d-])[2-9]\d{3}([ -]?)\d{4}\1\d{4}(?![\d-])"), "Aadhaar", "verhoeff"),
    (re.compile(r"steuer-?id|steuer-?identifikationsnummer|identifikationsnummer|\bIdNr\b", re.I),
     re.compile(r"(?<![\d])[1-9]\d(?: ?\d){9}(?![\d])"), "German tax id", "de_idnr"),
    (re.compile(r"\bNHS\b", re.I), re.compile(r"(?<![\d])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\d])"), "NHS number", "nhs"),
    (re.compile(r"\ba/c\b|account (?:no|number)|acct|kontonummer|num[ée]ro de compte|n[úu]mero de cuenta|账号|卡号", re.I),
     re.compile(r"(?<![\d])\d{9,18}(?![\d])"), "bank account number", None),
    (re.compile(r"身份证"), CN_ID, "Chinese resident id", None),
    (re.compile(r"versicherungsnummer|\bSV-?Nummer\b|\bRVNR\b", re.I),
     re.compile(r"(?<![\dA-Za-z])\d{2} ?\d{6} ?[A-Z] ?\d{3}(?![\dA-Za-z])"), "German social insurance number", None),
    (re.compile(r"\bUPI\b|\bVPA\b", re.I), re.compile(r"(?<![\w.@-])[\w.-]{2,}@[A-Za-z]{2,}(?![\w.@-])"), "UPI id", None),
]
LABEL_WINDOW = 80  # characters before the number where its label may stand


# Literal pieces of each label, looked for in the lower-cased text before any pattern runs (most texts have none).
LABEL_HINTS = {
    "US SSN": ("ssn", "social security"), "Aadhaar": ("aadha", "uid", "आधार"), "German tax id": ("steuer", "identifikationsnummer", "idnr"),
    "NHS number": ("nhs",), "bank account number": ("a/c", "account", "acct", "konto", "compte", "cuenta", "账号", "卡号"),
    "Chinese resident id": ("身份证",), "German social insurance number": ("versicherungsnummer", "sv-nummer", "svnummer", "rvnr"),
    "UPI id": ("upi", "vpa"),
}


def labelled_ids(text: str) -> Iterator[Hit]:
    """SSN 523819044, Aadhaar 7345 9120 8667, Steuer-ID 47 036 892 815, NHS number 943 476 5919, A/c no. 5010…"""
    lowered = text.lower()
    for label, number, detail, check in LABELLED:
        if not any(hint in lowered for hint in LABEL_HINTS[detail]) or not label.search(text):
            continue
        for m in number.finditer(text):
            window = text[max(0, m.start() - LABEL_WINDOW) : m.start()]
            if "\n" in window:  # the label's line, or the line before ("enter your Aadhaar number.\nUser: 4812…")
                window = window[window.rfind("\n", 0, window.rfind("\n")) + 1 :]
            if not label.search(window):
                continue
            digits = re.sub(r"\D", "", m.group())
            if check is None or CHECKS[check](digits):
                yield m.start(), m.end(), "ID", detail


def _dihedral(i: int, j: int) -> int:
    """The product in the dihedral group D5 (elements 0-4 rotations, 5-9 reflections), as Verhoeff's table."""
    if i < 5 and j < 5:
        return (i + j) % 5
    if i < 5:
        return 5 + (i + j - 5) % 5
    if j < 5:
        return 5 + (i - 5 - j) % 5
    return (i - j) % 5


VERHOEFF_P = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]]
for _ in range(6):
    VERHOEFF_P.append([VERHOEFF_P[1][d] for d in VERHOEFF_P[-1]])


def verhoeff_ok(digits: str) -> bool:
    """Verhoeff's check (the Aadhaar check digit): the running D5 product of permuted digits is 0."""
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _dihedral(check, VERHOEFF_P[i % 8][int(ch)])
    return check == 0


def es_dni_ok(value: str) -> bool:
    """The DNI/NIE letter is the number mod 23 in TRWAGMYFPDXBNJZSQVHLCKE (NIE: X, Y, Z stand for 0, 1, 2)."""
    compact = value.replace("-", "")
    number = "XYZ".index(compact[0]).__str__() + compact[1:-1] if compact[0] in "XYZ" else compact[:-1]
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23] == compact[-1]


def fr_nir_ok(value: str) -> bool:
    """The NIR key is 97 minus the first 13 digits mod 97 (Corsica: 2A counts as 19, 2B as 18, in the number)."""
    compact = value.replace(" ", "")
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(compact[13:])


def de_idnr_ok(digits: str) -> bool:
    """Steuerliche Identifikationsnummer: 11 digits, not starting with 0, one digit repeated in the first ten.

    The ISO 7064 check digit is not required: after a "Steuer-ID" label a mistyped id is still personal."""
    return len(digits) == 11 and digits[0] != "0" and len(set(digits[:10])) in (8, 9)


def nhs_ok(digits: str) -> bool:
    """NHS number: 10 digits, weights 10..2, check digit 11 - sum mod 11 (10 is never issued, 11 means 0)."""
    if len(digits) != 10:
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1))) % 11
    return (0 if check == 11 else check) == int(digits[9])


CHECKS = {"verhoeff": verhoeff_ok, "de_idnr": de_idnr_ok, "nhs": nhs_ok}
