"""Person names in every supported language: each context rule, whole multi-word names, no false alarms.

Examples are written for this test (ordinary support mail and chat, invented people; given names from
the official lists in gpudoctor/data/pii/sources). The floors at the end are measured on the dev split
of tests/fixtures/data/pii_set with bench/pii.py (jieba off, so that they hold on any host).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

from gpudoctor.data.pii import find_pii, ner
from gpudoctor.data.pii.latin_names import lists

REPO = Path(__file__).resolve().parents[2]


def scrubbed(text: str, **kwargs) -> str:
    out, last = [], 0
    for span in find_pii(text, use_nlp=False, **kwargs):
        out += [text[last : span.start], f"<{span.kind}>"]
        last = span.end
    return "".join(out) + text[last:]


def gone(name: str, text: str) -> bool:
    """Every word of `name` is gone (as whole words)."""
    after = scrubbed(text)
    words = [w for w in name.split() if w not in ("de", "la", "del")]  # particles stay elsewhere in the text
    return not any(re.search(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])", after) for w in words)


# (locale, text, names that must go, strings that must stay)
CASES = [
    ("en_US", "hey this is marcus, my order never showed up", ["marcus"], ["my order"]),
    ("en_US", "You are Tamara, a billing assistant at Brightline Energy.", ["Tamara"], ["Brightline Energy"]),
    ("en_US", "Thanks for the quick fix!\n\nThanks,\nCaleb Jennings", ["Caleb Jennings"], []),
    ("en_US", "so Hope from your team said the refund is coming", ["Hope"], ["refund"]),
    ("en_US", "Dear Ms. Alvarez,\n\nYour claim is approved.", ["Alvarez"], ["claim"]),
    ("en_US", "Account holder: Dana Whitfield\nRouting: on file", ["Dana Whitfield"], ["Routing"]),
    ("en_US", "Agent (Tristan): can I have the order number?", ["Tristan"], []),
    ("en_US", "my Luna smart bulb and the Alexa app lost wifi during the May sale", [], ["Luna smart bulb", "Alexa", "May sale"]),
    # gpudoctor's own demo data, record 26: a possessive before a listed word makes it a thing someone owns
    ("en_US", "My Ember Coffee Grinder stopped charging overnight.", [], ["Ember Coffee Grinder"]),
    ("en_US", "our Willow desk lamp flickers, and my cousin Harper Lindqvist saw it too", ["Harper Lindqvist"], ["Willow desk lamp"]),
    ("de_DE", "Meine Luna Lampe geht nicht mehr an.", [], ["Luna Lampe"]),
    ("en_GB", "Morning Imogen,\n\nYour parcel is at the depot.\n\nCheers,\nRhys", ["Imogen", "Rhys"], ["depot"]),
    ("en_GB", "Customer: please ask for Harriet when you ring back", ["Harriet"], []),
    ("en_GB", "Account name: Mr R Pemberton", ["R Pemberton"], []),
    ("en_GB", "cheers Maisie, sorted", ["Maisie"], ["sorted"]),
    ("en_GB", "I'll collect it from Victoria station on Friday", [], ["Victoria station", "Friday"]),
    ("en_IN", "Namaste Anjali ji, your recharge is done", ["Anjali"], ["recharge"]),
    ("en_IN", "Kindly process the refund.\n\nRegards,\nSuresh Iyer", ["Suresh Iyer"], ["refund"]),
    ("en_IN", "Dear Smt. Raman, the policy is renewed.", ["Raman"], ["policy"]),
    ("en_IN", "Our technician Vinod will visit tomorrow", ["Vinod"], ["tomorrow"]),
    ("en_IN", "Karthik here, the UPI payment failed twice", ["Karthik"], ["UPI payment"]),
    ("de_DE", "hallo, hier ist lena. das Paket ist nicht da", ["lena"], ["Paket"]),
    ("de_DE", "Sehr geehrter Herr Brandauer,\n\nIhre Bestellung ist unterwegs.", ["Brandauer"], ["Bestellung"]),
    ("de_DE", "Bitte prüfen.\n\nViele Grüße\nTobias Reinhardt", ["Tobias Reinhardt"], []),
    ("de_DE", "Bei Fragen hilft Ihnen Carina gerne weiter.", ["Carina"], ["gerne weiter"]),
    ("de_DE", "Kontoinhaber: Jan-Erik Vogt\nIBAN folgt", ["Jan-Erik Vogt"], ["IBAN folgt"]),
    ("de_DE", "Du bist Greta, die Assistentin von Stadtwerke Nord.", ["Greta"], ["Stadtwerke Nord"]),
    ("de_DE", "Rosa oder Lila? Im Ernst, liefert ihr nach Sankt Augustin?", [], ["Rosa oder Lila", "Ernst", "Sankt Augustin"]),
    ("fr_FR", "ok merci sandrine, à demain", ["sandrine"], ["à demain"]),
    ("fr_FR", "Bonjour Madame Courtois,\n\nVotre dossier est complet.", ["Courtois"], ["dossier"]),
    ("fr_FR", "Merci.\n\nCordialement,\nThibault Marchand", ["Thibault Marchand"], []),
    ("fr_FR", "Bonjour, je m'appelle Élise Fournier et j'ai une question", ["Élise Fournier"], ["question"]),
    ("fr_FR", "titulaire du compte : Pierre-Yves Le Gall", ["Pierre-Yves Le Gall"], []),
    ("fr_FR", "Tu es Margaux, conseillère chez Énergie Azur.", ["Margaux"], ["Énergie Azur"]),
    ("fr_FR", "Fait à Paris, livraison à Saint-Denis", [], ["Fait à Paris", "Saint-Denis"]),
    ("es_ES", "hola soy paco, no me llega la factura", ["paco"], ["factura"]),
    ("es_ES", "Buenas tardes, Maite:\n\nLe confirmamos el abono.\n\nAtentamente,\nRamón", ["Maite", "Ramón"], ["abono"]),
    ("es_ES", "Me llamo Lucía de la Fuente y quiero darme de baja", ["Lucía de la Fuente"], ["darme de baja"]),
    ("es_ES", "Titular de la cuenta: Juan Carlos Ortega Ruiz", ["Juan Carlos Ortega Ruiz"], []),
    ("es_ES", "Estimada Sra. Valverde:\n\nSu recibo está disponible.", ["Valverde"], ["recibo"]),
    ("es_ES", "Eres Irene, agente de atención al cliente de Aguas del Sur.", ["Irene"], ["Aguas del Sur"]),
    ("es_ES", "avisad a Nuria y a Gonzalo de la reunión", ["Nuria", "Gonzalo"], ["reunión"]),
    ("es_ES", "¿La Leche Pascual llega a Santiago de Compostela? La tienda del Paseo de Gracia",
     [], ["Leche Pascual", "Santiago de Compostela", "Paseo de Gracia"]),
]


@pytest.mark.parametrize(("locale", "text", "names", "keep"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_names_in_context_go_and_look_alikes_stay(locale, text, names, keep):
    after = scrubbed(text)
    for name in names:
        assert gone(name, text), f"{name!r} survived: {after!r}"
    for value in keep:
        assert value in after, f"{value!r} was changed: {after!r}"


# Classes of context, each in every supported language: who an account/card/booking/passport/badge belongs to
# (no colon), a lower-case name answering in chat after a reply word, a short form signing a letter.
CLASS_CASES = [
    ("en_US", "the card is fine, cardholder Marisol Vega just moved", ["Marisol Vega"], ["the card"]),
    ("en_US", "Bot: Can I have your full name?\nUser: ok tyler brennan", ["tyler brennan"], ["Bot:"]),
    ("en_US", "reservation is under Dominic Reyes for 7pm", ["Dominic Reyes"], ["7pm"]),
    ("en_GB", "the booking is under Eleanor Whitcombe, two adults", ["Eleanor Whitcombe"], ["two adults"]),
    ("en_GB", "Agent: who am I speaking to?\nCustomer: yes it's imogen", ["imogen"], ["Agent:"]),
    ("en_GB", "the name on my passport is Alistair Penrose", ["Alistair Penrose"], ["passport"]),
    ("en_IN", "account holder name Pradeep Kulkarni, branch Pune", ["Pradeep Kulkarni"], ["Pune"]),
    ("en_IN", "agent: please confirm your name\ncustomer: yes priya", ["priya"], ["confirm your name"]),
    ("de_DE", "Die Karte läuft auf Henrike Albers, nicht auf mich.", ["Henrike Albers"], ["Die Karte"]),
    ("de_DE", "Agent: Wie ist Ihr Name?\nKunde: ja, jonas weber", ["jonas weber"], ["Agent:"]),
    ("de_DE", "Das Zimmer ist reserviert auf Mathilda Brenner.", ["Mathilda Brenner"], ["Das Zimmer"]),
    ("fr_FR", "La réservation est au nom de Gaëlle Perrin, deux nuits.", ["Gaëlle Perrin"], ["deux nuits"]),
    ("fr_FR", "Agent : Vous êtes bien la titulaire ?\nClient : oui, clémence", ["clémence"], ["Agent :"]),
    ("fr_FR", "sur mon passeport il y a écrit Baptiste Roussel", ["Baptiste Roussel"], []),
    ("es_ES", "La tarjeta está a nombre de Rocío Benítez.", ["Rocío Benítez"], ["La tarjeta"]),
    ("es_ES", "Agente: ¿Me confirma su nombre?\nCliente: sí, alejandro", ["alejandro"], ["Agente:"]),
    ("es_ES", "mi pasaporte pone Inmaculada Herrero", ["Inmaculada Herrero"], []),
    ("es_ES", "Hola,\n\nSigue sin funcionar.\n\nSaludos,\nJordi Vila i Puig", ["Jordi Vila i Puig"], []),
    # classes the blind set (tests/fixtures/data/pii_blind) showed, each written anew in every language
    ("en_US", "Great, thanks.\n\nHope this helps!\nDARLENE", ["DARLENE"], []),
    ("en_GB", "Sorted now.\n\nTa,\nBex", ["Bex"], []),
    ("en_IN", "Please refund.\n\nThanks & regards,\nSurinder Pal Singh", ["Surinder Pal Singh"], []),
    ("de_DE", "Alles klar.\n\nSchöne Grüße\nAnton Wolf", ["Anton Wolf"], []),
    ("fr_FR", "À demain.\n\nBises,\nNolwenn", ["Nolwenn"], []),
    ("es_ES", "Todo bien.\n\nUn cordial saludo,\nAinhoa Etxeberria", ["Ainhoa Etxeberria"], []),
    ("en_US", "Maddison called from the Denver office about the Roku Ultra.", ["Maddison"], ["Denver office", "Roku Ultra"]),
    ("de_DE", "Gestern hat Hannelore angerufen, der Router ist da.", ["Hannelore"], ["Router"]),
    ("fr_FR", "Ce matin Ophélie a appelé pour la Livebox.", ["Ophélie"], ["Livebox"]),
    ("es_ES", "Ayer Remedios llamó por la factura de Iberdrola.", ["Remedios"], ["Iberdrola"]),
    ("en_IN", "The complainant Md. Shoaib Ansari was refunded ₹4,200.", ["Shoaib Ansari"], ["₹4,200"]),
    ("en_US", "Questions? Ask for Marvella at 1-800-555-0123.", ["Marvella"], ["1-800-555-0123"]),
    ("de_DE", "Die Klägerin Roswitha Albrecht verlangt 120 € zurück.", ["Roswitha Albrecht"], ["120 €"]),
    ("de_DE", "Kunde: ja, gunnar lindqvist", ["gunnar lindqvist"], ["Kunde:"]),
    ("en_US", "Customer: sure. its under my name, ashley brennan", ["ashley brennan"], ["Customer:"]),
    ("de_DE", "Meine FRITZ!Box und die Fritz!Box 7530 gehen nicht.", [], ["FRITZ!Box", "Fritz!Box 7530"]),
    ("es_ES", "Hola, soy Rebeca de PcComponentes, ¿en qué le ayudo?", ["Rebeca"], ["PcComponentes"]),
    # what the second blind batch showed
    ("en_US", "user: the charge was $45 on Monday. name is oksana petrenko", ["oksana petrenko"], ["$45", "Monday"]),
    ("de_DE", "Hallo, mein Name ist zdenka novak.", ["zdenka novak"], []),
    ("fr_FR", "bonjour je m'appelle anouk vermeulen", ["anouk vermeulen"], []),
    ("es_ES", "Buenas, me llamo xiomara.", ["xiomara"], []),
    ("en_GB", "Could you check the refund before Friday? Imogen", ["Imogen"], ["Friday"]),
    ("en_GB", "sorted, ta. cheers ffion", ["ffion"], []),
    ("de_DE", "passt, danke ilka!", ["ilka"], []),
    ("fr_FR", "c'est bon, merci ysaline", ["ysaline"], []),
    ("es_ES", "perfecto, gracias iratxe", ["iratxe"], []),
    # what the third blind batch showed
    ("en_IN", "My cousin Yashaswini booked it on Tata Cliq.", ["Yashaswini"], ["Tata Cliq"]),
    ("de_DE", "Meine Schwägerin Dragana hat das Paket angenommen.", ["Dragana"], ["Paket"]),
    ("fr_FR", "Mon colocataire Anselme a signé le bon.", ["Anselme"], []),
    ("es_ES", "Mi cuñada Azucena recogió el pedido 8812.", ["Azucena"], ["pedido 8812"]),
    ("de_DE", "Bitte bei Familie Brzezinski abgeben.", ["Brzezinski"], []),
    ("en_IN", "refund still pending for order 5521. regards, Ishaan Bhatnagar", ["Ishaan Bhatnagar"], ["order 5521"]),
    ("en_US", "Please fix this before Friday - Darnell W.", ["Darnell"], ["Friday"]),
    ("en_IN", "thanks a lot sushmita, the Jio recharge worked", ["sushmita"], ["Jio recharge"]),
    ("fr_FR", "coucou, moi c'est enzo, ma Freebox clignote", ["enzo"], ["Freebox"]),
    # what the fourth blind batch showed
    ("en_GB", "Hi, you've reached Oksana at Northgate Lettings.", ["Oksana"], ["Northgate Lettings"]),
    ("de_DE", "Guten Tag, Sie sind verbunden mit Björn vom Kundenservice.", ["Björn"], []),
    ("fr_FR", "Bonjour, vous êtes en ligne avec Corentin, que puis-je faire ?", ["Corentin"], []),
    ("es_ES", "Hola, le escribe Casilda, del servicio técnico.", ["Casilda"], []),
    ("en_IN", "good morning, myself prateek. the recharge failed", ["prateek"], []),
    ("en_IN", "Raghunandan this side, calling about the refund", ["Raghunandan"], ["the refund"]),
    ("de_DE", "ich bin's, mai-linh. Paket ist da", ["mai-linh"], ["Paket"]),
    # what the fifth blind batch showed
    ("en_US", "From Marguerite: the deposit was never returned.", ["Marguerite"], ["the deposit"]),
    ("en_IN", "my father-in-law Ramaswamy has the booking", ["Ramaswamy"], ["the booking"]),
    ("fr_FR", "c'est encore moi, anaïs. toujours pas de remboursement", ["anaïs"], []),
    ("fr_FR", "merci infiniment solal, c'est réglé", ["solal"], []),
    ("es_ES", "muchísimas gracias, begoña", ["begoña"], []),
    # what the sixth blind batch showed
    ("en_GB", "cheers for fixing it so fast imogen", ["imogen"], []),
    ("en_IN", "The officer, Sub-Inspector Chauhan, gave acknowledgement no. 31204567812.", ["Chauhan"], ["31204567812"]),
    ("en_IN", "Thanking you,\nLt. Col. (Retd.) Harbhajan Singh", ["Harbhajan Singh"], []),
    ("de_DE", "Herr Wortberg von der Verbraucherzentrale rät zum Fax.", ["Wortberg"], ["Verbraucherzentrale"]),
    ("de_DE", "hallo, ich bin's nochmal, henrike. passt alles?", ["henrike"], []),
    ("es_ES", "vale, gracias de nuevo almudena, hasta mañana", ["almudena"], ["hasta mañana"]),
    ("de_DE", "Sturmtief Andrea und Orkan Sabine haben das Dach beschädigt.", [], ["Sturmtief Andrea", "Orkan Sabine"]),
    ("en_IN", "Company Name: Lakshmi Traders\nBank Name: Canara Bank", [], ["Lakshmi Traders", "Canara Bank"]),
    ("en_US", "I paid twice: 5L6032477Y932901F. Ship it to 12 Oak St, Dayton, OH 45402.", [], ["5L6032477Y932901F"]),
    ("fr_FR", "Bonjour, ici Maxence de ManoMano.", ["Maxence"], ["ManoMano"]),
]
CLASS_LOOK_ALIKES = [
    "The engineer called twice. Support rang back, Sales wrote on Monday.",
    "Hope this helps!\nFAQ",
    "Thanks & regards,\nCustomer Care Team",
    "Sincerely,\nBilling Department",
    "Rank them:\n1. Yellow\n2. Orange\n3. Green\n4. Blue",
    "my name is misspelled on the invoice. My name is wrong.",
    "The file name is config, my name is on the list.",
    "Mein Name ist falsch geschrieben. Mon nom est mal écrit.",
    "Mit freundlichen Grüßen\nIhre Buchhaltung",
    "Cordialement,\nService Facturation",
    "Atentamente,\nDepartamento de Ventas",
    "User: yes please\nBot: ok Google Home is linked",
    "ok mark it as resolved, thanks",
    "yes grace period applies to the holder of the policy",
    "Bestellung läuft auf Hochtouren, ja genau",
    "oui, merci. La carte est au nom de la société.",
    "sí, vale, a nombre de la empresa",
    "本周总销量比上周总共多了一点，工作正常",
    "谢谢小编！麻烦老师看一下，问小区物业",
    "每天练习两个小时，各位老师都说客户满意度提高了，这位老师沿着小路走",
    "施工单位负责安全。解释人工智能的概念。",
    "Come up with a poem. Mark off the dates.",
    "谢谢阿姨，好的。感谢老师！",
    "my friend The Verge said so",
    "it's me, again. You've reached Customer Services. myself going to the shop.",
    "From Monday: new opening hours. From Customer Services: hello.",
    "cheers mate\nthanks again\nmerci beaucoup\ngracias chicos!\ndanke schön\nData types differ.",
]


@pytest.mark.parametrize(("locale", "text", "names", "keep"), CLASS_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CLASS_CASES)])
def test_holder_labels_reply_words_and_short_signatures_in_every_language(locale, text, names, keep):
    test_names_in_context_go_and_look_alikes_stay(locale, text, names, keep)


@pytest.mark.parametrize("text", CLASS_LOOK_ALIKES)
def test_the_new_classes_leave_look_alikes_alone(text):
    assert scrubbed(text) == text


ZH_CASES = [
    ("客服小王为您服务，请问有什么可以帮您？", "小王", []),
    ("好的，我跟孙经理确认一下再回复您", "孙经理", []),
    ("麻烦转告一下韩工，机房的空调坏了", "韩工", []),
    ("辛苦了，感谢！\n\n谢谢\n刘思远", "刘思远", []),
    ("你是小雅，一名耐心的客服助手。", "小雅", []),
    ("户名：周建华\n卡号见附件", "周建华", ["卡号"]),
    ("好的谢谢马姐～", "马姐", []),
    ("跟冯总确认一下，报价单含不含税", "冯", []),
    ("明天请钱工检查线路", "钱", []),
    ("持卡人是郑宇航，卡已挂失", "郑宇航", ["卡已挂失"]),
    ("护照上的名字是何嘉欣", "何嘉欣", []),
    ("谢谢小雯！快递收到了", "小雯", []),
    ("Thanks for checking!\n\nBest,\n阿杰", "阿杰", []),
    ("谢谢阿伟，快递到了", "阿伟", []),
    ("维修师傅小韩明天上门", "小韩", []),
    ("客户：免贵姓符，符嘉豪", "符嘉豪", []),
    ("我同事小邓上周去过网点", "小邓", []),
    ("派出所的黎警官说要带身份证", "黎警官", []),
]


@pytest.mark.parametrize(("text", "name", "keep"), ZH_CASES)
def test_chinese_forms_of_address_and_cues(text, name, keep):
    after = scrubbed(text)
    assert name not in after, after
    for value in keep:
        assert value in after


def test_chinese_brands_made_of_surnames_stay():
    text = "我在周大福买了手镯，又喝了王老吉，小米14也到了"
    assert scrubbed(text) == text


def test_a_name_found_once_goes_everywhere():
    text = "Agent: Hi Lewis, thanks for waiting\nlewis: no worries\nAgent: Great, Lewis."
    after = scrubbed(text)
    assert "Lewis" not in after and "lewis" not in after


def test_ordinary_words_that_are_names_need_context():
    text = "I hope the grace period covers it. Rose petals and a joy to use, frank and honest."
    assert scrubbed(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Line a baking sheet with paper.",
        "During an El Niño year the rains come late.",
        "We flew from London to Paris, then on to Argentina.",
        "Ingredients:\n- Eggs\n- Water",
        "Same here, the 2021 Season was long. However, here are the scores.",
    ],
)
def test_general_text_look_alikes_stay(text):
    assert scrubbed(text) == text


def test_name_lists_cover_every_latin_locale():
    given, surnames, common = lists()
    for name in ("Olivia", "Freya", "Mathis", "Leonie", "Encarnacion", "Aarav"):
        assert name.lower() in given, name
    assert {"garcia", "smith", "singh"} <= surnames
    assert {"rose", "luna", "dolores"} <= common


def test_every_name_list_is_cited_with_a_licence():
    sources = REPO / "gpudoctor" / "data" / "pii" / "sources"
    index = (sources / "SOURCES.md").read_text(encoding="utf-8")
    for path in sources.glob("*.txt"):
        assert f"`{path.name}`" in index, path.name
        assert "Licence" in path.read_text(encoding="utf-8")[:2000] or "licence" in index
    for name in ("names_short_forms.txt", "names_brands.txt"):
        head = (REPO / "gpudoctor" / "data" / "pii" / name).read_text(encoding="utf-8").splitlines()[:2]
        assert all(line.startswith("#") for line in head) and "by hand" in " ".join(head)


class FakeBackend:
    description = "fake"

    def persons(self, text):
        return [(m.start(), m.end()) for m in re.finditer(r"Zorblax Quux", text)]


def test_named_entity_backend_is_off_unless_asked_and_used_when_given():
    text = "The ticket was raised by Zorblax Quux yesterday."
    try:
        ner.set_backend(FakeBackend())
        assert "Zorblax" in scrubbed(text)  # off by default
        assert scrubbed(text, use_ner=True) == "The ticket was raised by <NAME> yesterday."
        ner.set_backend(None)
        assert scrubbed(text, use_ner=True) == text  # asked, but none installed
    finally:
        ner.reset()


def test_named_entity_backend_loads_only_official_models(monkeypatch):
    """A fake spaCy: a re-upload's name is never loaded; an official pipeline is, by name, and its PERSON spans used."""
    loaded = []

    class Ent:
        def __init__(self, start, end, label):
            self.start_char, self.end_char, self.label_ = start, end, label

    def load(name, exclude=()):
        loaded.append(name)
        return lambda text: type("Doc", (), {"ents": [Ent(4, 10, "PER"), Ent(14, 21, "LOC")]})()

    fake = types.ModuleType("spacy")
    fake.__spec__ = importlib.machinery.ModuleSpec("spacy", None)
    fake.__version__ = "0-test"
    fake.load = load
    monkeypatch.setitem(sys.modules, "spacy", fake)
    try:
        monkeypatch.setenv("GPUDOCTOR_NER_MODEL", "someone/reupload-of-a-model")
        ner.reset()
        assert ner.backend() is None and loaded == []
        monkeypatch.setenv("GPUDOCTOR_NER_MODEL", "xx_ent_wiki_sm")
        ner.reset()
        assert ner.backend() is not None and loaded == ["xx_ent_wiki_sm"]
        assert list(ner.ner_names("Ask Ingmar in Uppsala")) == [(4, 10, "NAME", "name (named-entity model)")]
    finally:
        ner.reset()


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pii", REPO / "bench" / "pii.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# measured with bench/pii.py --split dev --no-nlp: en_US 34/35, en_GB 40/41, the others all found
NAME_FLOORS = {"en_US": 0.94, "en_GB": 0.95, "en_IN": 0.97, "zh_CN": 0.97, "de_DE": 0.96, "fr_FR": 0.97, "es_ES": 0.96}


def test_dev_split_name_recall_per_locale_and_keep_rate():
    bench = _bench()
    result = bench.score(bench.load(bench.SET, "dev"), use_nlp=False)
    for locale, floor in NAME_FLOORS.items():
        hit, total = result["recall"][("name", locale)]
        assert hit / total >= floor, (locale, hit, total)
    kept, total = result["keep"]["all"]
    assert kept / total >= 0.98, (kept, total)


BLIND = REPO / "tests" / "fixtures" / "data" / "pii_blind"


def test_blind_sets_hold_the_targets_per_locale():
    """The six blind batches (tests/fixtures/data/pii_blind) after the fixes they led to, jieba off: names >= 90% in
    every locale, patterns 100%, addresses >= 90%, must-keep strings >= 98%."""
    bench = _bench()
    names = ("records.jsonl", "records_b2.jsonl", "records_b3.jsonl", "records_b4.jsonl", "records_b5.jsonl", "records_b6.jsonl")
    rows = [row for name in names for row in bench.load(BLIND / name, "all")]
    result = bench.score(rows, use_nlp=False)
    for locale in bench.LOCALES:
        hit, total = result["recall"][("name", locale)]
        assert hit / total >= 0.90, (locale, hit, total)
    for kind in ("phone", "email", "id", "card"):
        hit, total = result["recall"][(kind, "all")]
        assert hit == total, (kind, hit, total)
    hit, total = result["recall"][("address", "all")]
    assert hit / total >= 0.90, (hit, total)
    kept, total = result["keep"]["all"]
    assert kept / total >= 0.98, (kept, total)
