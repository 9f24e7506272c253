"""Person names in Latin-script text (English, German, French, Spanish, Indian English).

Two sources of evidence, combined:
- the given-name and surname lists in `sources/` (official registers, see SOURCES.md) plus the short
  forms people use (`names_short_forms.txt`); a listed name that is also an ordinary word (Rose, Luna,
  Dolores) needs context;
- context from `name_context`: a greeting, sign-off, self-introduction, title, form label, persona or
  role before the name, or "here"/"ji"/"from our team" after it.
A name is taken with the capitalised words that follow it (surnames, particles, hyphens, initials), so
"María Dolores Fernández Ruiz" goes as a whole; once found, every other occurrence of its words in the
text goes too ("Mackenzie Ortiz" ... "Mackenzie"). A name inside a known brand or place, or followed by
a product or place noun ("Luna smart bulb", "Victoria station"), is left alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from importlib import resources

from gpudoctor.data.pii import name_context as ctx

Hit = tuple[int, int, str, str]

NOT_NAMES = frozenset(
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
    Elementary High Middle Weather Concern Whom Explorers Children Service Services Department Office Club League
    I'm It's It’s I’m We're You're Let's That's There's What's Ok OK Okay Sure Yeah Nope Agent User Caller Bot
    Subject Order Invoice Ticket Account Name Address Phone Email Re Fwd Sorry Quick Kindly Respected Regarding
    Madam Sir Team Desk Admin IT Passenger Contact Card Visa Amex Mastercard Refund Payment Mobile App Android
    iOS Online Hindi Hinglish Tamil India Indian British America American Europe European
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Lt Col Sgt Capt Maj Gen Rev Revd Retd Inspector Constable""".split()
)
STOP = NOT_NAMES | ctx.FOREIGN_STOP
# a word with a capital inside that no surname has (MediaMarkt, PcComponentes; not McDonald, MacLeod, DeShawn, O'Brien)
# German compound nouns after a particle end a name: "Herr Wortberg von der Verbraucherzentrale"
NOUN_SHAPE = re.compile(r"(?:zentrale|ung|heit|keit|schaft|amt|kasse|versicherung|verwaltung|gesellschaft|stelle|werk|zentrum|behörde|agentur|bank)$")
FIRM_SHAPE = re.compile(r"(?!Mc|Mac|De|Di|Le|La|Van|Von|O'|D')[A-Z][a-z]+[A-Z]")
WORD = re.compile(r"[A-Z]\.(?:-[A-Z]\.)?|[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+)*")
CONJUNCTION = re.compile(r"[ ]+(?:and|or|et|ou|und|oder|y a|y|e|o)[ ]+")  # "Solène et Maxime": joins two names
CONJUNCTION_BEFORE = re.compile(CONJUNCTION.pattern + "$")  # the same, closing the text before a name


@functools.lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """Accent- and case-insensitive key: "María" and "MARIA" -> "maria"."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).casefold()


@functools.cache
def lists() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(given names, surnames, names that are also common words), all folded."""
    package = resources.files("gpudoctor.data.pii")
    given: set[str] = set()
    surnames: set[str] = set()
    ambiguous: set[str] = set()
    for entry in package.joinpath("sources").iterdir():
        if entry.name.endswith(".txt") and not entry.name.startswith("zh_"):  # Chinese: names.py
            target = given if "given" in entry.name else surnames
            target.update(fold(w) for line in _lines(entry.read_text(encoding="utf-8")) for w in line.split())
    for name, target in (("names_en_first.txt", given), ("names_en_last.txt", surnames), ("names_short_forms.txt", given)):
        for w in " ".join(_lines(package.joinpath(name).read_text(encoding="utf-8"))).split():
            target.add(fold(w.rstrip("*")))
            if w.endswith("*"):
                ambiguous.add(fold(w.rstrip("*")))
    ambiguous |= _common_words(package.joinpath("sources", "SOURCES.md").read_text(encoding="utf-8"))
    ambiguous |= {fold(w) for w in ctx.PLACE_NAMES}
    return frozenset(given), frozenset(surnames), frozenset(ambiguous)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _common_words(sources_md: str) -> set[str]:
    """The given-name lists of SOURCES.md 'Names that are also common words' (Latin script)."""
    part = sources_md.split("## Names that are also common words", 1)[-1]
    words: set[str] = set()
    for block in re.findall(r"### `[a-z]{2}_[A-Z]{2}_given\.txt` \(\d+\)\n\n(.+)", part):
        words.update(fold(w.strip()) for w in block.split(",") if re.match(r"[A-Za-z]", w.strip()))
    return words


@functools.cache
def _brands() -> re.Pattern[str]:
    text = resources.files("gpudoctor.data.pii").joinpath("names_brands.txt").read_text(encoding="utf-8")
    entries = sorted(_lines(text), key=len, reverse=True)
    han = [re.escape(e) for e in entries if re.match(r"[\u4e00-\u9fff]", e)]
    latin = [re.escape(e) for e in entries if not re.match(r"[\u4e00-\u9fff]", e)]
    return re.compile(rf"(?<!\w)(?:{'|'.join(latin)})(?!\w)|{'|'.join(han)}")


def brand_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _brands().finditer(text)]


def is_cap(word: str) -> bool:
    if len(word) == 1 and word.isupper():
        return True  # an initial ("Mr O Mensah"); a run never ends on one
    if not word[0].isupper() or word in STOP:
        return False
    return len(word) == 1 or word.endswith(".") or not word.isupper() or len(word) <= 2


@functools.cache
def _patterns() -> dict[str, re.Pattern[str]]:
    def alt(*tables: str) -> str:
        """The phrases as one alternation, longest first, behind a look-ahead on their first letters (the regex
        engine tries a long alternation at every position; most positions fail on that one class)."""
        phrases = sorted({p for t in tables for p in t.split("|")}, key=len, reverse=True)
        if any(not p[:1].isalpha() for p in phrases):
            return "|".join(phrases)
        firsts = "".join(sorted({c for p in phrases for c in (p[0].lower(), p[0].upper())}))
        return f"(?=[{re.escape(firsts)}])(?:{'|'.join(phrases)})"

    gap = r"[ \t]*[,:!]?[ \t]*(?:\n[ \t]*)?"
    return {
        "greeting": re.compile(rf"(?<![\w'])(?:{alt(*ctx.GREETINGS.values())}){gap}(?=[^\W\d_])", re.I),
        "intro": re.compile(rf"(?<![\w'])(?:{alt(*ctx.INTRODUCTIONS.values())})[ \t]*(?=[^\W\d_])", re.I),
        "strong": re.compile(rf"(?<![\w'])(?:{ctx.STRONG})[ \t]*[,:!]?[ \t]*$", re.I),
        "persona": re.compile(rf"(?<![\w'])(?:{ctx.PERSONAS})[ \t]+(?=[^\W\d_][^,\n]{{0,40}},)", re.I),
        "title": re.compile(rf"(?<![\w.])(?:{ctx.TITLES})\.?[ \t]+(?:(?:{ctx.TITLES})\.?[ \t]+)*(?:\((?i:retd|retired|ret|a\.d)\.?\)[ \t]+)?(?=[^\W\d_])"),
        # a sentence that says whose name it is: "my name is X", "Name is X", "je m'appelle X", "me llamo X"
        "named": re.compile(rf"(?i)(?:(?<![\w'])(?:{alt(ctx.OWN_NAME)})|(?:^|(?<=[.!?:,][ ]))(?:name is|name's))(?:[ \t]+(?i:again|nochmal|wieder|encore|otra vez|de nuevo))?,?[ \t]+(?=[^\W\d_])"),
        "holder": re.compile(rf"(?<![\w])(?:{alt(*ctx.HOLDERS.values())})(?:[ \t]*[:：,]|[ \t]+(?:is|was|ist|est|es|era|lautet)(?![\w]))?[ \t]*(?=[^\W\d_])", re.I),
        # a reply word opening a turn or a line: "User: yes savannah brooks", "oui, julien", "sí, marta"
        "reply": re.compile(rf"(?im)(?:^|[:.!?][ \t]+)(?:{alt(ctx.REPLIES)})[ \t]*[,.!]?[ \t]+(?=[^\W\d_])"),
        "label": re.compile(rf"(?<![\w])(?:{alt(ctx.LABELS)})[ \t]*[:：][ \t]*(?=[^\W\d_])", re.I),
        "kin": re.compile(
            rf"(?<![\w])(?i:my|his|her|our|their|your|mein|meine|meiner|meinem|meinen|sein|seine|ihr|ihre|unser|unsere|mon|ma|"
            rf"son|sa|notre|votre|mi|su|nuestro|nuestra|tu)[ \t]+(?i:{alt(ctx.KIN)}),?[ \t]+(?=[A-ZÀ-Þ])"
        ),
        "role": re.compile(rf"(?<![\w])(?:{alt(ctx.ROLES)}),?[ \t]+(?=[A-ZÀ-Þ])", re.I),
        "turn": re.compile(rf"(?im)^[ \t]*(?:{ctx.SPEAKERS})[ \t]*:[ \t]*(?:(?:yes|no|oui|non|sí|si|ja|nein|it's|c'est|soy)[ ,]+)?(?=[A-ZÀ-Þ])"),
        "role_paren": re.compile(r"(?m)^[ \t]*[^\W\d_]+[ \t]*\([ \t]*(?=[^\W\d_][^)\n]{0,40}\)[ \t]*:)"),
        "sign_off": re.compile(rf"(?im)^[ \t]*(?:{ctx.SIGN_OFFS})[ \t]*[,.!]?[ \t]*\n[ \t]*(?=[^\W\d_])"),
        # "-Trevor", "-- Brent", "… fine? - Meera" on the last line (a "- Eggs" bullet list is not one)
        # whom a quoted message is from: "From Sandy: the amount …", "Von Jörg: …", "De la part de Lise : …"
        "quoted_from": re.compile(r"(?im)^[ \t]*(?:from|von|de la part de|de parte de)[ \t]+(?=[A-ZÀ-Þ][^\W\d_]+(?:[ ][A-ZÀ-Þ][^\W\d_]+)?[ \t]*:)"),
        "dash": re.compile(r"(?:^|\n)--[ \t]?(?=[A-ZÀ-Þ][^\W\d_]+(?:[ ][A-Z]\.)?\s*\Z)|(?:^|[^\n])(?:-|[ \t]-[ \t])(?=[A-ZÀ-Þ][^\W\d_]+(?:[ ][A-Z]\.)?\s*\Z)"),
        # a sign-off and the name on the same line, ending the message: "… regards, Karan Malhotra"
        "inline_sign_off": re.compile(rf"(?i)(?<![\w])(?:{alt(ctx.SIGN_OFFS)})[ \t]*,[ \t]*(?=[A-ZÀ-Þ][^\n]{{0,40}}\s*\Z)"),
        "after": re.compile(rf"(?<![\w'])([^\W\d_][\w'’-]*)[ \t]+(?:{ctx.AFTER})(?![\w])(?! is| are| you| we|['’]s)"),
        "speaker": re.compile(r"(?m)^[ \t]*([^\W\d_]+)[ \t]*:"),
    }


def _tokens(text: str) -> tuple[list[re.Match[str]], dict[int, int]]:
    tokens = list(WORD.finditer(text))
    return tokens, {m.start(): i for i, m in enumerate(tokens)}


def _run(text: str, tokens: list[re.Match[str]], i: int, *, lower: bool = False) -> tuple[int, int] | None:
    """The name starting at token i with the name words after it (surnames, particles, initials)."""
    first = tokens[i].group()
    if not (is_cap(first) or (lower and first.islower())):
        return None
    end = tokens[i].end()
    j = i + 1
    words = 1
    while j < len(tokens) and words < 5 and text[end : tokens[j].start()] in (" ", "\u00a0"):
        w = tokens[j].group()
        k = j
        while k < len(tokens) and tokens[k].group().lower() in ctx.PARTICLES and text[tokens[k].end() : tokens[k].end() + 1] == " ":
            k += 1  # "Yannick Le Goff", "Ida van der Berg"
        if k >= len(tokens) or text[tokens[k - 1].end() : tokens[k].start()] != " ":
            break
        w = tokens[k].group()
        if k > j and (FIRM_SHAPE.match(w) or NOUN_SHAPE.search(w)):
            break  # "Dani de MediaMarkt": a firm's name after the particle, not a surname
        if lower and first.islower() and not w.islower():
            break
        if not (is_cap(w) or (lower and first.islower() and fold(w) in lists()[1])):
            break
        end, j, words = tokens[k].end(), k + 1, words + 1
    if len(first) == 1 and words == 1:
        return None
    if any(t.group().lower() in ctx.THING_NOUNS for t in tokens[i + 1 : j]):
        return None  # "Apollo Clinic", "Jackson Heights"
    last = tokens[j - 1].group()
    if words > 1 and len(last) == 1:
        end = tokens[j - 2].end()  # "Sky Q box": a trailing capital letter is no initial
    nxt = WORD.match(text, end + 1) if text[end : end + 1] == " " else None
    if nxt and nxt.group().lower() in ctx.THING_NOUNS:
        return None
    if text[end : end + 3] == " & " or text[max(0, tokens[i].start() - 3) : tokens[i].start()] == " & ":
        return None  # "Atelier Martin & Fils": a firm
    return tokens[i].start(), end


def _listed(word: str, *, common_ok: bool) -> bool:
    given, _, ambiguous = lists()
    key = fold(word)
    return key in given and (common_ok or key not in ambiguous)


STRONG = frozenset(ctx.STRONG.split("|"))
WEAK_INTROS = frozenset("ici|tell|told|is this|are you|es usted|eres|êtes-vous|dites à|dile a|prévenir|ask for|message|email|call|contact|ask".split("|"))
LIST_ONLY = frozenset("im|its".split("|"))  # "im Ernst" is German, "its" mostly the pronoun
STRONG_AFTER = frozenset("here|hier|speaking|this side|à votre écoute|de chez|ji|al habla|à l'appareil|a l'appareil".split("|"))
ENDS_PHRASE = frozenset(",!.:?;\n)")
# after a weak cue, a word followed by a way to reach someone is a person: "ask for Rosalind at 1-800-…", "call Ines on 07…"
REACH_AT = re.compile(r"[A-ZÀ-Þ][^\W\d_]+[ ]+(?:at|on|au|unter|al|en el|via)[ ]+[+(\d]")
# what follows "my name is" when it is not the name (en/de/fr/es)
NAME_IS_NOT = frozenset(
    """wrong missing incorrect correct right fine different new old long short also still already blank empty there here
    above below unknown again too lol haha sorry please thanks wieder nochmal encore otra vez falsch richtig anders neu leer unbekannt faux juste différent nouveau vide inconnu mal bien
    distinto nuevo vacío desconocido erróneo""".split()
)
IMPERATIVE_NEXT = re.compile(r" (?:a|an|the|your|this|these|it|up|down|out|off|over|away|through|into|me|us|them|yourself)\b")
THANKS = frozenset(
    "thanks|thank you|thx|ty|cheers|many thanks|thanks a lot|thanks a ton|thanks so much|thank you so much|thank you very much|"
    "danke|danke vielmals|merci|merci beaucoup|merci infiniment|merci mille fois|mille mercis|gracias|muchas gracias|"
    "muchísimas gracias|mil gracias|vale gracias|ok thanks|thanks again|gracias de nuevo|danke nochmal|merci encore".split("|")
)
# what closes a thanks without being a name (en/de/fr/es)
THANKED_WORDS = frozenset(
    """mate man bro dude guys all everyone everybody team folks buddy pal love hun darling dear sir madam again anyway though
    lot tons heaps loads much very so you again anyways indeed kindly mucho schön sehr vielmals nochmal euch ihnen dir
    beaucoup bien encore infiniment amigo amiga amigos chicos chicas majo maja jefe igualmente tío tía crack""".split()
)
# what a "Name:" label names when these come before it: a firm, a product, a file, not a person (en/de/fr/es)
THING_LABEL = re.compile(
    r"(?i)\b(?:company|business|bank|product|store|shop|brand|file|host|domain|device|model|firm|app|project|team|branch|"
    r"hotel|school|event|course|plan|firmen|produkt|datei|projekt|produit|fichier|projet|empresa|producto|archivo|proyecto)[ \t]*$"
)
TURN_END = re.compile(r"[ \t]*[.!,]?[ \t]*(?:\n|$)")
# words that go on a self-introduction: "its jordan again", "c'est manon ici", "soy lola otra vez"
GOES_ON = frozenset("again here speaking calling back hier nochmal wieder ici encore aquí aqui otra".split())


def _cue(match: re.Match[str]) -> str:
    return re.sub(r"[\s,:!]+", " ", match.group()).strip().lower()


class _Finder:
    """Collects the name spans of one text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens, self.at = _tokens(text)
        self.hits: list[Hit] = []

    def take(
        self, pos: int, detail: str, *, lower: bool = False, listed: bool | str = False, ends: bool = False, whole_turn: bool = False
    ) -> bool:
        i = self.at.get(pos)
        if i is None:
            return False
        first = self.tokens[i].group()
        if first.islower() and not (lower and (self._lower_name(i) or whole_turn and self._answers_question(i))):
            return False
        if fold(first) in LOWER_STOP:
            return False
        span = _run(self.text, self.tokens, i, lower=lower)
        if span is None:
            return False
        if whole_turn and first.islower():
            rest = re.match(r"(?:[ ][^\W\d_]+){0,2}", self.text[span[1] :])
            if rest and rest.group().islower() and TURN_END.match(self.text, span[1] + rest.end()):
                span = (span[0], span[1] + rest.end())  # "ja, ulrich baumgartner": surnames the lists lack
        if whole_turn and not TURN_END.match(self.text, span[1]):
            return False
        if listed and not _listed(first, common_ok=True) and not (listed == "or-two" and " " in self.text[span[0] : span[1]]):
            return False
        if whole_turn and not first.islower() and not _listed(first, common_ok=True) and " " not in self.text[span[0] : span[1]]:
            return False  # "Yes Please", "ok Google"
        after = self.text[span[1] : span[1] + 1]
        if ends and after and after not in ENDS_PHRASE and not _listed(first, common_ok=False):
            if self.text[span[1] : span[1] + 3] != " ji":
                return False
        self.hits.append((span[0], span[1], "NAME", f"name ({detail})"))
        return True

    def signature_line(self, pos: int, line: str) -> None:
        """The line under a sign-off: a name; all of it when it is two or three capitalised words ("Michael Will"),
        and a single word of four or more capitals too ("Hope This Helps!\nTERRI"; "FAQ" is too short to tell)."""
        words = line.split()
        if re.fullmatch(r"[A-ZÀ-Þ]{4,12}", line.strip()) and fold(line.strip()) not in LOWER_STOP:
            self.hits.append((pos, pos + len(line.rstrip()), "NAME", "name (after a sign-off)"))
        elif 2 <= len(words) <= 3 and all(re.fullmatch(r"[A-ZÀ-Þ][^\W\d_]+(?:-[A-ZÀ-Þ][^\W\d_]+)?", w) for w in words) and _listed(words[0], common_ok=True):
            self.hits.append((pos, pos + len(line.rstrip()), "NAME", "name (after a sign-off)"))
        else:
            self.take(pos, "after a sign-off")

    def thanked(self, pos: int) -> None:
        """One lower-case word closing a message, a turn or a phrase after a thanks is whoever is thanked, listed or not
        ("ok will do. cheers rhiannon", "thanks a lot bhavna, the …"), unless it is a word people say there ("cheers mate")."""
        if pos not in self.at or self.text[pos - 1 : pos].isalpha():
            return  # "ty" of "types" is no thanks
        word = re.match(r"([a-zß-ÿ]{3,})(?:[ \t]*[.!]*[ \t]*(?:\n|\Z)|,[ \t])", self.text[pos:])
        if word and word.group(1) not in THANKED_WORDS and fold(word.group(1)) not in LOWER_STOP:
            self.hits.append((pos, pos + len(word.group(1)), "NAME", "name (thanked)"))
            return
        last = re.search(r"[ \t]([a-zß-ÿ]{3,})[ \t]*[.!]*[ \t]*$", self.text[pos:].split("\n", 1)[0])
        if last and _listed(last.group(1), common_ok=False):  # "cheers for sorting it rosie"
            start = pos + last.start(1)
            self.hits.append((start, start + len(last.group(1)), "NAME", "name (thanked)"))

    def own_name(self, pos: int) -> None:
        """After "my name is" / "je m'appelle" / "me llamo" the words up to the phrase's end are a name, even
        lower-case ones the lists lack ("name is artemii bondar"); at most three, none a common word."""
        words = re.match(r"[^\W\d_]+(?:-[^\W\d_]+)*(?:[ ][^\W\d_]+){0,2}(?=[ \t]*(?:[,.!?;\n]|$))", self.text[pos:])
        if not words or any(fold(w) in LOWER_STOP or len(w) < 2 or self._says_something(w) for w in words.group().split()):
            return  # "my name is misspelled", "mein Name ist falsch"
        if words.group().islower() or all(is_cap(w) for w in words.group().split()):
            self.hits.append((pos, pos + words.end(), "NAME", "name (after 'my name is')"))

    @staticmethod
    def _says_something(word: str) -> bool:
        """A lower-case word after "my name is" that describes the name instead of being one."""
        if _listed(word, common_ok=True) or not word.islower():
            return False
        return word in NAME_IS_NOT or word.endswith(("ed", "ing", "ly", "é", "ée", "ado", "ada", "ido", "ida", "t"))

    def _lower_name(self, i: int) -> bool:
        """A lower-case token after a strong cue is a name: a listed given name that is no common word, or one that is
        ("savannah", "jordan") followed by a listed surname or by a word that goes on introducing ("its jordan again")."""
        first = self.tokens[i].group()
        if _listed(first, common_ok=False):
            return True
        if not _listed(first, common_ok=True) or i + 1 >= len(self.tokens):
            return False
        nxt = self.tokens[i + 1]
        if self.text[self.tokens[i].end() : nxt.start()] != " ":
            return False
        return (nxt.group().islower() and fold(nxt.group()) in lists()[1]) or nxt.group().lower() in GOES_ON

    def _answers_question(self, i: int) -> bool:
        """A listed given name, even one that is a common word, as the whole answer to the line before ("…?\nClient : oui, clémence")."""
        before = self.text[: self.tokens[i].start()].rstrip().rsplit("\n", 1)
        return len(before) == 2 and before[0].rstrip().endswith("?") and _listed(self.tokens[i].group(), common_ok=True)

    def context(self) -> None:
        p = _patterns()
        for m in p["greeting"].finditer(self.text):
            if not self.take(m.end(), "after a greeting", lower=_cue(m) in STRONG, ends=True) and _cue(m) in THANKS:
                self.thanked(m.end())
        for m in p["intro"].finditer(self.text):
            cue = _cue(m)
            if cue in LIST_ONLY and (m.end() not in self.at or not self._lower_name(self.at[m.end()])):
                continue
            greeted = re.search(r"(?i)\b(?:hi|hey|hiya|hello|ok|yes)[ ,]*$", self.text[max(0, m.start() - 8) : m.start()])
            lower = cue in STRONG and (cue not in LIST_ONLY or greeted is not None)  # "hi its tanya", not "its banks"
            taken = self.take(m.end(), "after an introduction", lower=lower, listed=cue in WEAK_INTROS)
            if not taken and cue in WEAK_INTROS and REACH_AT.match(self.text, m.end()):
                self.take(m.end(), "after an introduction")  # "ask for Rosalind at 1-800-…": whoever answers there
        for key, detail in (("persona", "persona"), ("title", "after a title"), ("label", "after a label"), ("quoted_from", "quoted"),
                                            ("role_paren", "agent's name"), ("dash", "signature")):
            for m in p[key].finditer(self.text):
                if key == "label" and THING_LABEL.search(self.text, max(0, m.start() - 12), m.start()):
                    continue  # "Company Name: Momentum Sports", "Bank Name: HDFC"
                self.take(m.end(), detail)
        for m in p["inline_sign_off"].finditer(self.text, max(0, len(self.text) - 120)):  # it ends the message
            self.take(m.end(), "after a sign-off", listed="or-two")
        for m in p["named"].finditer(self.text):
            self.own_name(m.end())
        for m in p["holder"].finditer(self.text):
            self.take(m.end(), "after a holder label", listed="or-two", lower=True)  # "account owner Harper Lindqvist"
        for m in p["reply"].finditer(self.text):
            self.take(m.end(), "after a reply word", lower=True, ends=True, whole_turn=True)
        for m in p["kin"].finditer(self.text):
            self.take(m.end(), "after kin")  # "my cousin Tejaswini", "mein Freund Lukas": listed or not
        for m in p["role"].finditer(self.text):
            self.take(m.end(), "after a role", listed="or-two")  # "our technician Ramesh", "his mum, Tamsin Whitlock"
        self.speaker_turns()
        for m in p["sign_off"].finditer(self.text):
            line = self.text[m.end() :].split("\n", 1)[0]
            if not set(re.findall(r"\w+", fold(line))) & TEAM:
                self.signature_line(m.end(), line)
        for m in p["after"].finditer(self.text):
            i = self.at.get(m.start(1))
            if i is None:
                continue
            cue = self.text[m.end(1) : m.end()].strip(" ,\t").lower()
            if i > 0 and self.text[self.tokens[i - 1].end() : m.start(1)] == " " and is_cap(self.tokens[i - 1].group()):
                if _listed(self.tokens[i - 1].group(), common_ok=True):
                    i -= 1  # "Leonie Schubert hier"
            self.take(self.tokens[i].start(), "before a cue", listed=cue not in STRONG_AFTER)

    def listed(self) -> None:
        _, surnames, _ = lists()
        for i, token in enumerate(self.tokens):
            w = token.group()
            if not is_cap(w) or fold(w) not in lists()[0]:
                continue
            if self._looks_like_place(i) or self._imperative(i):
                continue
            if _listed(w, common_ok=False):
                self.take(token.start(), "name list")
            elif i + 1 < len(self.tokens) and self.text[token.end() : self.tokens[i + 1].start()] == " ":
                nxt = self.tokens[i + 1].group()
                if is_cap(nxt) and (fold(nxt) in surnames or _listed(nxt, common_ok=False)):
                    self.take(token.start(), "name list")

    def _looks_like_place(self, i: int) -> bool:
        """"in Camden", "Sankt Augustin", "Leche Pascual", "the Roomba 'Rosie'": a listed word that names no one."""
        start = self.tokens[i].start()
        if self.text[start - 1 : start] in ("'", "‘", '"', "“"):
            return True
        if i == 0 or self.text[self.tokens[i - 1].end() : start] != " ":
            return False
        before = self.tokens[i - 1].group()
        if before.lower() in ctx.PLACE_PREPOSITIONS or fold(before) in TEAM or before in ctx.ARTICLES or before in ctx.POSSESSIVES:
            return True  # "in Camden", "Team Apollo", "my Ember grinder"
        j = i - 1
        while j >= 0 and self.text[self.tokens[j].end() : self.tokens[j + 1].start()] == " ":
            if self.tokens[j].group() in ctx.PLACE_PREFIXES:
                return True  # "Hotel María Cristina"
            if not is_cap(self.tokens[j].group()):
                break
            j -= 1
        opening = self.text[: self.tokens[i - 1].start()].rstrip(" \t")[-1:] in ("", ".", "!", "?", ":", "\n", "¿", "¡")
        # "Leche Pascual", "Performance Line": a capitalised word mid-sentence makes it a product; "Introduce Sarah" is not
        return not opening and is_cap(before) and len(before) > 1 and not _listed(before, common_ok=True)

    def _imperative(self, i: int) -> bool:
        """"Line a baking sheet", "Mark the box", "Come up with": a listed word opening a sentence, then an article or a
    verb's particle, is a verb."""
        start = self.tokens[i].start()
        opening = self.text[:start].rstrip(" \t")[-1:] in ("", ".", "!", "?", ":", "\n")
        return opening and IMPERATIVE_NEXT.match(self.text, self.tokens[i].end()) is not None

    def speaker_turns(self) -> None:
        """A customer's turn that is only a name: "Customer: Lorna Baxter.", "What's your first name?\nUser: Kwame"."""
        for m in _patterns()["turn"].finditer(self.text):
            rest = self.text[m.end() :].split("\n", 1)[0]
            words = re.match(r"([^\W\d_][\w'’-]*(?: [^\W\d_][\w'’-]*){0,3})[ \t]*([.,!]|$)", rest)
            if not words or not all(is_cap(w) for w in words.group(1).split()):
                continue
            asked = re.search(r"(?i)\b(?:name|nom|nombre|wer|who)\b[^\n]*\?[ \t]*\n[^\n]*$", self.text[: m.start()] + "x")
            if len(words.group(1).split()) >= 2 or asked:
                self.take(m.end(), "customer's turn")

    def last_line(self) -> None:
        body = self.text.rstrip()
        head, _, last = body.rpartition("\n")
        if head.endswith("\n") or head.rstrip(" \t").endswith("\n"):
            start = len(head) + 1 + (len(last) - len(last.lstrip()))
            if len(last.split()) <= 3:
                if not self.take(start, "signature", listed=True) and self._lone_signature(last.strip()):
                    self.take(start, "signature")  # "...\n\nSeun" under a letter: a name the lists lack
        tail = re.search(r"(?<=[^\W\d_]{2})[.!?][ \t]+([A-ZÀ-Þ][^\W\d_]+)[ \t]*\Z", body)  # not "4. Blue"
        if tail:  # "... what email you used? Sterling": a name closing the message
            self.take(tail.start(1), "signature", listed=True)

    def _lone_signature(self, word: str) -> bool:
        """One word closing a letter that is a short form of a name found above ("From: Oluwaseun Adebayo" ... "Seun")."""
        if not re.fullmatch(r"[A-ZÀ-Þ][a-zß-ÿ]{2,}", word) or word in STOP:
            return False
        key = fold(word)
        found = {fold(w) for s, e, _, _ in self.hits for w in WORD.findall(self.text[s:e]) if len(w) > len(word)}
        return any(w.startswith(key) or w.endswith(key) for w in found)

    def conjunctions(self) -> None:
        """"Solène et Maxime", "a Nuria y a Gonzalo": a listed name joined to a found one."""
        found = {(s, e) for s, e, _, _ in self.hits}
        for start, end in sorted(found):
            tail = CONJUNCTION.match(self.text[end : end + 8])
            if tail:
                self.take(end + tail.end(), "name list", listed=True)
            head = CONJUNCTION_BEFORE.search(self.text[max(0, start - 12) : start])
            if head:
                before = self.text[: start - len(head.group())]
                word = re.search(r"[^\W\d_]+$", before)
                if word:
                    self.take(word.start(), "name list", listed=True)

    def propagate(self) -> None:
        """Every other occurrence of a found name's words: "Mackenzie Ortiz" ... "Mackenzie", "lewis:"."""
        words = {
            w
            for s, e, _, _ in self.hits
            for w in WORD.findall(self.text[s:e])
            if len(w) > 1 and w not in STOP and w.lower() not in ctx.PARTICLES and not w.endswith(".")
        }
        for w in words:
            for m in re.finditer(rf"(?<![\w@.]){re.escape(w)}(?![\w@])", self.text):
                nxt = WORD.match(self.text, m.end() + 1)
                if nxt and self.text[m.end() : m.end() + 1] == " " and nxt.group().lower() in ctx.THING_NOUNS:
                    continue  # "Apollo Clinic"
                self.hits.append((m.start(), m.end(), "NAME", "name (found elsewhere in the text)"))
        folded = {fold(w) for w in words}
        for m in _patterns()["speaker"].finditer(self.text):
            if fold(m.group(1)) in folded:
                self.hits.append((m.start(1), m.end(1), "NAME", "name (speaker)"))


TEAM = frozenset(fold(w) for w in ctx.TEAM_WORDS)
LOWER_STOP = frozenset(fold(w) for w in STOP if len(w) > 1) | frozenset("my me so an la le el un une im its ok".split())


def latin_names(text: str) -> Iterator[Hit]:
    """Person names in Latin-script text (see the module docstring)."""
    if not re.search(r"[A-Za-zÀ-ÿ]", text):
        return
    finder = _Finder(text)
    finder.context()
    finder.listed()
    finder.last_line()
    finder.conjunctions()
    if not finder.hits:
        return
    brands = brand_spans(text)
    finder.hits = [h for h in finder.hits if not any(h[0] < e and s < h[1] for s, e in brands)]
    finder.propagate()
    for hit in finder.hits:
        if not any(hit[0] < e and s < hit[1] for s, e in brands):
            yield hit
