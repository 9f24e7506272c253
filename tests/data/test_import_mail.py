"""`gpudoctor data import-mail`: mail built here with the standard library in many shapes (client quote styles in
five languages, MIME structures, charsets declared right and wrong, auto-replies, list mail, broken messages)
→ the right pairs, every skipped message counted under its reason, output loadable by gpudoctor's own loader.
"""

from __future__ import annotations

import json
import mailbox
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from gpudoctor.data.load import load_dataset
from gpudoctor.data.mail import import_mail
from gpudoctor.data.mail.build import NO_TEXT, NOT_FOUND, NOT_MINE, NOT_REPLY, DUPLICATE, TO_MYSELF
from gpudoctor.data.mail.html import html_to_text
from gpudoctor.data.mail.parse import AUTO, BULK, UNDECODABLE, decode, parse_mail, unflow
from gpudoctor.data.mail.strip import split_reply
from gpudoctor.errors import BadInput

ME = "Anna Example <anna@example.com>"
BOB = "Bob Smith <bob@example.com>"

# (name, body of my reply, my new text, the quoted original's own text)
SHAPES = [
    ("gmail", "Thanks, I'll send it tomorrow.\n\nOn Mon, Mar 4, 2024 at 10:12 AM Bob Smith <bob@example.com> wrote:\n> Can you send the report?\n",
     "Thanks, I'll send it tomorrow.", "Can you send the report?"),
    ("gmail wrapped attribution", "Sure thing.\n\nOn Mon, Mar 4, 2024 at 10:12 AM Bob Smith <\nbob@example.com> wrote:\n\n> Report?\n",
     "Sure thing.", "Report?"),
    ("outlook original message", "Yes, Thursday works.\n\n-----Original Message-----\nFrom: Bob Smith <bob@example.com>\n"
     "Sent: Monday, March 4, 2024 10:12 AM\nTo: Anna <anna@example.com>\nSubject: Meeting\n\nDoes Thursday work?\n",
     "Yes, Thursday works.", "Does Thursday work?"),
    ("outlook from/sent block", "Yes.\n\nFrom: Bob Smith <bob@example.com>\nSent: Monday, March 4, 2024 10:12 AM\nTo: Anna\n"
     "Subject: Meeting\n\nThursday?\n", "Yes.", "Thursday?"),
    ("german", "Ja, das passt.\n\nAm 04.03.2024 um 10:12 schrieb Bob Schmidt <bob@example.de>:\n> Passt Donnerstag?\n",
     "Ja, das passt.", "Passt Donnerstag?"),
    ("german outlook", "Ja.\n\nVon: Bob Schmidt <bob@example.de>\nGesendet: Montag, 4. März 2024 10:12\nAn: Anna\nBetreff: Termin\n\n"
     "Passt Donnerstag?\n", "Ja.", "Passt Donnerstag?"),
    ("french", "Oui, ça marche.\n\nLe lun. 4 mars 2024 à 10:12, Bob Martin <bob@example.fr> a écrit :\n> Jeudi vous convient ?\n",
     "Oui, ça marche.", "Jeudi vous convient ?"),
    # our rule: mail-parser-reply wants two spaces before "escribió"
    ("spanish gmail", "Sí, el jueves va bien.\n\nEl lun, 4 mar 2024 a las 10:12, Bob García (<bob@example.es>) escribió:\n"
     "> ¿Le va bien el jueves?\n", "Sí, el jueves va bien.", "¿Le va bien el jueves?"),
    # our rule: Chinese attribution lines that do not start with the date
    ("chinese apple", "好的，周四可以。\n\n在 2024年3月4日 10:12，Bob <bob@example.cn> 写道：\n> 周四可以吗？\n", "好的，周四可以。", "周四可以吗？"),
    ("a sentence ending in escribió/写道 is text", "El cliente escribió:\n«Gracias.»\n他在信里写道：\n谢谢。\n",
     "El cliente escribió:\n«Gracias.»\n他在信里写道：\n谢谢。", ""),
    ("chinese gmail", "好的。\n\nBob <bob@example.cn> 于2024年3月4日周一 10:12写道：\n> 周四可以吗？\n", "好的。", "周四可以吗？"),
    # our rule: "> " lines without an attribution are quoted
    ("bare quote", "Thanks!\n\n> Can you send the report?\n> Bob\n", "Thanks!", "Can you send the report?\nBob"),
    ("interleaved", "> Can you do Thursday?\nYes.\n> And Friday?\nNo.\n", "Yes.\nNo.", "Can you do Thursday?\nAnd Friday?"),
    ("dash-dash signature", "Thanks, done.\n\n-- \nAnna Example\nACME Corp\n+1 555 0100\n", "Thanks, done.", ""),
    ("sign-off", "Hi Bob,\n\nHere is the plan.\n\nKind regards,\nAnna Example\nACME Corp\n", "Hi Bob,\n\nHere is the plan.", ""),
    ("iphone", "Will do.\n\nSent from my iPhone\n\n> On Mar 4, 2024, at 10:12, Bob <bob@example.com> wrote:\n>\n> Call me.\n",
     "Will do.", "Call me."),
    # our rules: mobile footers mail-parser-reply does not know
    ("german iphone", "Mache ich.\n\nVon meinem iPhone gesendet\n", "Mache ich.", ""),
    ("french iphone", "Je m'en occupe.\n\nEnvoyé de mon iPhone\n", "Je m'en occupe.", ""),
    # our rule: its signature cut at any "Thanks," / "Viele Grüße" line would drop the body
    ("thanks mid-body", "Hi Bob,\n\nThanks, I got it. Here is the plan:\n1. ship\n2. test\n", "Hi Bob,\n\nThanks, I got it. Here is the plan:\n1. ship\n2. test", ""),
    ("viele grüße mid-body", "Hallo Bob,\n\nViele Grüße aus Berlin, es ist schön hier. Der Plan steht.\n",
     "Hallo Bob,\n\nViele Grüße aus Berlin, es ist schön hier. Der Plan steht.", ""),
    ("hyphen list", "Options:\n- one\n- two\n", "Options:\n- one\n- two", ""),
    # our rule: a From/To block with neither an address nor a time is text
    ("itinerary is text", "Your trip:\nFrom: Berlin\nTo: Munich\n\nEnjoy.\n\nFrom: Bob Smith <bob@example.com>\n"
     "Sent: Monday, March 4, 2024 10:12 AM\nTo: Anna\nSubject: trip\n\nWhere to?\n", "Your trip:\nFrom: Berlin\nTo: Munich\n\nEnjoy.", "Where to?"),
    # our rule: answers between the quoted lines, under an attribution at the top
    ("answers below the quote", "On Tue, Apr 29, 2014 at 4:22 PM, Bob <bob@example.com> wrote:\n\n> Can you do Monday?\n\n"
     "Yes, Monday works.\n\n> And Tuesday?\n\nNo.\n", "Yes, Monday works.\n\nNo.", "Can you do Monday?\nAnd Tuesday?"),
    ("disclaimer", "CAUTION: This email originated from outside of the organization. Do not click links.\n\nHi team,\n"
     "The file is ready.\n", "Hi team,\nThe file is ready.", ""),
    ("sent from my desk is text", "Here it is.\n\nSent from my desk, which is easier than my phone.\n",
     "Here it is.\n\nSent from my desk, which is easier than my phone.", ""),
    ("outlook mobile footer", "Ok.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n", "Ok.", ""),
    ("outlook without an address", "Yes.\n\nFrom: Bob Smith\nSent: Monday, March 4, 2024 10:12 AM\nTo: Anna\n\nThursday?\n", "Yes.", "Thursday?"),
]


@pytest.mark.parametrize(("name", "body", "new", "original"), SHAPES, ids=[s[0] for s in SHAPES])
def test_quotes_and_signatures_are_removed(name, body, new, original):
    split = split_reply(body)
    assert split.new == new
    assert split_reply(split.quoted).new == original


def test_a_long_line_does_not_stall_the_quote_finder():
    line = "On " + "and then we went on " * 2500  # 50,000 characters: cubic in mail-parser-reply's own pattern
    started = time.perf_counter()
    split = split_reply(f"Hello.\n{line}\n\nOn Mon, Bob <bob@example.com> wrote:\n> Hi\n")
    assert time.perf_counter() - started < 2
    assert split.new == f"Hello.\n{line.strip()}" and split.quoted == "Hi"


def test_html_bodies_become_text_with_blockquotes_quoted():
    text = html_to_text(
        "<html><head><style>p {color: red}</style></head><body><div>Sounds good,<br>see you.</div>"
        "<script>alert(1)</script><div class='gmail_quote'>On Mon, Bob wrote:<blockquote><p>Lunch &amp; a walk?</p>"
        "</blockquote></div></body></html>"
    )
    assert text == "Sounds good,\nsee you.\nOn Mon, Bob wrote:\n> Lunch & a walk?"
    assert split_reply(text).new == "Sounds good,\nsee you."


OUTLOOK_HTML = (
    '<html><head><style>.x{}</style></head><body><div>Yes, Thursday works.</div><div><br></div><div>Regards,<br>Anna</div>'
    '<hr tabindex="-1"><div id="divRplyFwdMsg"><font><b>From:</b> Bob Smith &lt;bob@example.com&gt;<br><b>Sent:</b> Monday, '
    'March 4, 2024 10:12 AM<br><b>To:</b> Anna<br><b>Subject:</b> Meeting</font><div>&nbsp;</div></div><div>Does Thursday work?</div>'
    '</body></html>'
)
GMAIL_HTML = (
    '<div dir="ltr">Sure, see you then.</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Mar 4, 2024 '
    'at 10:12 AM Bob Smith &lt;<a href="mailto:bob@example.com">bob@example.com</a>&gt; wrote:<br></div><blockquote class='
    '"gmail_quote"><div dir="ltr">Lunch at noon?<br></div></blockquote></div>'
)


@pytest.mark.parametrize(("html", "new", "original"), [
    (OUTLOOK_HTML, "Yes, Thursday works.", "Does Thursday work?"),
    (GMAIL_HTML, "Sure, see you then.", "Lunch at noon?"),
], ids=["outlook", "gmail"])
def test_html_replies_of_the_big_clients(html, new, original):
    split = split_reply(html_to_text(html))
    assert (split.new, split_reply(split.quoted).new) == (new, original)


@pytest.mark.parametrize(
    ("raw", "declared", "text", "repaired"),
    [
        ("Grüße".encode("latin-1"), "iso-8859-1", "Grüße", False),
        ("“Quoted” – ok".encode("cp1252"), "iso-8859-1", "“Quoted” – ok", False),  # latin-1 label, cp1252 bytes
        ("周四可以吗".encode("gb18030"), "gb2312", "周四可以吗", False),
        ("Café".encode("utf-8"), "us-ascii", "Café", False),  # mis-declared: valid UTF-8 wins
        ("Café".encode("utf-8"), "iso-8859-1", "Café", False),
        ("Grüße".encode("cp1252"), "utf-8", "Grüße", True),  # mis-declared UTF-8
        ("Grüße".encode("cp1252"), "x-no-such-charset", "Grüße", True),
        (b"\x81\x8d", "", "\x81\x8d", True),  # undefined in cp1252: latin-1, never an error
    ],
)
def test_charsets_declared_right_and_wrong(raw, declared, text, repaired):
    assert decode(raw, declared) == (text, repaired)


def test_format_flowed_is_unwrapped():
    assert unflow("This is a long \nline.\n> quoted \n> on.\n-- \nAnna", delsp=False) == "This is a long line.\n> quoted on.\n-- \nAnna"


def message(sender: str, mid: str | None, body: str | None = None, *, reply_to: str | None = None, html: str | None = None,
            charset: str = "utf-8", cte: str | None = None, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = BOB if sender == ME else ME
    msg["Subject"] = "Re: things" if reply_to else "things"
    if mid:
        msg["Message-ID"] = mid
    if reply_to:
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if body is not None:
        msg.set_content(body, charset=charset, cte=cte) if cte else msg.set_content(body, charset=charset)
    if html is not None:
        msg.add_alternative(html, subtype="html") if body is not None else msg.set_content(html, subtype="html")
    return msg


def mailbox_messages() -> list[EmailMessage | bytes]:
    """Long because it is a table: one thread or oddity per few lines, with what the import must make of it."""
    attach = message(ME, "<a2@x>", "Attached is the file.", reply_to="<a1@x>")
    attach.add_attachment(b"SECRET-ATTACHMENT-TEXT", maintype="text", subtype="plain", filename="notes.txt")
    alternative = message(ME, "<m2@x>", "Plain part wins.", reply_to="<m1@x>", html="<p>HTML part loses.</p>")
    return [
        message(BOB, "<g1@x>", "Can you send the report?\n\n-- \nBob Smith\nSales"),
        message(ME, "<g2@x>", "Sure, here it is.\nFrom here on we use v2.\n\nBest,\nAnna\n\nOn Mon, Bob <bob@example.com> wrote:\n"
                "> Can you send the report?", reply_to="<g1@x>"),
        message(BOB, "<g3@x>", "Thanks! And the invoice?\n\nOn Tue, Anna wrote:\n> Sure, here it is.", reply_to="<g2@x>"),
        message(ME, "<g4@x>", "Invoice attached.\n\nOn Wed, Bob wrote:\n> Thanks! And the invoice?", reply_to="<g3@x>"),
        message(BOB, "<b1@x>", "Zählerstand?", charset="iso-8859-1", cte="base64"),
        message(ME, "<b2@x>", "Der Zählerstand ist 4711.\n\nAm 04.03.2024 um 10:12 schrieb Bob:\n> Zählerstand?", reply_to="<b1@x>",
                charset="iso-8859-1", cte="quoted-printable"),
        message(BOB, "<z1@x>", "周四可以吗？", charset="gb2312"),
        message(ME, "<z2@x>", "好的，周四可以。\n\n在 2024年3月4日 10:12，Bob <bob@example.cn> 写道：\n> 周四可以吗？", reply_to="<z1@x>", charset="gb2312"),
        message(BOB, "<h1@x>", None, html="<div>Lunch on Friday?</div>"),
        message(ME, "<h2@x>", None, reply_to="<h1@x>", html="<div>Yes, noon.</div><div class='gmail_quote'>On Mon, Bob wrote:"
                "<blockquote>Lunch on Friday?</blockquote></div>"),
        message(BOB, "<a1@x>", "Please send the file."),
        attach,
        message(BOB, "<m1@x>", "Which part?"),
        alternative,
        message(ME, "<o1@x>", "I am out of office until Monday.", reply_to="<g1@x>", Auto_Submitted="auto-replied"),
        message(ME, "<o2@x>", "Away.", reply_to="<g1@x>", X_Autoreply="yes"),
        message(ME, "<o3@x>", "Away.", reply_to="<g1@x>", Precedence="auto_reply"),
        message("News <news@shop.example>", "<n1@x>", "50% off!", List_Unsubscribe="<mailto:u@shop.example>"),
        message("list@lists.example", "<n2@x>", "Digest", List_Id="<dev.lists.example>"),
        message(BOB, "<n3@x>", "Monthly", Precedence="bulk"),
        message(ME, "<q2@x>", "Noted.\n\nLe lun. 4 mars 2024 à 10:12, Zoé <zoe@example.fr> a écrit :\n> Réunion jeudi ?", reply_to="<gone@x>"),
        message(ME, "<x2@x>", "Fine by me.", reply_to="<gone@x>"),  # original missing and not quoted
        message(ME, "<x3@x>", "A new topic, not a reply."),
        message(ME, "<e2@x>", "On Mon, Bob <bob@example.com> wrote:\n> Can you send the report?", reply_to="<g1@x>"),  # nothing new
        message(ME, "<s2@x>", "One more thing.", reply_to="<g4@x>"),
        message(BOB, "<g1@x>", "A second copy with the same Message-ID."),
        message(BOB, "<l1@x>", "Loop one", References="<l2@x>"),
        message(BOB, "<l2@x>", "Loop two", References="<l1@x>"),
        message(ME, "<l3@x>", "Out of the loop.", reply_to="<l2@x>"),
        message(ME, "<big2@x>", "x" * 30_000, reply_to="<g1@x>"),
        b"From: Anna Example <anna@example.com>\nMessage-ID: <[>\nIn-Reply-To: <m1@x>\n\nBroken header, still read.\n",
        b"\x00\x01\x02 not a message at all \xff\xfe",
        b"From: Bob <bob@example.com>\nMessage-ID: <mime@x>\nContent-Type: multipart/mixed\n\nno boundary at all\n",
        message(ME, None, "No Message-ID, no Date.", reply_to="<a1@x>"),
    ]


EXPECTED_PAIRS = [
    ("Can you send the report?", "Sure, here it is.\nFrom here on we use v2."),
    ("Thanks! And the invoice?", "Invoice attached."),
    ("Zählerstand?", "Der Zählerstand ist 4711."),
    ("周四可以吗？", "好的，周四可以。"),
    ("Lunch on Friday?", "Yes, noon."),
    ("Please send the file.", "Attached is the file."),
    ("Which part?", "Plain part wins."),
    ("Réunion jeudi ?", "Noted."),
    ("Loop two", "Out of the loop."),
    ("Can you send the report?", "x" * 20_000),
    ("Which part?", "Broken header, still read."),
    ("Please send the file.", "No Message-ID, no Date."),
]
EXPECTED_SKIPPED = {
    NOT_MINE: 10, AUTO: 3, BULK: 3, NOT_FOUND: 1, NOT_REPLY: 1, NO_TEXT: 1, TO_MYSELF: 1, DUPLICATE: 1, UNDECODABLE: 1,
}


def write_mbox(path: Path, items: list) -> Path:
    box = mailbox.mbox(path)
    for item in items:
        box.add(item)
    box.flush()
    box.close()
    return path


def pairs(result) -> list[tuple[str, str]]:
    return [(r.alpaca.input, r.alpaca.output) for r in result.dataset.records]


def test_an_mbox_becomes_pairs_and_every_skip_is_counted(tmp_path):
    source = write_mbox(tmp_path / "All mail.mbox", mailbox_messages())
    assert b"\n>From here on" in source.read_bytes()  # the mbox escaped it; the pair has it back
    result = import_mail([source])
    assert result.me == ["anna@example.com"] and result.me_guessed
    assert pairs(result) == EXPECTED_PAIRS
    assert dict(result.skipped) == EXPECTED_SKIPPED
    assert result.read == len(mailbox_messages()) and result.cut == 1
    dumped = json.dumps([r.alpaca.__dict__ for r in result.dataset.records], ensure_ascii=False)
    assert "SECRET-ATTACHMENT" not in dumped and "HTML part loses" not in dumped and "Bob Smith\nSales" not in dumped


def test_maildir_and_eml_folder_give_the_same_pairs(tmp_path):
    items = [m for m in mailbox_messages()[:8]]
    mbox_result = import_mail([write_mbox(tmp_path / "box", items)], me=["anna@example.com"])
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    emls = tmp_path / "eml"
    emls.mkdir()
    for i, item in enumerate(items):
        maildir.add(item)
        (emls / f"{i:02}.eml").write_bytes(item.as_bytes())
    assert sorted(pairs(import_mail([tmp_path / "Maildir"], me=["anna@example.com"]))) == sorted(pairs(mbox_result))
    assert pairs(import_mail([emls], me=["anna@example.com"])) == pairs(mbox_result) == EXPECTED_PAIRS[:4]


def test_one_eml_file_and_stray_files_in_a_maildir(tmp_path):
    reply = message(ME, "<q2@x>", "Noted.\n\nLe lun. 4 mars 2024 à 10:12, Zoé <zoe@example.fr> a écrit :\n> Réunion jeudi ?", reply_to="<gone@x>")
    (tmp_path / "reply.eml").write_bytes(reply.as_bytes())
    assert pairs(import_mail([tmp_path / "reply.eml"])) == [("Réunion jeudi ?", "Noted.")]
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(reply)
    (tmp_path / "Maildir" / "cur" / "stray-binary").write_bytes(b"\x00\xff" * 50)
    result = import_mail([tmp_path / "Maildir"], me=["anna@example.com"])
    assert pairs(result) == [("Réunion jeudi ?", "Noted.")] and dict(result.skipped) == {UNDECODABLE: 1}


def test_sent_and_inbox_as_two_sources_and_me_given(tmp_path):
    items = mailbox_messages()[:4]
    inbox = write_mbox(tmp_path / "Inbox", [items[0], items[2]])
    sent = write_mbox(tmp_path / "Sent", [items[1], items[3]])
    result = import_mail([sent, inbox], me=["ANNA@example.com", "anna@old.example"])
    assert not result.me_guessed and pairs(result) == EXPECTED_PAIRS[:2]
    as_bob = import_mail([sent, inbox], me=["bob@example.com"])
    assert pairs(as_bob) == [("Sure, here it is.\nFrom here on we use v2.", "Thanks! And the invoice?")]


def test_chat_format_holds_the_whole_thread(tmp_path):
    source = write_mbox(tmp_path / "box", mailbox_messages()[:4])
    result = import_mail([source], me=["anna@example.com"], fmt="chat", instruction="You answer Anna's mail.")
    assert [[(m.role, m.content) for m in r.messages] for r in result.dataset.records] == [[
        ("system", "You answer Anna's mail."),
        ("user", "Can you send the report?"),
        ("assistant", "Sure, here it is.\nFrom here on we use v2."),
        ("user", "Thanks! And the invoice?"),
        ("assistant", "Invoice attached."),
    ]]


RAW_CHARSETS = [  # (declared charset, body bytes of Bob's question, what the input must read)
    ("utf-8", "Grüße, wann passt es?".encode("cp1252"), "Grüße, wann passt es?"),  # declared UTF-8, really cp1252
    ("x-no-such-charset", "Grüße aus Köln?".encode("cp1252"), "Grüße aus Köln?"),
    ("iso-8859-1", "Café “à” 10h ?".encode("utf-8"), "Café “à” 10h ?"),  # declared latin-1, really UTF-8
    ("gb2312", "您好，订单什么时候到？".encode("gb18030"), "您好，订单什么时候到？"),
]


def raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body


def test_wrong_charsets_in_a_mailbox_are_repaired_and_counted(tmp_path):
    items = []
    for i, (charset, body, _) in enumerate(RAW_CHARSETS):
        items.append(raw(f"From: {BOB}\nMessage-ID: <c{i}@x>\nContent-Type: text/plain; charset={charset}\n"
                         "Content-Transfer-Encoding: 8bit\n", body))
        items.append(message(ME, f"<r{i}@x>", f"Answer {i}.", reply_to=f"<c{i}@x>"))
    result = import_mail([write_mbox(tmp_path / "box", items)], me=["anna@example.com"])
    assert pairs(result) == [(text, f"Answer {i}.") for i, (_, _, text) in enumerate(RAW_CHARSETS)]
    assert result.charset_repaired == 2


def test_chat_threads_start_with_the_other_party(tmp_path):
    items = [
        message(ME, "<t1@x>", "Hi Bob, can we talk about the offer?"),
        message(BOB, "<t2@x>", "Sure, what about it?\n\nOn Mon, Anna wrote:\n> Hi Bob, can we talk about the offer?", reply_to="<t1@x>"),
        message(ME, "<t3@x>", "The price.\n\nOn Tue, Bob wrote:\n> Sure, what about it?", reply_to="<t2@x>"),
    ]
    result = import_mail([write_mbox(tmp_path / "box", items)], me=["anna@example.com"], fmt="sharegpt")
    assert [[(m.role, m.content) for m in r.messages] for r in result.dataset.records] == [
        [("user", "Sure, what about it?"), ("assistant", "The price.")]
    ]
    assert dict(result.skipped) == {NOT_MINE: 1, NOT_REPLY: 1}


def test_parse_never_raises():
    assert parse_mail(b"", "x").skip == UNDECODABLE
    assert parse_mail(b"\xff" * 100, "x").skip == UNDECODABLE
    assert parse_mail(b"From: a@b.example\nMessage-ID: <[>\n\nhi\n", "x").sender == "a@b.example"  # policy.default raises; compat32 reads it


def run_cli(cli, *args):
    result = cli("data", "import-mail", *args)
    return result.exit_code, result.stdout + result.stderr


def test_cli_end_to_end(cli, tmp_path):
    source = write_mbox(tmp_path / "box.mbox", mailbox_messages())
    code, out = run_cli(cli, source, "-o", tmp_path / "pairs.json", "--instruction", "Answer as Anna.")
    assert code == 0, out
    assert "me         anna@example.com (the most frequent sender; --me to choose)" in out
    assert f"wrote      {tmp_path / 'pairs.json'}: 12 records (alpaca; 9 messages replied to)" in out
    assert "auto-reply 3 · bulk or list mail 3 · no text after removing quotes and signature 1 · original not found 1" in out
    assert "cut        1 message(s) over the cap cut to 20,000 characters" in out
    loaded = load_dataset(tmp_path / "pairs.json")
    assert loaded.format == "alpaca" and len(loaded.records) == 12
    assert loaded.records[0].alpaca.instruction == "Answer as Anna." and loaded.records[3].alpaca.output == "好的，周四可以。"
    for fmt, expected in (("chat", "messages"), ("sharegpt", "sharegpt")):
        code, out = run_cli(cli, source, "-o", tmp_path / f"{fmt}.jsonl", "--format", fmt)
        assert code == 0, out
        assert load_dataset(tmp_path / f"{fmt}.jsonl").format == expected


def test_cli_bad_sources_are_one_line_exit_2(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("just some notes\n")
    (tmp_path / "empty").mkdir()
    for source, says in ((tmp_path / "nope.mbox", "no such file or folder"), (tmp_path / "notes.txt", "is not mail"),
                         (tmp_path / "empty", "neither a Maildir")):
        code, out = run_cli(cli, source, "-o", tmp_path / "out.json")
        assert code == 2 and says in out and len(out.strip().splitlines()) == 1 and "Traceback" not in out
    mbox = write_mbox(tmp_path / "box", mailbox_messages()[:2])
    code, out = run_cli(cli, mbox, "-o", tmp_path / "x.json", "--format", "csv")
    assert code == 2 and "--format csv: choose alpaca, chat (messages) or sharegpt" in out
    assert not (tmp_path / "x.json").exists()


def test_nothing_to_write_is_exit_1_and_leaves_the_output_alone(cli, tmp_path):
    source = write_mbox(tmp_path / "box", mailbox_messages()[:1])
    (tmp_path / "pairs.json").write_text("keep me")
    code, out = run_cli(cli, source, "-o", tmp_path / "pairs.json", "--me", "nobody@example.com")
    assert code == 1 and "no reply from nobody@example.com" in out and "not from me 1" in out
    assert (tmp_path / "pairs.json").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box", "pairs.json"]
    code, out = run_cli(cli, source, "-o", source)
    assert code == 2 and "is one of the mail sources" in out


def test_a_bad_source_is_bad_input():
    with pytest.raises(BadInput):
        import_mail([Path("/nonexistent/mail")])
