"""Consistent details: a name, number or signature that appears in a large share of the replies.

A model learns whatever its replies share: an agent's name in every sign-off ("— Sam"), a fixed phone
number, a ticket signature. A detail is flagged when, case-folded, it appears in at least MIN_SHARE of
the records' replies (and in at least MIN_RECORDS of them) and it is not a common word. What counts as
common is taken from the data itself, not from a word list:
- a word the prompts use about as often, or a word the prompts use in another form (same first five letters:
  "Fragen" / "Frage"), is the language's (or the domain's) own;
- only specific tokens are candidates: a word written capitalised where it does not open a sentence
  (a name, a brand), a token with digits ("+44 20 7946 0958", "REF-2291"), an e-mail address, or a
  value the personal-data scan found in the replies (which also covers lower-case and Chinese names);
- a short hand-written list of words that are capitalised in running text without being names
  (English "I", German "Sie"/"Ihnen", titles, weekdays and months in en/de/fr/es) is never flagged.
Adjacent flagged words that travel together ("Jennifer Alvarez") are reported as one phrase.
The placeholders `data clean` wrote are no detail of their own, but one in most replies ("— <NAME>" closing each)
is learned just the same: recurring_placeholders says so. Each detail gets a kind, and the fix (`fix_command`) is the clean option that removes that kind: a name -> `--names`,
a phone, e-mail or id the personal-data scan recognises -> plain `data clean` (its scan replaces them), any other
recurring text (a ticket signature, a company line the scan keeps, "Northwind Support") -> `--replace`.
On large files the candidates come from an evenly spaced sample of SAMPLE records; shares are then
counted over every record.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpudoctor.data.pii import find_pii
from gpudoctor.data.pii.name_context import TEAM_WORDS
from gpudoctor.data.records import Dataset, Record

MIN_SHARE = 0.30
MIN_RECORDS = 5
SAMPLE = 2000  # enough to tell a 30% share within a few points
PROMPT_RATIO = 0.25  # a word in at least this share of the prompts, relative to its share of replies, is common

TOKEN = re.compile(
    r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|\+?\d[\d ().\-/]{4,}\d"  # a number written with separators: phones, ids
    r"|\w+(?:['’\-]\w+)*"  # a word, or letters and digits joined: REF-2291, A12-99812
)
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*\d*>")  # what `data clean` wrote: never a detail of its own
SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"'“(]\s*)$")
CAPITALISED_COMMON = frozenset(
    """i i'm i'll i've i'd ok mr mrs ms dr sir madam hi hello dear thanks thank regards best cheers sincerely yours team
    hallo grüße grüßen grüsse grüssen gruß gruss viele liebe herzliche beste freundlichen mit dank danke bonjour merci cordialement salutations hola gracias saludos atentamente
    sie ihr ihre ihnen ihrer ihren ihrem ihres herr frau
    m mme mlle monsieur madame vous
    sr sra srta usted ustedes don doña
    monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    montag dienstag mittwoch donnerstag freitag samstag sonntag januar februar märz mai juni juli oktober dezember
    lundi mardi mercredi jeudi vendredi samedi dimanche janvier février mars avril juin juillet août septembre octobre novembre décembre
    lunes martes miércoles jueves viernes sábado domingo enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre
    """.split()
)


@dataclass
class Detail:
    text: str  # as written most often: "Sam", "Jennifer Alvarez", "+44 20 7946 0958"
    why: str  # "capitalised word", "number", "e-mail", "NAME (personal-data scan)", ...
    records: list[int] = field(default_factory=list)  # 1-based records whose replies hold it
    share: float = 0.0  # of the records that have a reply
    kind: str = "NAME"  # NAME, a scanner kind (PHONE, EMAIL, ID, CARD, IP, ADDRESS), or DETAIL: what removes it


def _reply_text(record: Record) -> str:
    return "\n".join(m.content for m in record.messages if m.role == "assistant")


def _replies(record: Record) -> str:
    return PLACEHOLDER.sub(" ", _reply_text(record))


def _all_replies(records: Sequence[Record]) -> tuple[list[str], int]:
    """Every record's reply text as written (placeholders kept), and how many records have a reply (at least 1)."""
    replies = [_reply_text(r) for r in records]
    return replies, sum(bool(t.strip()) for t in replies) or 1


def _prompts(record: Record) -> str:
    return PLACEHOLDER.sub(" ", "\n".join(m.content for m in record.messages if m.role != "assistant"))


def _sample(records: Sequence[Record]) -> list[Record]:
    if len(records) <= SAMPLE:
        return list(records)
    step = len(records) / SAMPLE
    return [records[int(i * step)] for i in range(SAMPLE)]


STEM = 5  # "Fragen" in the replies, "Frage" in the prompts: the same word (German nouns are all capitalised)


def _stem(word: str) -> str:
    return "~" + word[:STEM]  # "~" keeps stems apart from whole words in the same counter


def _specific(token: str) -> str | None:
    """Why a token is a candidate on its own shape: digits, an e-mail; None for words (judged by their case)."""
    if "@" in token:
        return "e-mail"
    if any(c.isdigit() for c in token) and sum(c.isdigit() for c in token) >= 3:
        return "number"
    return None


def _name_line(text: str, start: int) -> bool:
    """The word opens a short line of capitalised words only: a signature ("Jennifer Alvarez", "Northwind Support")."""
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip():
        return False
    line_end = text.find("\n", start)
    words = re.findall(r"[^\W\d_]+", text[start : len(text) if line_end < 0 else line_end])
    return 0 < len(words) <= 4 and all(w[0].isupper() for w in words)


def _case_votes(texts: Iterable[str], words: set[str]) -> dict[str, tuple[int, int, Counter[str]]]:
    """word -> (occurrences not opening a sentence, of them capitalised, spellings)."""
    votes: dict[str, list] = {w: [0, 0, Counter()] for w in words}
    for text in texts:
        for m in TOKEN.finditer(text):
            key = m.group().casefold()
            if key not in votes:
                continue
            vote = votes[key]
            vote[2][m.group()] += 1
            if SENTENCE_START.search(text[max(0, m.start() - 3) : m.start()]) and not _name_line(text, m.start()):
                continue
            vote[0] += 1
            vote[1] += m.group()[:1].isupper()
    return {w: (v[0], v[1], v[2]) for w, v in votes.items()}


def _candidates(sample: list[Record], replies: list[str], pii_values: Mapping[int, set[str]]) -> dict[str, tuple[str, str]]:
    """casefolded detail -> (spelling, why), judged on the sample (`replies`: theirs, placeholders blanked)."""
    with_reply = sum(bool(t.strip()) for t in replies)
    need = max(MIN_RECORDS, MIN_SHARE * with_reply)
    in_replies: Counter[str] = Counter()
    for record, text in zip(sample, replies):
        in_replies.update(set(TOKEN.findall(text.casefold())) | pii_values.get(record.index, set()))
    frequent = {t for t, n in in_replies.items() if n >= need and t not in CAPITALISED_COMMON}
    if not frequent:
        return {}
    in_prompts: Counter[str] = Counter()
    for record in sample:
        words = set(TOKEN.findall(_prompts(record).casefold()))
        in_prompts.update((words & frequent) | {_stem(w) for w in words if len(w) >= STEM})
    frequent = {t for t in frequent if max(in_prompts[t], in_prompts[_stem(t)] if len(t) >= STEM else 0) < PROMPT_RATIO * in_replies[t]}
    scanned = {v for r in sample for v in pii_values.get(r.index, set())}
    found: dict[str, tuple[str, str]] = {}
    words = set()
    for token in frequent:
        why = "personal-data scan" if token in scanned else _specific(token)
        if why:
            found[token] = (token, why)
        elif any(c.isalpha() and c.lower() != c.upper() for c in token):
            words.add(token)  # a cased script: judged by how it is written
    for word, (running, capitalised, spellings) in _case_votes(replies, words | set(found)).items():
        if word in found:
            if spellings:
                found[word] = (spellings.most_common(1)[0][0], found[word][1])  # "Sam" as written, not "sam"
        elif running >= MIN_RECORDS and capitalised >= 0.9 * running:
            found[word] = (spellings.most_common(1)[0][0], "capitalised word")
    return found


def _detail_pattern(text: str) -> re.Pattern[str]:
    if re.match(r"\w", text[0]) and not re.match(r"[\u3400-\u9fff]", text[0]):
        return re.compile(rf"(?<![^\W_]){re.escape(text)}(?![^\W_])", re.IGNORECASE)
    return re.compile(re.escape(text), re.IGNORECASE)


def _phrases(found: dict[str, tuple[str, str]], replies: list[str]) -> dict[str, tuple[str, str]]:
    """Flagged words that stand next to each other in most of their replies become one phrase ("Jennifer Alvarez")."""
    words = [w for w, (_, why) in found.items() if why == "capitalised word"]
    if len(words) < 2:
        return found
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    run = re.compile(rf"(?<![^\W_])(?:{alternation})(?:[ ]+(?:{alternation})){{1,2}}(?![^\W_])", re.IGNORECASE)
    runs: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for text in replies:
        seen = {m.group().casefold(): m.group() for m in run.finditer(text)}
        runs.update(seen.keys())
        for key, spelling in seen.items():
            spellings.setdefault(key, Counter())[spelling] += 1
    merged = dict(found)
    for phrase, n in runs.most_common():
        parts = phrase.split()
        if all(p in merged for p in parts) and n >= 0.8 * min(_count(p, replies) for p in parts):
            for p in parts:
                merged.pop(p, None)
            merged[phrase] = (spellings[phrase].most_common(1)[0][0], "capitalised words")
    return merged


def _count(word: str, replies: list[str]) -> int:
    pattern = _detail_pattern(word)
    return sum(1 for text in replies if pattern.search(text))


def consistent_details(dataset: Dataset, pii_values: Mapping[int, set[str]] | None = None) -> list[Detail]:
    """Details repeated in at least MIN_SHARE of the replies, most widespread first.

    `pii_values`: record index -> case-folded values the personal-data scan found in that record's replies."""
    records = dataset.records
    sample = _sample(records)
    sample_replies = [_replies(r) for r in sample]
    found = _candidates(sample, sample_replies, pii_values or {})
    if not found:
        return []
    found = _phrases(found, sample_replies)
    replies, with_reply = _all_replies(records)  # every record, for exact shares (a placeholder never matches a detail's pattern)
    details = []
    lowered = [t.lower() for t in replies]  # a substring test first: the whole-word pattern is slow on long texts
    for spelling, why in found.values():
        pattern, needle = _detail_pattern(spelling), spelling.lower()
        numbers = [r.number for r, text, low in zip(records, replies, lowered) if needle in low and pattern.search(text)]
        if len(numbers) >= max(MIN_RECORDS, MIN_SHARE * with_reply):
            details.append(Detail(spelling, why, numbers, len(numbers) / with_reply, _kind(spelling, why)))
    return sorted(details, key=lambda d: (-d.share, d.text))


def recurring_placeholders(dataset: Dataset) -> list[Detail]:
    """Placeholders `data clean` wrote ("<NAME>") in at least MIN_SHARE of the replies (and MIN_RECORDS of them).
    They are no personal data, but the model learns them like any detail: signed "— <NAME>" in every reply, it
    signs its own answers "— <NAME>"."""
    records = dataset.records
    replies, with_reply = _all_replies(records)
    holders: dict[str, list[int]] = {}
    for record, text in zip(records, replies):
        for placeholder in dict.fromkeys(PLACEHOLDER.findall(text)):
            holders.setdefault(placeholder, []).append(record.number)
    found = [
        Detail(placeholder, "placeholder written by data clean", numbers, len(numbers) / with_reply, "PLACEHOLDER")
        for placeholder, numbers in holders.items()
        if len(numbers) >= max(MIN_RECORDS, MIN_SHARE * with_reply)
    ]
    return sorted(found, key=lambda d: (-d.share, d.text))


def _kind(text: str, why: str) -> str:
    """What a detail is, hence what removes it: the scanner's kind when the scan recognises it on its own."""
    spans = [s for s in find_pii(text, use_nlp=False) if s.kind != "NAME"]
    if spans and sum(s.end - s.start for s in spans) >= 0.6 * len(text.strip()):
        return spans[0].kind
    words = text.casefold().split()
    if why in ("number", "e-mail") or (words and words[-1] in TEAM_WORDS):
        return "DETAIL"  # "REF-2291", "1-800-555-0166" (a company line the scan keeps), "Northwind Support"
    return "NAME"


def fix_command(path: object, details: Sequence[Detail]) -> str:
    """The one-line fix for these details: `data clean` with --names for names and --replace for other text."""
    command = f"gpudoctor data clean {path} -o CLEAN.json"
    names = [d for d in details if d.kind == "NAME"]
    others = [d for d in details if d.kind == "DETAIL"]
    scanned = sorted({d.kind for d in details} - {"NAME", "DETAIL"})
    if names:
        command += f" --names {names_option(names)}"
    if others:
        command += f" --replace {names_option(others)}"
    if scanned:
        command += f" (its scan replaces the {', '.join(scanned)})"
    return f"replace them: {command}"


def names_option(details: Sequence[Detail]) -> str:
    """The --names value that replaces these details: comma-separated, quoted when it holds a space."""
    value = ",".join(d.text for d in details)
    return f'"{value}"' if any(c in value for c in " \"'$") else value
