"""Person names: English names from shipped name lists and context, Chinese names from surnames and context.

Core rules (no extra packages):
- a listed given name, capitalised, optionally followed by capitalised surnames ("Sarah", "Sarah
  O'Connor"); given names that are also ordinary words ("Grace", "May", "Will") need a surname
  after them or a cue before them;
- a cue before a capitalised word: a title ("Dr. Okafor"), "my name is", a greeting or sign-off
  ("Dear Priya", "Thanks,\\nPriya");
- Chinese: a listed surname plus one or two characters after a cue ("我叫王小明") or before a
  form of address ("王先生", "李老师").
With the `nlp` extra, jieba's part-of-speech tagger adds Chinese person names (tag nr) that start
with a listed surname.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from importlib import resources

Hit = tuple[int, int, str, str]

NOT_SURNAMES = frozenset(
    """The A An And Or But Nor So Yet If In On At Of For To With From By Is Are Was Were Be Been I Me My
    We Our You Your He Him His She Her They Them Their It Its This That These Those There Here Who What
    When Where Why How Which Not No Yes All Any Some Every Each Both Monday Tuesday Wednesday Thursday
    Friday Saturday Sunday January February March April May June July August September October November
    December Street St Road Rd Avenue Ave Lane Drive Boulevard Court Place Square River Lake Mountain
    Mount Valley City County State Park University College School Institute Hospital Church Company Inc
    Ltd Corp Group Bank Hotel Airport Station Center Centre Museum Library Island Bay Beach North South
    East West Day Night Morning Evening Team World Everyone Sir Madam Thanks Thank Hi Hello Dear Best
    Regards Cheers Love Sincerely Please Also Then Now Today Tomorrow Yesterday Just Can Could Would Should
    Will Shall Must Might Did Do Does Has Have Had Said Says Let Get Got Make Made Go Went Take Took
    English Chinese French German Spanish Christmas Easter Award Prize Foundation Society Association
    Mr Mrs Ms Miss Mx Dr Prof Professor Customer Customers Friend Friends Colleague Colleagues Reader Readers
    Student Students Parent Parents Valued Member Members Manager Hiring Committee Board Editor Support Cup
    Elementary High Middle Weather Concern Whom Explorers Children Service Services Department Office Club League""".split()
)
TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Dame|Lady|Lord|Aunt|Uncle|Captain|Officer|Detective|Coach)"
CAP = r"[A-Z][a-z]+(?:['\u2019-][A-Z]?[a-z]+)?"
CAP_WORD = re.compile(rf"\b(?:Mc|Mac|O')?{CAP}\b")
NAME_RUN = re.compile(rf"\b{CAP}(?:\s+[A-Z]\.)?(?:[ ]+(?:Mc|Mac|O')?{CAP}){{0,2}}\b")
AFTER_TITLE = re.compile(rf"\b{TITLES}\.?[ ]+((?:Mc|Mac|O')?{CAP}(?:[ ]+(?:Mc|Mac|O')?{CAP})?)")
GREETINGS = r"\bDear|\bHi|\bHello|\bHey|\bThanks,|\bThank you,|\bRegards,|\bBest,|\bBest regards,|\bCheers,|\bSincerely,|\bLove,|\bYours,"
INTRODUCTIONS = r"\b[Mm]y name is|\b[Mm]y name's|\b[Cc]all me|\b[Nn]ame:|\bFrom:|\bTo:|\b[Ss]igned,?"
# A greeting counts only when the name ends the phrase ("Dear Priya," "Thanks,\nSam"), not "Dear Shape Explorers".
AFTER_GREETING = re.compile(rf"(?:{GREETINGS})[ \t]*\n?[ \t]*({CAP}(?:[ ]+(?:Mc|Mac|O')?{CAP})?)(?=[ ]*(?:[,!.\n]|$))")
AFTER_INTRODUCTION = re.compile(rf"(?:{INTRODUCTIONS})[ \t]*({CAP}(?:[ ]+(?:Mc|Mac|O')?{CAP})?)")

HAN = r"[\u4e00-\u9fff]"
ZH_STOP = set("的了是在和与及或说今我你他她它们这那有也都就把被给对向从到为以个位请吗呢吧啊，。、；：！？")
ZH_CUES = re.compile(r"(?:我叫|名叫|叫做|姓名[:：]?\s*|联系人[:：]?\s*|收件人[:：]?\s*|收货人[:：]?\s*|签名[:：]?\s*)")
ZH_ADDRESS_FORMS = "先生|女士|小姐|老师|同学|经理|总监|主任|医生|大夫|教授|律师|阿姨|叔叔|师傅|总|董"


@functools.cache
def _word_list(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all words, words marked * as ambiguous) from a shipped list."""
    text = resources.files("gpudoctor.data.pii").joinpath(name).read_text(encoding="utf-8")
    words = [w for line in text.splitlines() if not line.startswith("#") for w in line.split()]
    return frozenset(w.rstrip("*") for w in words), frozenset(w.rstrip("*") for w in words if w.endswith("*"))


def english_names(text: str) -> Iterator[Hit]:
    first, ambiguous = _word_list("names_en_first.txt")
    last, common = _word_list("names_en_last.txt")
    for m in AFTER_TITLE.finditer(text):
        if m.group(1).split()[0] not in NOT_SURNAMES:
            yield m.start(1), m.end(1), "NAME", "name (after a title)"
    for m in AFTER_INTRODUCTION.finditer(text):
        words = m.group(1).split()
        if words[0] not in NOT_SURNAMES:
            end = m.start(1) + len(words[0]) if len(words) > 1 and words[1] in NOT_SURNAMES else m.end(1)
            yield m.start(1), end, "NAME", "name (after an introduction)"
    for m in AFTER_GREETING.finditer(text):
        words = m.group(1).split()
        if any(w in NOT_SURNAMES for w in words):
            continue
        if len(words) == 1 or words[0] in first or words[1] in last:
            yield m.start(1), m.end(1), "NAME", "name (after a greeting)"
    for m in NAME_RUN.finditer(text):
        words = list(CAP_WORD.finditer(m.group()))
        for i, word in enumerate(words):
            w = word.group()
            if w not in first:
                continue
            tail = []
            for nxt in words[i + 1 :]:
                if nxt.group() in NOT_SURNAMES:
                    break
                tail.append(nxt)
            if w in ambiguous and not (tail and tail[0].group() in last):
                continue
            end = tail[-1].end() if tail else word.end()
            yield m.start() + word.start(), m.start() + end, "NAME", "name (name list)"
            break
        else:
            # "Priya Sharma": an unlisted given name before a listed surname
            for before, word in zip(words, words[1:]):
                if word.group() in last and word.group() not in common and before.group() not in NOT_SURNAMES:
                    yield m.start() + before.start(), m.start() + word.end(), "NAME", "name (surname list)"
                    break


@functools.cache
def _chinese_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    surnames, _ = _word_list("names_zh_surnames.txt")
    compound = "|".join(s for s in surnames if len(s) == 2)
    single = "".join(s for s in surnames if len(s) == 1)
    surname = rf"(?:{compound}|[{single}])"
    after_cue = re.compile(rf"({ZH_CUES.pattern})({surname}{HAN}{{1,2}})")
    before_form = re.compile(rf"(?<![\u4e00-\u9fff])({surname}{HAN}{{0,2}}?)(?:{ZH_ADDRESS_FORMS})")
    quick = re.compile(rf"{ZH_CUES.pattern}|{ZH_ADDRESS_FORMS}")
    return after_cue, before_form, quick


def chinese_names(text: str) -> Iterator[Hit]:
    after_cue, before_form, quick = _chinese_patterns()
    if not quick.search(text):
        return
    for m in after_cue.finditer(text):
        name = m.group(2)
        while len(name) > 2 and name[-1] in ZH_STOP:
            name = name[:-1]
        if name[-1] in ZH_STOP:
            continue
        yield m.start(2), m.start(2) + len(name), "NAME", "name (after a cue)"
    for m in before_form.finditer(text):
        if not any(c in ZH_STOP for c in m.group(1)):
            yield m.start(1), m.end(1), "NAME", "name (before a form of address)"


def jieba_available() -> bool:
    try:
        import jieba  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _jieba_posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


# jieba tags many dictionary words nr (陈述, 阳光, 宁静): a tagged word counts as a name only when
# jieba's dictionary does not know it as a common word (frequency at most JIEBA_MAX_FREQ). A given
# name that is also a frequent word (敏, 洋) still counts when made of characters common in given
# names (names_zh_given.txt).
JIEBA_MAX_FREQ = 20
JIEBA_COMMON_GIVEN = 1000  # "高水平": surname + a frequent non-name word is not a name


def jieba_names(text: str) -> Iterator[Hit]:
    """Chinese person names tagged nr by jieba (HMM for unseen words), starting with a listed surname."""
    if not re.search(HAN, text):
        return
    surnames, _ = _word_list("names_zh_surnames.txt")
    given_chars, _ = _word_list("names_zh_given.txt")
    posseg = _jieba_posseg()
    freq = posseg.dt.tokenizer.FREQ
    tags = posseg.dt.word_tag_tab
    pos = 0
    previous = ("", "", 0)
    for pair in posseg.cut(text):
        word, flag = pair.word, pair.flag
        start = text.find(word, pos)
        pos = start + len(word)
        before, before_flag, before_start = previous
        previous = (word, flag, start)
        # 周 + 建华: a lone surname tagged nr, then one or two given-name characters
        if before in surnames and before_flag == "nr" and before_start + len(before) == start and 1 <= len(word) <= 2:
            if all(c in given_chars for c in word):
                yield before_start, pos, "NAME", "name (jieba)"
                continue
        if flag not in ("nr", "nrt") or not 2 <= len(word) <= 4:
            continue
        if before in surnames and len(before) == 2 and before_start + 2 == start:  # 欧阳 + 娜娜
            yield before_start, pos, "NAME", "name (jieba)"
            continue
        if flag != "nr" or len(word) > 3:
            continue
        surname = word[:2] if word[:2] in surnames else word[0]
        given = word[len(surname) :]
        if surname not in surnames or not given:
            continue
        if (freq.get(word) or 0) > JIEBA_MAX_FREQ:
            continue  # 陈述, 宁静, 文明: a common dictionary word (this also misses famous names like 李娜)
        if (freq.get(given) or 0) > JIEBA_COMMON_GIVEN and tags.get(given) != "nr" and not all(c in given_chars for c in given):
            continue
        if len(word) == 3 and any((freq.get(part) or 0) > JIEBA_MAX_FREQ for part in (word[:2], word[1:])):
            if not all(c in given_chars for c in given):
                continue  # 胡椒粉, 支付宝: a common word plus one character
        yield start, pos, "NAME", "name (jieba)"
