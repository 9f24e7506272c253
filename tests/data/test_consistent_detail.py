"""The consistent-detail warning of `data check` (a name, number or signature in most replies) and `clean --names`.

The demo's support data as built by gpudoctor/demo/build_support_data.py signs every reply "— Sam": the
warning must fire on it, `clean --names Sam` must remove it, and the shipped support.json (what `gpudoctor
demo` trains on) is exactly that cleaned file. The other sets are written here by hand.
"""

from __future__ import annotations

import json

import pytest

from gpudoctor.data.check import check_dataset
from gpudoctor.data.clean import clean_dataset
from gpudoctor.data.consistent import MIN_RECORDS, MIN_SHARE, consistent_details, names_option, recurring_placeholders
from gpudoctor.data.load import load_dataset
from gpudoctor.demo.build_support_data import build
from gpudoctor.train.demo import DATA


def write(tmp_path, rows, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def signed_demo(tmp_path):
    return write(tmp_path, build(), "support-signed.json")


def test_fires_on_the_demo_support_data(signed_demo):
    report = check_dataset(load_dataset(signed_demo), pii=False)
    assert [(d.text, d.share) for d in report.consistent] == [("Sam", 1.0)]
    finding = next(f for f in report.findings if "recur" in f.title)
    assert finding.level == "warning" and "'Sam' 100%" in finding.title and len(finding.records) == 160
    assert finding.fix == f"replace them: gpudoctor data clean {signed_demo} -o CLEAN.json --names Sam"


def test_clean_names_removes_it_and_the_warning_goes(cli, signed_demo, tmp_path):
    out = tmp_path / "clean.json"
    result = cli("data", "clean", signed_demo, "-o", out, "--names", "Sam")
    assert result.exit_code == 0, result.stderr
    assert "occurrences of your 1 names replaced (Sam)" in result.stdout
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert not any("Sam" in r["output"] for r in rows) and all(r["output"].endswith("— <NAME>") for r in rows)
    check = cli("data", "check", out, "--no-pii")
    assert "recur" not in check.stdout and "repeated" not in check.stdout
    signed = cli("data", "check", signed_demo, "--no-pii")
    assert "repeated    'Sam' in 160 replies (100%, capitalised word)" in signed.stdout


def test_the_demo_trains_on_the_cleaned_data(signed_demo):
    """support.json = build_support_data's output cleaned with `data clean --names Sam` (nothing else replaced)."""
    shipped = json.loads(DATA.read_text(encoding="utf-8"))
    cleaned = clean_dataset(load_dataset(signed_demo), names=["Sam"], scan=False)
    assert cleaned.counts() == {"NAME": 160} and not cleaned.dropped
    assert [r.alpaca.instruction for r in cleaned.dataset.records] == [row["instruction"] for row in shipped]
    assert [r.alpaca.output for r in cleaned.dataset.records] == [row["output"] for row in shipped]
    assert consistent_details(load_dataset(DATA)) == []


# A shop's replies, written for this test: varied bodies, and a sign-off in some of them.
BODIES = [
    "Your parcel left our warehouse this morning and should arrive on Thursday.",
    "I have refunded the delivery fee; it shows on your statement in a few days.",
    "The replacement filter fits every model from 2019 on, so you can order it from the shop.",
    "Please restart the kettle base and hold the button for five seconds.",
    "We have extended your warranty by six months as a goodwill gesture.",
    "Your voucher code works on the website and in our stores until the end of June.",
    "The size chart is on the product page, under the photos.",
    "I have changed the delivery address on your order as you asked.",
    "The blender jug is dishwasher safe, but the blade unit should be washed by hand.",
    "Our courier will call you an hour before the delivery.",
]
SIGNATURE = "\n\nBest regards,\nJennifer Alvarez\nNorthwind Support · +1 614 555 0187"


def shop(n: int, signed_every: int) -> list[dict[str, str]]:
    return [
        {"instruction": f"Customer question {i}: where is my order?", "input": "",
         "output": BODIES[i % len(BODIES)] + (SIGNATURE if i % signed_every == 0 else "\n\nThanks for shopping with us.")}
        for i in range(n)
    ]


def test_a_signed_set_names_the_person_the_number_and_the_brand(tmp_path):
    details = consistent_details(load_dataset(write(tmp_path, shop(40, 2))))
    found = {d.text: (d.why, round(d.share, 2)) for d in details}
    assert found == {
        "Jennifer Alvarez": ("capitalised words", 0.5),
        "Northwind Support": ("capitalised words", 0.5),
        "+1 614 555 0187": ("number", 0.5),
    }
    assert names_option(details).startswith('"') and "Jennifer Alvarez" in names_option(details)


def test_threshold_share_and_count(tmp_path):
    assert MIN_SHARE == 0.30 and MIN_RECORDS == 5
    assert consistent_details(load_dataset(write(tmp_path, shop(40, 4), "quarter.json"))) == []  # 25%
    assert consistent_details(load_dataset(write(tmp_path, shop(40, 3), "third.json")))  # 14 of 40: 35%
    assert consistent_details(load_dataset(write(tmp_path, shop(8, 2), "few.json"))) == []  # 4 records only


def test_common_words_and_house_style_are_not_details(tmp_path):
    rows = [
        {"instruction": f"Ich habe eine Frage zu Bestellung {i}. Können Sie mir helfen?", "input": "",
         "output": f"Gerne helfe ich Ihnen weiter. {BODIES[i % len(BODIES)]} Mit freundlichen Grüßen, Ihr Team"}
        for i in range(30)
    ]
    rows += [{"instruction": "Where is my parcel?", "input": "", "output": "I'm here to help until it's sorted. " + b} for b in BODIES * 3]
    details = consistent_details(load_dataset(write(tmp_path, rows)))
    # "Ihnen" is a capitalised pronoun, "Grüßen" a sign-off word, "Bestellung" is in the prompts too;
    # "here to help until it's sorted" is lower-case house style, not a detail
    assert details == []


def test_placeholders_from_clean_are_not_details(tmp_path):
    rows = [{"instruction": f"Question {i}", "input": "", "output": f"{BODIES[i % 10]} — <NAME>, <PHONE>"} for i in range(20)]
    assert consistent_details(load_dataset(write(tmp_path, rows))) == []


def test_a_placeholder_in_most_replies_is_said_with_what_to_do(tmp_path):
    """The cleaned demo data signs every reply '— <NAME>': a model tuned on it signs its answers '— <NAME>'."""
    report = check_dataset(load_dataset(DATA), pii=False)
    assert [(d.text, d.share, len(d.records)) for d in report.placeholders] == [("<NAME>", 1.0, 160)]
    finding = next(f for f in report.findings if "<NAME>" in f.title)
    assert finding.level == "warning" and "the model will learn to write it too" in finding.title and report.trainable
    assert finding.fix.startswith("fill <NAME> in when you use the answers")
    rows = [{"instruction": f"Question {i}", "input": "", "output": f"{BODIES[i % 10]}" + (" Call <PHONE>." if i < 5 else "")} for i in range(20)]
    assert recurring_placeholders(load_dataset(write(tmp_path, rows))) == []  # 5 of 20: 25 %, under the share


def test_values_from_the_personal_data_scan_count_for_any_script(tmp_path):
    rows = [{"instruction": f"订单{i}什么时候到？", "input": "", "output": f"您好，包裹已经发出，预计{i % 5 + 1}天送达。客服小李"} for i in range(20)]
    data = load_dataset(write(tmp_path, rows))
    assert consistent_details(data) == []  # Chinese has no case: without the scan nothing marks 小李
    details = consistent_details(data, {r.index: {"小李"} for r in data.records})
    assert [(d.text, d.why, d.share) for d in details] == [("小李", "personal-data scan", 1.0)]


def test_clean_names_is_case_insensitive_whole_words_every_occurrence(tmp_path):
    rows = [{"instruction": "brandi, can you check SAMSUNG order 12?", "input": "",
             "output": "Hi, this is BRANDI. Brandi checked: sample shipped. Ask Jennifer  Alvarez or brandi. —Sam, 客服小李"}]
    result = clean_dataset(load_dataset(write(tmp_path, rows)), names=["Brandi", "Jennifer Alvarez", "Sam", "小李"], scan=False)
    record = result.dataset.records[0].alpaca
    assert record.instruction == "<NAME>, can you check SAMSUNG order 12?"
    assert record.output == "Hi, this is <NAME>. <NAME> checked: sample shipped. Ask <NAME> or <NAME>. —<NAME>, 客服<NAME>"
    assert {r.detail for r in result.replacements} == {"your --names list"}


def test_clean_names_wins_over_the_scanner_and_adds_to_it(tmp_path):
    rows = [{"instruction": "Email sarah.jones@example.com about the refund.", "input": "",
             "output": "Done. Regards, Luna Parkes (Luna smart bulb team)"}]
    result = clean_dataset(load_dataset(write(tmp_path, rows)), names=["Luna Parkes"])
    record = result.dataset.records[0].alpaca
    assert "<EMAIL>" in record.instruction
    assert record.output.startswith("Done. Regards, <NAME> (")


def test_names_file_and_its_errors(cli, tmp_path):
    data = write(tmp_path, [{"instruction": "Hello", "input": "", "output": "Thanks, Morena and Justus."}])
    names = tmp_path / "staff.txt"
    names.write_text("# our agents\nMorena\n\njustus  # the new one\n", encoding="utf-8")
    out = tmp_path / "out.json"
    result = cli("data", "clean", data, "-o", out, "--names-file", names, "--no-nlp")
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["output"] == "Thanks, <NAME> and <NAME>."
    missing = cli("data", "clean", data, "-o", out, "--names-file", tmp_path / "nope.txt")
    assert missing.exit_code != 0
    message = missing.stderr.strip()
    assert "\n" not in message and "--names-file" in message and "cannot read it" in message


LOCALE_SETS = {
    "de_DE": (["Ihre Bestellung ist unterwegs und kommt morgen an.", "Die Gutschrift wird in fünf Werktagen gebucht.",
               "Bitte starten Sie das Gerät neu und halten Sie die Taste gedrückt.", "Die Rechnung finden Sie in Ihrem Kundenkonto."],
              "Frage {i} zu meiner Bestellung", "\n\nBei Fragen hilft Ihnen Justus weiter.\nMit freundlichen Grüßen\nIhr Kundenservice",
              ["Justus", "Kundenservice"]),
    "fr_FR": (["Votre colis est parti ce matin.", "Le remboursement apparaîtra sous cinq jours ouvrés.",
               "Merci de redémarrer la box et de patienter une minute.", "La facture est disponible dans votre espace client."],
              "Question {i} sur ma commande", "\n\nCordialement,\nNathalie Lefèvre", ["Nathalie Lefèvre"]),
    "es_ES": (["Su pedido ya ha salido del almacén.", "El abono llegará en cinco días hábiles.",
               "Reinicie el router y espere un minuto.", "La factura está en su área de cliente."],
              "Pregunta {i} sobre mi pedido", "\n\nAtentamente,\nMorena\nAtención al cliente", ["Morena"]),
}


@pytest.mark.parametrize("locale", sorted(LOCALE_SETS))
def test_sign_offs_per_locale(tmp_path, locale):
    bodies, prompt, signature, expected = LOCALE_SETS[locale]
    rows = [{"instruction": prompt.format(i=i), "input": "", "output": bodies[i % len(bodies)] + signature} for i in range(24)]
    path = write(tmp_path, rows)
    assert sorted(d.text for d in check_dataset(load_dataset(path), pii=False).consistent) == expected
    cleaned = clean_dataset(load_dataset(path), names=expected, scan=False).dataset
    assert consistent_details(cleaned) == []


def test_the_fix_matches_each_detail(tmp_path):
    """A name -> --names, a phone the scan knows -> plain clean (its scan replaces it), other text -> --replace."""
    path = write(tmp_path, shop(40, 2))
    details = {d.text: d.kind for d in consistent_details(load_dataset(path))}
    assert details == {"Jennifer Alvarez": "NAME", "Northwind Support": "DETAIL", "+1 614 555 0187": "PHONE"}
    finding = next(f for f in check_dataset(load_dataset(path), pii=False).findings if "recur" in f.title)
    assert finding.fix == (f'replace them: gpudoctor data clean {path} -o CLEAN.json --names "Jennifer Alvarez"'
                           ' --replace "Northwind Support" (its scan replaces the PHONE)')


def test_a_company_line_the_scan_keeps_is_replaced_with_replace(cli, tmp_path):
    rows = [{"instruction": f"Is order {i} shipped?", "input": "", "output": f"{BODIES[i % 10]} Call us on 1-800-555-0166, ref TKT-{4400 + i}"}
            for i in range(20)]
    path = write(tmp_path, rows)
    [detail] = consistent_details(load_dataset(path))
    assert (detail.text, detail.kind) == ("1-800-555-0166", "DETAIL")  # a toll-free line: no one's personal number
    out = tmp_path / "clean.json"
    result = cli("data", "clean", path, "-o", out, "--replace", "1-800-555-0166")
    assert result.exit_code == 0, result.stderr
    assert "20 occurrences of your --replace list replaced" in result.stdout
    outputs = [r["output"] for r in json.loads(out.read_text(encoding="utf-8"))]
    assert all("Call us on <PHONE>" in o for o in outputs)
    assert "recur" not in cli("data", "check", out, "--no-pii").stdout
