"""No false alarms on what is not personal (dates, order/invoice/waybill numbers, versions, prices, service lines),
the ids that only their label gives away, and address forms per locale; with floors on the labelled set.

Sentences are written for these tests in the shape of real support mail and chat; numbers use fiction ranges
(US 555-01xx, Ofcom 020 7946 0xxx / 07700 900xxx) or are invented with valid checksums. The floors hold on the
labelled set's dev split (tests/fixtures/data/pii_set, see its README); the holdout split is not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.data.pii import find_pii
from gpudoctor.data.pii.patterns import de_idnr_ok, es_dni_ok, fr_nir_ok, nhs_ok, verhoeff_ok

SET = Path(__file__).resolve().parent.parent / "fixtures" / "data" / "pii_set" / "records.jsonl"


def kinds_over(text: str, part: str) -> set[str]:
    start = text.index(part)
    return {s.kind for s in find_pii(text, use_nlp=False) if s.start < start + len(part) and start < s.end}


def covered_as(text: str, part: str, kind: str) -> bool:
    start = text.index(part)
    taken = {i for s in find_pii(text, use_nlp=False) if s.kind == kind for i in range(s.start, s.end)}
    return set(range(start, start + len(part))) <= taken


DATES = [
    ("en_US", "The refund was issued on 03/14/2024 and should post by 03/21/2024.", ["03/14/2024", "03/21/2024"]),
    ("en_GB", "Your engineer visit is booked for 12/03/2024, or 2024-03-12 in the portal.", ["12/03/2024", "2024-03-12"]),
    ("en_IN", "Recharge done on 05-03-2024 is not reflecting, plan valid till 31-05-2024.", ["05-03-2024", "31-05-2024"]),
    ("de_DE", "Die Rechnung vom 12.03.2024 ist am 02.04.2024 fällig, Lieferung am 14. März 2024.", ["12.03.2024", "02.04.2024", "14. März 2024"]),
    ("fr_FR", "Votre colis livré le 14 mars 2024 (commande du 12/03/2024) est reparti le 2024-03-15.", ["le 14 mars 2024", "12/03/2024", "2024-03-15"]),
    ("es_ES", "El pedido del 14 de marzo de 2024 se facturó el 15/03/2024.", ["14 de marzo de 2024", "15/03/2024"]),
    ("zh_CN", "您于2024年3月14日下单，预计2024-03-18送达，截止2024/03/20。", ["2024年3月14日", "2024-03-18", "2024/03/20"]),
    ("en_US", "Warranty covers it until 2025-11-30, bought 3 March 2024, renewed 2024.03.05.", ["2025-11-30", "3 March 2024", "2024.03.05"]),
]


@pytest.mark.parametrize("locale,text,dates", DATES, ids=[f"{d[0]}-{i}" for i, d in enumerate(DATES)])
def test_dates_are_never_phones(locale, text, dates):
    for date in dates:
        assert kinds_over(text, date) == set(), (locale, date, find_pii(text, use_nlp=False))


REFERENCES = [
    ("en_US", "Subject: Refund for INV-2024-53407", "INV-2024-53407"),
    ("en_US", "I see Order #A12-99812 placed yesterday.", "A12-99812"),
    ("en_US", "the tracking for waybill 1Z999AA10123456784 hasn't moved", "1Z999AA10123456784"),
    ("en_US", "We received your dispute for transaction TXN-20240311-7781.", "TXN-20240311-7781"),
    ("en_GB", "no worries. the order number is 204-99183", "204-99183"),
    ("en_GB", "Your case number is 0045 7718 2291, quote it when you ring.", "0045 7718 2291"),
    ("en_IN", "I have placed order no. OD428817365529 on Flipkart.", "OD428817365529"),
    ("en_IN", "Your ticket PNR 4512877390 is confirmed.", "4512877390"),
    ("en_IN", "The watch you ordered (order 402-8812774-1190) is out for delivery.", "402-8812774-1190"),
    ("zh_CN", "订单号447487560965一直没发货", "447487560965"),
    ("zh_CN", "顺丰运单号SF1412345678901，快递单号：YT7788123409876", "SF1412345678901"),
    ("zh_CN", "快递单号：YT7788123409876，请查收", "YT7788123409876"),
    ("zh_CN", "订单号：231245876009已发出", "231245876009"),
    ("de_DE", "zur Rechnung RE-2024-018833 über 1.299,00 €", "RE-2024-018833"),
    ("de_DE", "die dritte Lieferung beim Nachbarn. Bestellnummer 302-5518820-7731", "302-5518820-7731"),
    ("de_DE", "Rechnungsnummer 2024 0318 7721 bitte bei Zahlung angeben", "2024 0318 7721"),
    ("fr_FR", "la facture FAC-2024-00871 du mois dernier", "FAC-2024-00871"),
    ("fr_FR", "ma commande 1048 2271 9930 n'est jamais arrivée", "1048 2271 9930"),
    ("es_ES", "la factura FRA-2024-00412 ha sido anulada", "FRA-2024-00412"),
    ("es_ES", "Veo el pedido n.º 302-5518820 del 5 de marzo.", "302-5518820"),
    ("es_ES", "el número de pedido es 7712 0045 8821", "7712 0045 8821"),
]


@pytest.mark.parametrize("locale,text,reference", REFERENCES, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFERENCES)])
def test_order_invoice_waybill_numbers_are_kept(locale, text, reference):
    assert kinds_over(text, reference) == set(), (locale, find_pii(text, use_nlp=False))


KEPT = [
    "my Luna bulb stopped pairing after the v2.14.1 update",
    "Firmware 3.8.2 (build 20231102) fixes it; the app needs 10.4.1 or later.",
    "I was charged $1,299.99 twice, and the store credit of $64.20 is missing.",
    "Betrag: 1.299,00 € inkl. MwSt., Gutschrift über 187,50 €",
    "un montant de 1 299,00 € et un avoir de 642,18 €",
    "por importe de 1.299,00 €, tarifa Fibra 600 Mb (35,90 €/mes)",
    "发票金额￥86,400.00，已退款¥1,299.00",
    "Model 183V CZS, AMC ₹3,200 + GST, recharge of Rs. 499",
    "For queries call 1860-500-1066 or the toll-free 1-800-555-0199.",
    "如有疑问请致电4008-123-456。",
    "Fare: ₹3,415.00 for train 12951 on platform 4",
    "after firmware 2.0.11.4 the router reboots; v10.2.0.118 is the beta",
    "路由器版本号3.1.2.0，系统 4.0.1.120",
    "a loan of Rs. 12,50,000 was sanctioned for a flat worth 1.299.000 €; the city has 83 200 000 visitors",
    "GTIN 4006381333931, ISBN 978-3-16-148410-0, IMEI 356938035643809",
    "the ratio (161.86 / 74.99) is about 2.16",
]


@pytest.mark.parametrize("text", KEPT)
def test_versions_prices_and_service_lines_are_kept(text):
    assert find_pii(text, use_nlp=False) == []


PHONES = [
    ("en_US", "Thank you,\nDeShawn\n(614) 555-0187", "(614) 555-0187"),
    ("en_GB", "If you need to rebook, ring 0113 496 0321.", "0113 496 0321"),
    ("en_GB", "Diolch,\nRhys\n07700 900123", "07700 900123"),
    ("en_IN", "nobody called me on 98110 22334 after the test drive on 2024-04-02", "98110 22334"),
    ("en_IN", "Contact person: Neha, 022-6140 7788.", "022-6140 7788"),
    ("zh_CN", "用户：18612345678，找马师傅就行", "18612345678"),
    ("de_DE", "Telefon: 0151 23456789, gern auch abends", "0151 23456789"),
    ("fr_FR", "vous pouvez me rappeler au 07 81 22 45 90 ? merci", "07 81 22 45 90"),
    ("es_ES", "mi teléfono es 612 345 678, llamad por la tarde", "612 345 678"),
]


@pytest.mark.parametrize("locale,text,phone", PHONES, ids=[p[0] + "-" + str(i) for i, p in enumerate(PHONES)])
def test_phones_are_still_found(locale, text, phone):
    assert covered_as(text, phone, "PHONE"), (locale, find_pii(text, use_nlp=False))


IDS = [
    ("en_US", "For the W-9 I typed SSN 523819044 without dashes", "523819044"),
    ("en_US", "my social security number: 478-32-9051", "478-32-9051"),
    ("en_GB", "the referral for your patient (NHS number 943 476 5919)", "943 476 5919"),
    ("en_IN", "Aadhaar: 7345 9120 8667\nPAN: BQRPS4471K", "7345 9120 8667"),
    ("en_IN", "Aadhaar: 7345 9120 8667\nPAN: BQRPS4471K", "BQRPS4471K"),
    ("en_IN", "Bot: Please enter your 12-digit Aadhaar number.\nUser: 481203977551", "481203977551"),
    ("en_IN", "A/c no.: 50100248817352\nIFSC: HDFC0001234", "50100248817352"),
    ("zh_CN", "身份证号：310115199207251848", "310115199207251848"),
    ("de_DE", "ich hab nur die steuer-id 47 036 892 815", "47 036 892 815"),
    ("de_DE", "Steuer-ID: 86095742719", "86095742719"),
    ("fr_FR", "N° de sécurité sociale : 1 91 03 69 123 456 06", "1 91 03 69 123 456 06"),
    ("es_ES", "DNI: 48201937D", "48201937D"),
    ("es_ES", "Mi NIE es X4471229Y y mi teléfono 612 345 678.", "X4471229Y"),
    ("de_DE", "Ihre Rentenversicherungsnummer lautet 12 150385 M 517.", "12 150385 M 517"),
    ("en_IN", "my UPI id is rahul.mehta@oksbi, send it there", "rahul.mehta@oksbi"),
]


@pytest.mark.parametrize("locale,text,value", IDS, ids=[f"{x[0]}-{i}" for i, x in enumerate(IDS)])
def test_national_ids_near_their_labels(locale, text, value):
    assert covered_as(text, value, "ID"), (locale, find_pii(text, use_nlp=False))


def test_ids_need_their_label_or_their_check():
    assert kinds_over("we shipped 523819044 units last year", "523819044") != {"ID"}
    assert kinds_over("Aadhaar: 7345 9120 8668", "7345 9120 8668") != {"ID"}  # Verhoeff digit wrong
    assert kinds_over("DNI: 48201937E", "48201937E") == set()  # mod-23 letter wrong
    assert not verhoeff_ok("734591208668") and verhoeff_ok("734591208667")
    assert es_dni_ok("X4471229Y") and not es_dni_ok("X4471229Z")
    assert fr_nir_ok("2 84 05 75 112 045 37") and not fr_nir_ok("2 84 05 75 112 045 38")
    assert nhs_ok("9434765919") and not nhs_ok("9434765918")
    assert de_idnr_ok("86095742719") and not de_idnr_ok("01234567890")


ADDRESSES = [
    ("en_US", "Ship it to 5120 Cherry Creek Dr S, Denver, CO 80246 please", "5120 Cherry Creek Dr S, Denver, CO 80246"),
    ("en_US", "Current address: 3318 Peachtree Rd NE, Atlanta, GA 30326", "3318 Peachtree Rd NE, Atlanta, GA 30326"),
    ("en_GB", "between 8am and 1pm at:\nFlat 2, 17 Albert Road, Leeds LS6 4DP", "Flat 2, 17 Albert Road, Leeds LS6 4DP"),
    ("en_GB", "Address: 9 Heol y Deri, Cardiff CF14 6HF", "9 Heol y Deri, Cardiff CF14 6HF"),
    ("en_GB", "I live at 221B Baker Street.", "221B Baker Street"),
    ("en_IN", "Address: H.No. 1127, Sector 22-B, Chandigarh 160022", "H.No. 1127, Sector 22-B, Chandigarh 160022"),
    ("en_IN", "New: Plot 8, Anna Nagar East, Chennai 600102", "Plot 8, Anna Nagar East, Chennai 600102"),
    ("zh_CN", "现居住地址为北京市朝阳区建国路88号SOHO现代城A座1201。", "北京市朝阳区建国路88号SOHO现代城A座1201"),
    ("zh_CN", "地址：杭州市西湖区文三路478号华星时代广场B座\n异常原因", "杭州市西湖区文三路478号华星时代广场B座"),
    ("de_DE", "Anschrift: Marienplatz 8, 80331 München", "Marienplatz 8, 80331 München"),
    ("de_DE", "Seit Juli wohne ich in der Goethestraße 21a, 04109 Leipzig.", "Goethestraße 21a, 04109 Leipzig"),
    ("fr_FR", "Bâtiment B, 3 allée des Tilleuls, 33000 Bordeaux", "Bâtiment B, 3 allée des Tilleuls, 33000 Bordeaux"),
    ("fr_FR", "c'est au nom de mon mari, Gérard Fontaine, 14 impasse des Vignes, 21000 Dijon", "14 impasse des Vignes, 21000 Dijon"),
    ("fr_FR", "Envoyez-le au 12 rue de la Paix, merci", "12 rue de la Paix"),
    ("es_ES", "Avda. Sabino Arana 22, 1º, 48013 Bilbao", "Avda. Sabino Arana 22, 1º, 48013 Bilbao"),
    ("es_ES", "a nombre de mi marido, Manuel Cabrera, C/ Mayor, 12, 2º izq., 46001 Valencia", "C/ Mayor, 12, 2º izq., 46001 Valencia"),
    ("es_ES", "Vivo en la Calle Mayor 5, cerca del centro", "Calle Mayor 5"),
]


@pytest.mark.parametrize("locale,text,address", ADDRESSES, ids=[f"{a[0]}-{i}" for i, a in enumerate(ADDRESSES)])
def test_address_forms_per_locale(locale, text, address):
    assert covered_as(text, address, "ADDRESS"), (locale, find_pii(text, use_nlp=False))


def test_an_address_in_json_text_starts_after_the_quote():
    text = '{"location": "181 Thompson St, New York, NY 10012"}'
    assert [(s.kind, s.text) for s in find_pii(text, use_nlp=False)] == [("ADDRESS", "181 Thompson St, New York, NY 10012")]


def test_an_address_line_does_not_swallow_the_name_before_it():
    text = "c'est au nom de mon mari, Gérard Fontaine, 14 impasse des Vignes, 21000 Dijon"
    assert "ADDRESS" not in kinds_over(text, "Gérard Fontaine")
    assert kinds_over("Bright Lane CPA, 2200 Wilshire Blvd, Suite 410, Los Angeles, CA 90057", "Bright Lane CPA") == set()


def dev_scores() -> tuple[dict[str, list[int]], list[int]]:
    """(kind -> [found, total]) with a span of the right kind covering every occurrence, and [kept, total] must-keeps."""
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    recall: dict[str, list[int]] = {}
    keep = [0, 0]
    for row in (r for r in rows if r["split"] == "dev"):
        text = row["text"]
        spans = find_pii(text, use_nlp=False)
        for item in row["pii"]:
            if item["kind"] == "name":
                continue  # names are scored in the names tests
            kind = item["kind"].upper()
            taken = {i for s in spans if s.kind == kind for i in range(s.start, s.end)}
            start = text.index(item["value"])
            hit = recall.setdefault(item["kind"], [0, 0])
            hit[0] += set(range(start, start + len(item["value"]))) <= taken
            hit[1] += 1
        for value in row["keep"]:
            start = text.index(value)
            keep[0] += not any(s.start < start + len(value) and start < s.end for s in spans)
            keep[1] += 1
    return recall, keep


def test_labelled_set_floors_on_the_dev_split():
    """Measured on dev (222 records): address 26/26, id 33/33, email/phone/card/ip all found; keep 721/721 with
    the name rules of the day, floor 98% (the issue's target) since the name rules move it."""
    recall, keep = dev_scores()
    for kind in ("email", "phone", "card", "ip", "id"):
        assert recall[kind][0] == recall[kind][1], (kind, recall[kind])
    assert recall["address"][0] / recall["address"][1] >= 0.95, recall["address"]
    assert keep[0] / keep[1] >= 0.98, keep


@pytest.mark.parametrize(
    ("text", "number", "kind"),
    [
        ("agent: Kindly share the order number.\ncustomer: 7812-4409-2231", "7812-4409-2231", None),
        ("Agent: Wie lautet Ihre Bestellnummer?\nKunde: 0176 2234 5678", "0176 2234 5678", None),
        ("客服：请问订单号是多少？\n客户：13912345678", "13912345678", None),
        ("Agent: can you confirm the order and your mobile?\nCustomer: 98765 43210", "98765 43210", "PHONE"),
        ("agent: what is your phone number?\ncustomer: 98765 43210", "98765 43210", "PHONE"),
    ],
)
def test_a_number_answering_a_question_about_an_order_is_no_phone(text, number, kind):
    assert kinds_over(text, number) == ({kind} if kind else set())


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("Please refund to UPI id pradeep.k@okaxis.", "pradeep.k@okaxis", "ID"),
        ("pay at ravi.s@ybl today", "ravi.s@ybl", "ID"),
        ("VPA: meena-22@paytm", "meena-22@paytm", "ID"),
        ("mail me at ravi@gmail.com", "ravi@gmail.com", "EMAIL"),
    ],
)
def test_indian_upi_ids_are_ids_and_e_mails_stay_e_mails(text, value, kind):
    assert covered_as(text, value, kind)
