"""A stand-in for spaCy's English tokeniser, for HELM's extractiveness statistics (summarization.py).

HELM tokenises summaries and articles with spaCy's `en_core_web_sm` before counting extractive fragments;
spaCy is not a dependency of helmflow, so `spacy_like_tokens` re-implements its English tokeniser (spaCy 3:
Tokenizer with the English prefixes, suffixes, infixes, special cases and URL match). Checked against spaCy
3.8's English tokeniser while writing it: the same tokens on the 21,589 passages and sentences of the
SuperGLUE and GLUE data in shared/data (672,680 tokens), and on all but 8 of 60,000 random strings (those
8 have emoticons back to back, ":):)").
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# A stand-in for spaCy's English tokeniser (spaCy 3: Tokenizer with the English prefixes, suffixes, infixes,
# special cases and URL match). The algorithm is spaCy's: split on whitespace; for each piece, unless it is a
# special case, strip one prefix and one suffix at a time (stopping early when what is left is a special case);
# the rest, unless special or a URL, is split at its infixes; last, adjacent tokens that are the pieces of a
# special case are joined back into it. The character classes are written out for Latin-script text.


def _words(text: str) -> list[str]:
    return text.split()


_DIGITS = frozenset("0123456789")
_PUNCT = frozenset("…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪")
_QUOTES = frozenset("'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧")
_CURRENCY_CHARS = frozenset("$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿")
_CURRENCIES = frozenset({"US$", "C$", "A$"} | _CURRENCY_CHARS)
_PREFIX_CHARS = frozenset("§%=—–") | _PUNCT | _QUOTES | _CURRENCY_CHARS
_SUFFIX_CHARS = frozenset("—–") | _PUNCT | _QUOTES
# A period is a suffix after one of these (or after two capitals), so "Smith." and "NATO." split, "U.S." not.
_BEFORE_FINAL_PERIOD = _DIGITS | frozenset("%²-+|") | _PUNCT | _QUOTES
_UNITS = frozenset(
    _words(
        "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh "
        "mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %"
    )
)
_HYPHENS = ("-", "–", "—", "--", "---", "——", "~")  # in this order, as spaCy tries them
_URL = re.compile(
    r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"  # scheme, user
    r"(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"  # host labels
    r"[a-z\u00df-\u00f6\u00f8-\u00ff]{2,63}"  # a lower-case top-level domain
    r"(?::\d{2,5})?(?:[/?#]\S*)?$"  # port, path
)


def _is_icon(char: str) -> bool:
    return unicodedata.category(char) == "So"  # other symbols: ©, °, emoji, ...


# spaCy's letter classes leave out a few characters that Python calls letters.
_NOT_LETTERS = frozenset("µªº")


def _is_alpha(char: str) -> bool:
    return char.isalpha() and char not in _NOT_LETTERS


def _is_lower(char: str) -> bool:
    return char.islower() and char not in _NOT_LETTERS


def _is_upper(char: str) -> bool:
    return char.isupper()


def _special_cases() -> dict[str, tuple[str, ...]]:
    """spaCy's English tokenizer exceptions (its whole table but the whitespace ones, which never get here)."""
    cases: dict[str, tuple[str, ...]] = {}

    def add(*parts: str) -> None:
        """`parts` in lower case; adds them, their title-case form, and the same with a typographic apostrophe."""
        for variant in (parts, (parts[0][:1].upper() + parts[0][1:], *parts[1:])):
            for apostrophe in ("'", "’"):
                written = tuple(p.replace("'", apostrophe) for p in variant)
                cases["".join(written)] = written

    negatable = "ai are ca could dare did does do had has have is may might must need ought sha should was were wo"
    for stem in [*_words(negatable), "would"]:
        add(stem, "n't")
        add(stem, "nt")
    for stem in _words("ca could did does do had may might must need ought sha should wo would"):
        add(stem, "n't", "'ve")
        add(stem, "nt", "ve")
    for stem in _words("could might must should would not"):
        add(stem, "'ve")
        add(stem, "ve")
    # Pronouns and wh-words with 'd, 'll, 're, 've, 's, 'm; spaCy also splits the forms written without the
    # apostrophe ("youre" -> "you", "re") except those that are words of their own.
    not_split = {"ill", "its", "hell", "shell", "shed", "were", "well", "whore"}
    wh = _words("how that there these this those what when where who why")
    clitics = {
        "d": ["i", "you", "he", "she", "it", "we", "they", *wh],
        "ll": ["i", "you", "he", "she", "it", "we", "they", *wh],
        "re": ["you", "we", "they", *(w for w in wh if w not in ("that", "this"))],
        "ve": ["i", "you", "we", "they", *(w for w in wh if w not in ("that", "this"))],
        "s": ["he", "she", "it", *(w for w in wh if w not in ("these", "those"))],
        "m": ["i"],
    }
    for clitic, words in clitics.items():
        for word in words:
            add(word, "'" + clitic)
            if word + clitic not in not_split:
                add(word, clitic)
            if clitic in ("d", "ll"):
                add(word, "'" + clitic, "'ve")
                add(word, clitic, "ve")
    add("i", "'m", "a")
    add("i", "m", "a")
    add("let", "'s")
    add("how", "'d", "'y")
    add("c'm", "on")
    add("can", "not")
    add("gon", "na")
    add("got", "ta")
    # Single tokens, each also with a typographic apostrophe.
    singles = _words(
        "' '' 's 'S 'd 'll 're 'em 'bout 'nuff 'cause 'Cause 'cos 'Cos 'coz 'Coz 'cuz 'Cuz :'( :') :'-( :'-)"
    )
    for word in _words("ma'am o'clock ol' doin' goin' havin' lovin' nothin' nuthin' somethin'"):
        singles += [word, word[0].upper() + word[1:], word.rstrip("'"), word[0].upper() + word[1:].rstrip("'")]
    singles += _words("em ll nuff —")
    for single in singles:
        for apostrophe in ("'", "’"):
            cases[single.replace("'", apostrophe)] = (single.replace("'", apostrophe),)
    cases["‘s"], cases["‘S"] = ("‘s",), ("‘S",)
    abbreviations = _words(
        "a.m. p.m. e.g. E.g. E.G. i.e. I.e. I.E. vs. v.s. co. Co. Corp. Inc. Ltd. Bros. Messrs. Mr. Mrs. Ms. Dr. "
        "Prof. Rev. Gen. Gov. Sen. Rep. Adm. Jr. St. Mt. Ph.D. D.C. Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. "
        "Oct. Nov. Dec. Ak. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id. Ill. Ind. Kan. Kans. Ky. La. "
        "Mass. Md. Mich. Minn. Miss. Mo. Mont. N.C. N.D. N.H. N.J. N.M. N.Y. Neb. Nebr. Nev. Okla. Ore. Pa. S.C. "
        "Tenn. Va. Wash. Wis. ä. ö. ü. and/or w/o C++"
    )
    emoticons = _words(
        "(*_*) (-8 (-: (-; (-_-) (._.) (: (; (= (>_<) (^_^) (o: )-: ): -_- -__- ._. 0.0 0.o 0_0 0_o 8) 8-) 8-D 8D "
        ":( :(( :((( :() :) :)) :))) :* :-( :-(( :-((( :-) :-)) :-))) :-* :-/ :-0 :-3 :-> :-D :-O :-P :-X :-] :-o "
        ":-p :-x :-| :-} :/ :0 :1 :3 :> :D :O :P :X :] :o :o) :p :x :| :} ;) ;-) ;-D ;D ;_; <.< "
        "</3 <3 <33 <333 =( =) =/ =3 =D =[ =] =| >.< >.> >:( >:o ><(((*> @_@ O.O O.o O_O O_o V.V V_V [-: [: [= ]= "
        "^_^ ^__^ ^___^ o.0 o.O o.o o_0 o_O o_o v.v v_v XD XDD xD xDD (¬_¬) (ಠ_ಠ) ಠ_ಠ ಠ︵ಠ ¯\\(ツ)/¯ (╯°□°）╯︵┻━┻ "
        '<space> \\") \\n \\t'
    )
    for orth in [*abbreviations, *emoticons, *(chr(c) + "." for c in range(ord("a"), ord("z") + 1))]:
        cases[orth] = (orth,)
    cases["y'all"], cases["y’all"], cases["yall"] = ("y'", "all"), ("y’", "all"), ("y", "all")
    for unit in "CFKcfk":
        cases[f"°{unit}."] = ("°", unit, ".")
    for hour in range(1, 13):
        for suffix in ("am", "pm", "a.m.", "p.m."):
            cases[f"{hour}{suffix}"] = (str(hour), suffix)
    return cases


_SPECIAL = _special_cases()


def _prefix_length(text: str) -> int:
    first = text[0]
    if first in _PREFIX_CHARS or _is_icon(first):
        return 1
    if first == "+" and text[1:2] not in _DIGITS:
        return 1
    if text.startswith(".."):
        return len(text) - len(text.lstrip("."))
    return next((len(c) for c in ("US$", "C$", "A$") if text.startswith(c)), 0)


def _is_suffix(text: str, start: int) -> bool:
    """Whether text[start:] is a suffix, seeing text[:start] as what precedes it (spaCy's look-behinds)."""
    tail, before = text[start:], text[start - 1] if start else ""
    if tail in _SUFFIX_CHARS or (len(tail) == 1 and _is_icon(tail)) or tail == "……":
        return True
    if tail in ("'s", "'S", "’s", "’S") or (len(tail) > 1 and not tail.strip(".")):
        return True
    if before in _DIGITS and (tail == "+" or tail in _CURRENCIES or tail in _UNITS):
        return True
    if tail == ".":
        if before and (before in _BEFORE_FINAL_PERIOD or _is_lower(before)):
            return True
        if start >= 2 and _is_upper(text[start - 2]) and _is_upper(before):
            return True
        return start >= 2 and text[start - 2] == "°" and before in "FfCcKk"
    return False


def _suffix_length(text: str) -> int:
    """Length of the longest suffix: spaCy searches its suffix pattern from the left."""
    periods = len(text) - len(text.rstrip("."))
    if periods > 4:  # a run of periods is one suffix; every other suffix has at most 4 characters ("km/h")
        return periods
    return next((len(text) - i for i in range(max(0, len(text) - 4), len(text)) if _is_suffix(text, i)), 0)


def _infix_at(text: str, i: int) -> int:
    """Length of the infix starting at text[i] (0 when none), trying spaCy's English infix rules in order."""
    char, before = text[i], text[i - 1] if i else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if text.startswith("..", i):
        return len(text[i:]) - len(text[i:].lstrip("."))
    if char == "…" or _is_icon(char):
        return 1
    if char in "+-*^" and before in _DIGITS and after and (after in _DIGITS or after == "-"):
        return 1
    if char == "." and before and after and (_is_lower(before) or before in _QUOTES):
        return int(_is_upper(after) or after in _QUOTES)
    if char == "," and before and after and _is_alpha(before) and _is_alpha(after):
        return 1
    if before and (_is_alpha(before) or before in _DIGITS):
        for hyphen in _HYPHENS:
            end = i + len(hyphen)
            if text.startswith(hyphen, i) and end < len(text) and _is_alpha(text[end]):
                return len(hyphen)
        if char in ":<>=/" and after and _is_alpha(after):
            return 1
    return 0


def _split_infixes(text: str, special: dict[str, tuple[str, ...]]) -> list[str]:
    if text in special:
        return list(special[text])
    if text.isalnum() or _URL.match(text):  # every infix has a character that is no letter or digit
        return [text]
    tokens, start, i = [], 0, 1  # an infix at the very start is no split (spaCy skips it)
    while i < len(text):
        length = _infix_at(text, i)
        if length:
            if i > start:
                tokens.append(text[start:i])
            tokens.append(text[i : i + length])
            start = i = i + length
        else:
            i += 1
    if start < len(text):
        tokens.append(text[start:])
    return tokens


def _split_affixes(piece: str, special: dict[str, tuple[str, ...]]) -> list[str]:
    """One whitespace-free piece of text into tokens, as spaCy's affix loop does, with these special cases."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    while piece and piece not in special:
        before = piece
        pre = _prefix_length(piece)
        if pre and piece[pre:] in special:
            prefixes.append(piece[:pre])
            piece = piece[pre:]
            break
        suf = _suffix_length(piece[pre:])
        if suf and piece[:-suf] in special:
            suffixes.append(piece[-suf:])
            piece = piece[:-suf]
            break
        if pre and suf and pre + suf <= len(piece):
            prefixes.append(piece[:pre])
            suffixes.append(piece[-suf:])
            piece = piece[pre:-suf]
        elif pre:
            prefixes.append(piece[:pre])
            piece = piece[pre:]
        elif suf:
            suffixes.append(piece[-suf:])
            piece = piece[:-suf]
        if piece == before:
            break
    middle = _split_infixes(piece, special) if piece else []
    return prefixes + middle + suffixes[::-1]


@cache
def _unspecial_split(orth: str) -> tuple[str, ...]:
    return tuple(_split_affixes(orth, {}))


def _rejoin_special_cases(tokens: list[str]) -> list[str]:
    """spaCy's last pass: a run of adjacent tokens that is how a special case splits when it is not special
    becomes that case ("8", ")" -> "8)"; "St", "." -> "St." in "Wrangell–St."), longest runs first, then
    leftmost."""
    runs = [
        (start, end)
        for start in range(len(tokens))
        for end in range(start + 2, min(len(tokens), start + 6) + 1)
        if "".join(tokens[start:end]) in _SPECIAL
        and _unspecial_split("".join(tokens[start:end])) == tuple(tokens[start:end])
    ]
    if not runs:
        return tokens
    taken: set[int] = set()
    chosen = []
    for start, end in sorted(runs, key=lambda run: (run[0] - run[1], run[0])):
        if taken.isdisjoint(range(start, end)):
            chosen.append((start, end))
            taken.update(range(start, end))
    out, done = [], 0
    for start, end in sorted(chosen):
        out += [*tokens[done:start], *_SPECIAL["".join(tokens[start:end])]]
        done = end
    return out + tokens[done:]


_WHITESPACE_OR_NOT = re.compile(r"\s+|\S+")


def spacy_like_tokens(text: str) -> list[str]:
    """Tokens of `text` as spaCy's English tokeniser (en_core_web_sm's) gives them, for ordinary English prose.

    Like spaCy: punctuation is split from words ("said." -> "said", "."), "'s" and "n't" are tokens ("isn't"
    -> "is", "n't"; "can't" -> "ca", "n't"), hyphens between letters are tokens ("well-known" -> "well", "-",
    "known"), numbers keep their inner "," and "." ("1,000", "3.5"), abbreviations keep their periods ("U.S.",
    "Mr."), "$5" and "5%" split, URLs stay whole; and whitespace other than the single space after a token is
    a token itself ("a\\n\\nb" -> "a", "\\n\\n", "b"), since spaCy counts those too. The special cases are
    spaCy's English exceptions, all of them.
    Left out: how spaCy picks among overlapping special cases in its last pass (":):)" differs), IP-address
    URLs, and the parts of its character tables for other scripts (its letter classes are Python's isalpha /
    islower / isupper here, less "µªº"; its Cyrillic and Arabic units are not suffixes here).
    """
    tokens: list[str] = []
    for match in _WHITESPACE_OR_NOT.finditer(text):
        piece = match.group()
        if piece[0].isspace():
            # The one space that follows a token belongs to it; any further whitespace is a token.
            rest = piece[1:] if piece[0] == " " and match.start() > 0 else piece
            if rest:
                tokens.append(rest)
        elif piece in _SPECIAL:
            tokens.extend(_SPECIAL[piece])
        elif piece.isalpha():  # most words: no affix or infix rule applies to letters alone
            tokens.append(piece)
        else:
            tokens.extend(_rejoin_special_cases(_split_affixes(piece, _SPECIAL)))
    return tokens
