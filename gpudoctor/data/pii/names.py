"""Person names: Latin-script names (latin_names.py) and Chinese names from surnames and context.

Latin script (English, German, French, Spanish, Indian English): official given-name lists plus context
rules per language, see `latin_names` and `name_context`.
Chinese, core rules (no extra packages): a listed surname plus one or two characters after a cue
("我叫王小明", "户名：潘晓东", "谢谢\n林小雨") or before a form of address ("王先生", "跟耿经理说", "罗工");
小/老 + surname ("小李", "老王"), and 小/老 + any character after 客服/你是 ("客服小美"). Brands made of
surnames (王老吉, 周大福) stay. A name found once is removed wherever it occurs in the text.
With the `nlp` extra, jieba's part-of-speech tagger adds Chinese person names (tag nr) that start
with a listed surname.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from importlib import resources

from gpudoctor.data.pii import latin_names, name_context

Hit = tuple[int, int, str, str]

NOT_SURNAMES = latin_names.NOT_NAMES


def english_names(text: str) -> Iterator[Hit]:
    """Names in Latin-script text, all supported languages (kept under its old name for callers)."""
    return latin_names.latin_names(text)


HAN = r"[\u4e00-\u9fff]"
ZH_STOP = set("的了是在和与及或说今我你他她它们这那有也都就把被给对向从到为以个位请吗呢吧啊，。、；：！？")
# cues before a name; the labels of who holds an account, card, booking, passport or badge also without a colon
ZH_LABELS = "户名|开户名|账户名|户主|持卡人|姓名|联系人|收件人|收货人|收款人|付款人|签名|预订人|订票人|入住人|乘机人|乘车人|投保人|被保险人|护照上的名字|护照上的姓名|护照上写的|工牌上写的|胸牌上写的"
ZH_CUES = re.compile(rf"(?:我叫|名叫|客服|本人|客户|叫做|(?:{ZH_LABELS})(?:[:：]\s*|是|为|写的是)?\s*)")
ZH_ADDRESS_FORMS = name_context.ZH_FORMS


@functools.cache
def _word_list(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all words, words marked * as ambiguous) from a shipped list."""
    text = resources.files("gpudoctor.data.pii").joinpath(name).read_text(encoding="utf-8")
    words = [w for line in text.splitlines() if not line.startswith("#") for w in line.split()]
    return frozenset(w.rstrip("*") for w in words), frozenset(w.rstrip("*") for w in words if w.endswith("*"))


ZH_SINGLE_FORMS = "总工姐哥董"
# words that a single-character form opens: after a surname they are no form of address ("周总是", "李工作")
ZH_FORM_WORDS = frozenset(
    """总是 总共 总部 总结 总算 总之 总体 总价 总计 总额 总量 总数 总和 总的 总会 总要 总得 总能 总有 总在 总说 总觉 总站 总店 总台 总机 总线 总账 总包
    工作 工资 工具 工厂 工程 工人 工单 工号 工期 工业 工艺 工位 工商 工会 工序 工时 工费 工地 工伤 工钱 工本
    姐妹 姐姐 哥哥 哥们 董事""".split()
)
# verbs and prepositions whose object is a person: "跟冯总确认", "请钱工检查", "麻烦韩工看一下"
ZH_BEFORE_PERSON = re.compile(r"(?:跟|和|与|同|找|问|给|请|让|叫|帮|催|向|对|联系|转告|通知|告诉|麻烦|拜托|感谢|谢谢|辛苦)$")
# 小/老 + a character that is an ordinary word, not a nickname: "谢谢小编", "麻烦老师", "问小区物业"
ZH_XIAO_WORDS = frozenset(
    """小编 小区 小时 小孩 小朋友 小姐 小哥 小伙 小心 小店 小二 小妹 小弟 小票 小程 小组 小说 小米 小鹏 小红 小费 小计 小号 小件 小样
    小学 小型 小数 小吃 小麦 小路 小丑 小康 小额 小包 小鸟 小狗 小猫 小屋 小镇 小城 小河 小溪 小草 小白 小黄 小车 小队 小结 小题 小节
    老师 老板 老公 老婆 老人 老家 老乡 老铁 老爸 老妈 老总 老大 老客 老用 老款 老版 老化 老是 老年 老虎 老鼠 老实 老式 老旧 老百 老牌
    老外 老爷 老字 老街 老城 老司 老友 老样 老鹰 老少 阿姨 阿里 阿婆 阿公 阿爸 阿妈 阿哥 阿弟 阿拉 阿胶""".split()
)
# ordinary words that open right after a cue like 客户/客服/本人: "客户满意度", "客服中心", "本人签字"
ZH_CUE_WORDS = frozenset(
    """满意 服务 经理 信息 资料 需求 体验 群体 关系 专员 中心 电话 代表 数据 名单 反馈 投诉 热线 人员 支持 系统 邮箱 留言 评价 订单
    签字 签名 确认 承诺 申请 同意 身份 账户 账号 地址 姓名 须知""".split()
)
ZH_LEADING_VERB = re.compile(r"麻烦|谢谢|感谢|拜托|辛苦|通知|告诉|转告|联系")
# words that open what a person does next: "小韩明天上门", "老周已经到了", "小李负责"
ZH_NEXT_WORDS = frozenset(
    """明天 今天 昨天 后天 上午 下午 晚上 中午 马上 已经 正在 刚才 刚刚 现在 一会 稍后 负责 上门 联系 回复 处理 帮您 给您 帮你 给你
    说过 告诉 打电话 发消息 来了 到了 不在 在吗 这边 那边 上个 上周 上次 下次 去年 今年 昨晚 前天 每天 一直 总是 经常 也是 还是""".split()
)
ZH_TIME_WORDS = frozenset("上周 下周 本周 这周 每周 一周 两周 几周 前周 同周 当周 次周".split())
ZH_AFTER_SINGLE = set("您你说的吗呢啊吧和跟让也都在来去好谢请已为")  # "王总您好", "罗工说": the form ends the word


@functools.cache
def _chinese_patterns() -> dict[str, re.Pattern[str]]:
    surnames, _ = _word_list("names_zh_surnames.txt")
    compound = "|".join(s for s in surnames if len(s) == 2)
    single = "".join(s for s in surnames if len(s) == 1)
    surname = rf"(?:{compound}|[{single}])"
    return {
        "after_cue": re.compile(rf"({ZH_CUES.pattern})({surname}{HAN}{{1,2}})"),
        "before_form": re.compile(rf"(?<![\u4e00-\u9fff])({surname}{HAN}{{0,2}}?)(?:{ZH_ADDRESS_FORMS})"),
        # "跟耿经理说", "转告罗工": a surname right before a form, inside a sentence
        "inner_form": re.compile(rf"({surname})(?:{ZH_ADDRESS_FORMS})(.?)"),
        # "小李", "老王"; after a cue any character: "客服小美", "你是小美"
        "xiao": re.compile(rf"([小老]{surname})(.?)"),
        "cue_xiao": re.compile(rf"(?:客服|你是|您是|我是|我叫|这里是|谢谢|感谢|辛苦|麻烦|拜托|跟|找|问|让|请|朋友|同事|同学|邻居|室友|表哥|表姐|表妹|表弟|哥哥|姐姐|弟弟|妹妹)([小老阿]{HAN})(?![\u4e00-\u9fff]{{2}})"),
        # "我姓车，车建平", "免贵姓王": the surname said alone, and the full name right after it
        "surname_said": re.compile(rf"(?:我姓|免贵姓|本人姓)({surname})(?:[，,、]\s*(\1{HAN}{{1,2}}))?"),
        "intro": re.compile(rf"(?:我是|我叫|你是|您是)({surname}{HAN}{{1,2}})(?=[，,。！!\s]|$)"),
        "sign_off": re.compile(
            rf"(?m)(?:谢谢|感谢|此致\s*敬礼|祝好)[！!。，,]?[ \t]*\n(?:[ \t]*\n)?[ \t]*(?!谢谢|感谢|此致|敬礼)"
            rf"(?:(?:[A-Za-z]+|{HAN}{{1,4}}部)[ \t]+)?({surname}{HAN}{{1,2}})[ \t]*$"
        ),
        # a Chinese name or nickname alone under an English sign-off: "Best,\n阿翰", "Thanks,\n小雨", "Regards,\n王磊"
        "latin_sign_off": re.compile(
            rf"(?im)^[ \t]*(?:{name_context.SIGN_OFFS})[ \t]*[,.!]?[ \t]*\n[ \t]*([阿小老]{HAN}|{surname}{HAN}{{1,2}})[ \t]*$"
        ),
        # the customer's turn is only a name (the answer to 您的姓名是？)
        "turn": re.compile(rf"(?m)^(?:用户|客户|顾客)[:：][ \t]*({surname}{HAN}{{1,2}})[ \t]*$"),
        "quick": re.compile(rf"{ZH_CUES.pattern}|{ZH_ADDRESS_FORMS}|[小老阿姓]|谢谢|感谢|敬礼|你是|您是|我是"),
    }


def chinese_names(text: str) -> Iterator[Hit]:
    p = _chinese_patterns()
    if not re.search(HAN, text) or not p["quick"].search(text):
        return
    hits = [h for h in _chinese_hits(text, p) if not ZH_LEADING_VERB.match(text, h[0])]  # never 谢谢, 麻烦
    brands = latin_names.brand_spans(text)
    hits = [h for h in hits if not any(h[0] < e and s < h[1] for s, e in brands)]
    for value in {text[s:e] for s, e, _, _ in hits}:
        for m in re.finditer(re.escape(value), text):
            hits.append((m.start(), m.end(), "NAME", "name (found elsewhere in the text)"))
    yield from (h for h in hits if not any(h[0] < e and s < h[1] for s, e in brands))


def _chinese_hits(text: str, p: dict[str, re.Pattern[str]]) -> Iterator[Hit]:
    for m in p["after_cue"].finditer(text):
        name = m.group(2)
        while len(name) > 2 and name[-1] in ZH_STOP:
            name = name[:-1]
        if name[-1] in ZH_STOP or name[:2] in ZH_CUE_WORDS:
            continue  # 客户满意度, 客服中心: the cue opens an ordinary word
        yield m.start(2), m.start(2) + len(name), "NAME", "name (after a cue)"
    surnames, _ = _word_list("names_zh_surnames.txt")
    for m in p["before_form"].finditer(text):
        name, start = m.group(1), m.start(1)
        verb = ZH_LEADING_VERB.match(name)
        if verb:  # "麻烦老师", "谢谢王经理": the verb is no part of the name
            name, start = name[verb.end() :], start + verb.end()
            if not name or name[0] not in surnames and name[:2] not in surnames:
                continue
        form, after = text[m.end(1) : m.end()], text[m.end() : m.end() + 1]
        if form in ZH_SINGLE_FORMS and re.match(HAN, after) and after not in ZH_AFTER_SINGLE:
            continue  # 施工单位, 解释人工智能: a one-character form that opens a longer word
        if not any(c in ZH_STOP for c in name):
            yield start, start + len(name), "NAME", "name (before a form of address)"
    for m in p["inner_form"].finditer(text):
        form = text[m.end(1) : m.start(2)]
        if text[max(0, m.start(1) - 1) : m.end(1)] in ZH_TIME_WORDS or m.group(1) in ZH_STOP:
            continue  # 本周总销量: 周 ends a time word; 各位老师: 位 is a measure word
        if ZH_LEADING_VERB.fullmatch(text[max(0, m.end(1) - 2) : m.end(1)]):
            continue  # 谢谢阿姨, 感谢老师: 谢 ends the verb
        if form in ZH_SINGLE_FORMS and m.group(2) and re.match(HAN, m.group(2)) and m.group(2) not in ZH_AFTER_SINGLE:
            # 美国总统, 周总是: a single-character form before more text is a name only right after a cue (跟冯总确认)
            if (form + m.group(2)) in ZH_FORM_WORDS or not ZH_BEFORE_PERSON.search(text[max(0, m.start(1) - 2) : m.start(1)]):
                continue
        yield m.start(1), m.end(1), "NAME", "name (before a form of address)"
    for m in p["xiao"].finditer(text):
        if m.start() and text[m.start() - 1] in surnames or m.group(1) in ZH_XIAO_WORDS:
            continue  # 王小明: 小明 is the given name of a full name (jieba's part); 小时, 老师: words
        nxt = text[m.end(1) : m.end(1) + 2]
        if not m.group(2) or not re.match(HAN, m.group(2)) or m.group(2) in ZH_STOP or m.group(2) in ZH_AFTER_SINGLE or nxt in ZH_NEXT_WORDS:
            yield m.start(1), m.end(1), "NAME", "name (小/老 + surname)"
    for m in p["surname_said"].finditer(text):
        yield m.start(1), m.end(1), "NAME", "name (surname said)"
        if m.group(2):
            yield m.start(2), m.end(2), "NAME", "name (after a cue)"
    for key in ("cue_xiao", "intro", "sign_off", "latin_sign_off", "turn"):
        for m in p[key].finditer(text):
            if m.group(1) not in ZH_XIAO_WORDS:
                yield m.start(1), m.end(1), "NAME", "name (after a cue)"


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
    brands = latin_names.brand_spans(text)  # 王老吉, 周大福: brands, not people
    for hit in _jieba_hits(text):
        if ZH_LEADING_VERB.match(text, hit[0]):
            continue  # jieba tags "谢谢阿强" as a name now and then
        if not any(hit[0] < e and s < hit[1] for s, e in brands):
            yield hit


def _jieba_hits(text: str) -> Iterator[Hit]:
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
