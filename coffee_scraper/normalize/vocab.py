"""Vocabulary data of the normalizer: loads ``vocab/*.yaml`` once and compiles the matchers once.

Only data loading and regex building live here; deciding a field from matches is in attributes.py,
variants.py and classify.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .models import GRINDS, PROCESSES, ROAST_LEVELS, SPECIES

__all__ = [
    "NONCOFFEE_TITLE_KINDS",
    "TEXT_VOCABS",
    "Hit",
    "MultiScan",
    "PhraseMatcher",
    "Region",
    "Vocab",
    "clear_key_cache",
    "get_vocab",
    "key_of",
]

VOCAB_DIR = Path(__file__).resolve().parent / "vocab"
_SEP_CLASS = r"[\s\-_.]*"
_KEY_STRIP = re.compile(r"[\s\-_.’'`]+")


_KEY_CACHE: dict[str, str] = {}


def key_of(text: str) -> str:
    """Lookup key of a phrase: lower case, no spaces, dashes, dots or apostrophes ("SLN-795" → "sln795")."""
    k = _KEY_CACHE.get(text)
    if k is None:
        k = _KEY_STRIP.sub("", text.casefold())
        if len(text) <= 100:
            if len(_KEY_CACHE) > 50_000:
                _KEY_CACHE.clear()
            _KEY_CACHE[text] = k
    return k


def clear_key_cache() -> None:
    """Forget the memoized keys of :func:`key_of`."""
    _KEY_CACHE.clear()


def _pieces(phrase: str) -> list[str]:
    """Letters / digits / symbols of a phrase; separators between them are optional when matching."""
    out: list[str] = []
    for tok in re.split(r"[\s\-_.]+", phrase.strip().casefold()):
        if tok:
            out.extend(re.findall(r"[^\W\d_]+|\d+|[^\w\s]", tok) or [tok])
    return out


_SEP_MARK = "\x00"  # between two pieces of a phrase: optional separators when matching


def _trie_regex(phrases: Iterable[str]) -> str:
    """One regex source matching any phrase, as a character trie (sre then rejects a position after
    one or two character comparisons instead of trying every phrase in turn)."""
    root: dict[str, Any] = {}
    for ph in phrases:
        node = root
        for ch in _SEP_MARK.join(_pieces(ph)):
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a phrase

    def gen(node: dict[str, Any]) -> str:
        end = "" in node
        alts: list[str] = []
        singles: list[str] = []
        # the separator alternative last: "blackcurrant jam" before "black currant"
        for ch in sorted((k for k in node if k), key=lambda k: (k == _SEP_MARK, k)):
            child = node[ch]
            lit = _SEP_CLASS if ch == _SEP_MARK else re.escape(ch)
            if list(child) == [""] and ch != _SEP_MARK:
                singles.append(lit)
            else:
                alts.append(lit + gen(child))
        if singles:
            alts.append(singles[0] if len(singles) == 1 else "[" + "".join(singles) + "]")
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:  # greedy: the longer phrase is tried first, the shorter one on backtracking
            body = f"(?:{body})?"
        return body

    return gen(root) if root else ""


class PhraseMatcher:
    """One compiled alternation of phrases (longest first, whole words) → value by normalized key."""

    def __init__(self, table: dict[str, Any], *, flags: int = re.IGNORECASE) -> None:
        self.table: dict[str, Any] = {}
        for phrase, value in table.items():
            k = key_of(phrase)
            if k and k not in self.table:
                self.table[k] = value
        #: the phrases with a non-empty key (MultiScan builds its combined gate from them)
        self.phrases: tuple[str, ...] = tuple(p for p in table if key_of(p))
        body = _trie_regex(self.phrases)
        #: the trie regex source (without word boundaries) that MultiScan reuses
        self.source = body
        if body:
            # fast form for lower-cased text: no flags and no look-behind, so the C scanner can skip
            # ahead on the first-character set; the left word boundary is checked in Python
            self.regex: re.Pattern[str] | None = re.compile(rf"\b(?=\w)(?:{body})(?![\w+])")
            self.regex_ci = re.compile(rf"(?<![\w+])(?:{body})(?![\w+])", flags)
        else:
            self.regex = None

    def finditer(self, text: str) -> Iterable[tuple[int, int, str, Any]]:
        """(start, end, matched text, value) for every non-overlapping whole-word match."""
        if self.regex is None or not text:
            return
        low = text.lower()
        if len(low) != len(text):  # rare characters whose lower case changes length
            for m in self.regex_ci.finditer(text):
                k = key_of(m.group(0))
                if k in self.table:
                    yield m.start(), m.end(), m.group(0), self.table[k]
            return
        table = self.table
        for m in self.regex.finditer(low):
            st = m.start()
            if st and low[st - 1] == "+":
                continue
            k = key_of(m.group(0))
            if k in table:
                en = m.end()
                yield st, en, text[st:en], table[k]

    def lookup(self, text: str) -> Any:
        """The value when the whole ``text`` is one phrase, else None."""
        return self.table.get(key_of(text))


Hit = tuple[int, int, str, Any]  # (start, end, matched text, value), as PhraseMatcher.finditer yields


class MultiScan:
    """Several PhraseMatchers run over one text in a single regex pass; same hits as each ``finditer``.

    The combined regex visits each word start once. A gate (one trie of every matcher's phrases) rejects
    most positions at the first character; where some phrase matches, one capturing look-ahead per
    matcher records where that matcher's own trie (same alternation order, so the same greedy choice)
    matches. Replaying each matcher's non-overlap rule over those candidate positions (a match
    consumes the text up to its end; one at an earlier position wins) gives exactly the hits of
    ``matcher.finditer(text)``, in order.
    """

    def __init__(self, matchers: Sequence[PhraseMatcher]) -> None:
        self.matchers = tuple(matchers)
        self.tables = tuple(m.table for m in self.matchers)
        gate = _trie_regex(p for m in self.matchers for p in m.phrases)
        # each matcher: its trie in a capturing look-ahead, or (group left unset) no match here;
        # a matcher without phrases gets a group that never matches
        parts = "".join(rf"(?:(?=({m.source})(?![\w+]))|)" if m.source else "(?:(?!)()|)" for m in self.matchers)
        # "\W" consumes the character before a word start: sre then skips ahead on that character set
        # (the text gets one leading space so that position 0 has one too)
        self.regex: re.Pattern[str] | None = re.compile(rf"\W(?=\w)(?=(?:{gate})(?![\w+])){parts}") if gate else None

    def scan(self, text: str, low: str | None = None) -> list[list[Hit]]:
        """For each matcher (in order), the list ``list(matcher.finditer(text))`` would give.

        ``low`` is ``text.lower()`` when the caller has it already.
        """
        n = len(self.matchers)
        out: list[list[Hit]] = [[] for _ in range(n)]
        if self.regex is None or not text:
            return out
        if low is None:
            low = text.lower()
        if len(low) != len(text):  # rare characters whose lower case changes length
            return [list(m.finditer(text)) for m in self.matchers]
        tables = self.tables
        cursors = [0] * n  # per matcher: where its previous match ended (matches never overlap)
        padded = " " + low  # offsets below are in ``padded``: one more than in ``text``
        cached_key = _KEY_CACHE.get
        for m in self.regex.finditer(padded):
            regs = m.regs
            plus = padded[regs[0][0]] == "+"  # the character before the word
            i = -1
            for s, e in regs[1:]:
                i += 1
                if s < cursors[i]:  # also an unset group (-1)
                    continue
                cursors[i] = e
                if plus:
                    continue
                phrase = padded[s:e]
                k = cached_key(phrase) or key_of(phrase)  # key_of's own cache, looked up inline
                table = tables[i]
                if k in table:
                    out[i].append((s - 1, e - 1, text[s - 1 : e - 1], table[k]))
        return out


def _ascii_words_regex(words: Iterable[str]) -> re.Pattern[str]:
    """A regex finding, in order, the maximal ``[A-Za-z]+`` runs whose case-folded form is in ``words``.

    ASCII-only case folding: a ``[A-Za-z]+`` run case-folds to its ASCII lower case, so this finds
    exactly the runs that ``re.findall("[A-Za-z]+")`` then a case-folded dictionary lookup would keep.
    """
    alts = sorted({w.casefold() for w in words if w.isascii() and w.isalpha()}, key=lambda w: (-len(w), w))
    body = "|".join(re.escape(w) for w in alts) or "(?!)"
    return re.compile(rf"(?<![A-Za-z])(?:{body})(?![A-Za-z])", re.IGNORECASE | re.ASCII)


def _phrase_alts(phrases: Iterable[str]) -> str:
    """Regex source matching any of the (lower-case) phrases, as a character trie (see ``_trie_regex``):
    spaces and dashes between a phrase's words are optional runs of separators."""
    return _trie_regex(str(p).casefold() for p in phrases if str(p).strip()) or "(?!)"


def _label_regex(labels: Iterable[str]) -> re.Pattern[str]:
    """A field label: at a line start (then a colon or dash is optional) or anywhere before a colon.

    Matched on ``"\\n" + lower-cased text`` (every match consumes the character before its label, so
    sre skips ahead on a character class): group 1 or 2 is the label, ``end() - 1`` its end in the text.
    """
    body = _phrase_alts(labels)
    return re.compile(rf"\W(?:(?<=[\n·•|;])[ \t]*({body})\b(?:[ \t]*[:：\-–—]|(?=[ \t]))|({body})[ \t]*[:：])")


def _words_regex(phrases: Iterable[str]) -> re.Pattern[str]:
    """Whole-word matcher of phrases on ``" " + lower-cased text`` (consumes the character before)."""
    return re.compile(rf"\W(?:{_phrase_alts(phrases)})(?![\w\-])")


@dataclass(frozen=True)
class Region:
    name: str
    country: str | None
    parent: str | None
    broad: bool


@dataclass
class Vocab:
    """Every table the normalizer uses, compiled."""

    process: PhraseMatcher
    process_precedence: tuple[str, ...]
    process_base: frozenset[str]
    process_title_words: dict[str, str]
    #: the whole ASCII-letter words (``[A-Za-z]+`` runs) of a text whose case-folded form is a title word
    process_title_regex: re.Pattern[str]
    roast: PhraseMatcher
    roast_needs_word: frozenset[str]
    species: PhraseMatcher
    varieties: PhraseMatcher
    variety_not_before: frozenset[str]
    countries: PhraseMatcher
    country_adjectives: PhraseMatcher
    states: PhraseMatcher
    regions: PhraseMatcher
    region_info: dict[str, Region]
    estates: PhraseMatcher
    estate_country: dict[str, str | None]
    grinds: PhraseMatcher
    grind_option_names: frozenset[str]
    flavours: PhraseMatcher
    flavour_list_only: frozenset[str]
    flavour_not_before: tuple[str, ...]
    flavour_not_after: frozenset[str]
    flavour_tag_prefixes: tuple[str, ...]
    #: notes output as the product spells them ("red currant" / "redcurrant")
    flavour_as_stated: frozenset[str]
    #: a line start / "<label>:" naming a field that holds no notes ("Process:"); group 1 = the label
    flavour_field_label: re.Pattern[str]
    #: a label that opens a note list ("Tasting notes:", "We taste", "In the cup:")
    flavour_note_label: re.Pattern[str]
    #: growing / processing context words ("shade", "intercropped", "made from")
    flavour_farm_context: re.Pattern[str]
    geo: PhraseMatcher  # regions, countries, states and adjectives in one scan: value (kind, value)
    #: the TEXT_VOCABS matchers in one pass (attributes.py scans each distinct text once with it)
    text_scan: MultiScan
    #: the NONCOFFEE_TITLE_KINDS matchers of ``noncoffee`` in one pass (classify.py, over the title)
    noncoffee_title_scan: MultiScan
    noncoffee: dict[str, PhraseMatcher] = field(default_factory=dict)
    noncoffee_types: frozenset[str] = frozenset()
    coffee_types: frozenset[str] = frozenset()


def _load(name: str) -> Any:
    with (VOCAB_DIR / name).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _plurals(word: str) -> list[str]:
    out = [word]
    if word.endswith("y") and len(word) > 3 and word[-2] not in "aeiou":
        out.append(word[:-1] + "ies")
    elif word.endswith(("s", "x", "ch", "sh")):
        out.append(word + "es")
    else:
        out.append(word + "s")
    return out


def _check(values: Iterable[Any], allowed: tuple[str, ...], what: str) -> None:
    for v in values:
        if v is not None and v not in allowed:
            raise ValueError(f"vocabulary {what}: {v!r} is not a contract value")


#: matchers of Vocab.text_scan, in the order of its results
TEXT_VOCABS = ("roast", "process", "species", "geo", "varieties", "flavours")
#: noncoffee kinds classify.py looks for in the title, in the order of Vocab.noncoffee_title_scan's results
NONCOFFEE_TITLE_KINDS = (
    "gift_cards",
    "events",
    "hampers",
    "equipment",
    "merchandise",
    "food",
    "drinks",
    "coffee_forms",
    "gift_boxes",
)


@cache
def get_vocab() -> Vocab:
    """Load and compile every vocabulary file (once per process)."""
    proc = _load("process.yaml")
    proc_table = {ph: val for val, phs in proc["phrases"].items() for ph in phs}
    _check(proc_table.values(), PROCESSES, "process")
    title_words = {w: val for val, ws in proc.get("title_words", {}).items() for w in ws}

    roast = _load("roast.yaml")
    roast_levels: dict[str, Any] = dict(roast["levels"])
    _check(roast_levels.values(), ROAST_LEVELS, "roast")

    spec = _load("species.yaml")
    spec_table = {ph: val for val, phs in spec["phrases"].items() for ph in phs}
    _check(spec_table.values(), SPECIES, "species")

    var = _load("varieties.yaml")
    var_table: dict[str, str] = {}
    for canon, aliases in var["varieties"].items():
        for alias in [str(canon), *(str(a) for a in aliases or [])]:
            var_table.setdefault(alias, str(canon))

    ctry = _load("countries.yaml")
    c_table = {n: code for code, names in ctry["countries"].items() for n in names or []}
    adj_table = {n: code for code, names in ctry.get("adjectives", {}).items() for n in names or []}
    st_table = {n: code for code, names in ctry.get("states", {}).items() for n in names or []}

    reg = _load("regions.yaml")
    region_info: dict[str, Region] = {}
    r_table: dict[str, str] = {}
    for r in reg["regions"]:
        name = str(r["name"])
        region_info[name] = Region(name, r.get("country"), r.get("parent"), bool(r.get("broad", False)))
        for alias in [name, *(r.get("aliases") or [])]:
            r_table.setdefault(str(alias), name)

    est = _load("estates.yaml")
    e_table: dict[str, str] = {}
    e_country: dict[str, str | None] = {}
    for e in est["estates"]:
        name = str(e["name"])
        e_country[name] = e.get("country")
        for alias in [name, *(e.get("aliases") or [])]:
            e_table.setdefault(str(alias), name)

    gr = _load("grind.yaml")
    g_table = {ph: val for val, phs in gr["grinds"].items() for ph in phs}
    for val in gr["grinds"]:
        g_table.setdefault(val.replace("_", " "), val)
    _check(g_table.values(), GRINDS, "grind")

    fl = _load("flavours.yaml")
    f_table: dict[str, str] = {}
    for note, aliases in fl["notes"].items():
        for alias in [note, *(aliases or [])]:
            for form in _plurals(str(alias)):
                f_table.setdefault(form, str(note))

    nc = _load("noncoffee.yaml")
    nc_matchers = {
        k: PhraseMatcher({p: k for p in nc[k]})
        for k in (
            "equipment",
            "merchandise",
            "food",
            "events",
            "gift_cards",
            "drinks",
            "hampers",
            "gift_boxes",
            "coffee_forms",
            "hamper_items",
        )
    }

    geo_table: dict[str, tuple[str, str]] = {}
    for kind, table in (
        ("region", r_table),
        ("country", c_table),
        ("state", st_table),
        ("adjective", adj_table),
    ):
        for phrase, value in table.items():
            geo_table.setdefault(phrase, (kind, value))
    matchers = dict(
        geo=PhraseMatcher(geo_table),
        process=PhraseMatcher(proc_table),
        roast=PhraseMatcher(roast_levels),
        species=PhraseMatcher(spec_table),
        varieties=PhraseMatcher(var_table),
        flavours=PhraseMatcher(f_table),
    )
    return Vocab(
        geo=matchers["geo"],
        text_scan=MultiScan([matchers[k] for k in TEXT_VOCABS]),
        noncoffee_title_scan=MultiScan([nc_matchers[k] for k in NONCOFFEE_TITLE_KINDS]),
        process=matchers["process"],
        process_precedence=tuple(proc["precedence"]),
        process_base=frozenset(proc["base"]),
        process_title_words=title_words,
        process_title_regex=_ascii_words_regex(title_words),
        roast=matchers["roast"],
        roast_needs_word=frozenset(key_of(w) for w in roast.get("needs_roast_word", [])),
        species=matchers["species"],
        varieties=matchers["varieties"],
        variety_not_before=frozenset(var.get("not_before", [])),
        countries=PhraseMatcher(c_table),
        country_adjectives=PhraseMatcher(adj_table),
        states=PhraseMatcher(st_table),
        regions=PhraseMatcher(r_table),
        region_info=region_info,
        estates=PhraseMatcher(e_table),
        estate_country=e_country,
        grinds=PhraseMatcher(g_table),
        grind_option_names=frozenset(key_of(n) for n in gr.get("option_names", [])),
        flavours=matchers["flavours"],
        flavour_list_only=frozenset(fl.get("list_only", [])),
        flavour_not_before=tuple(fl.get("not_before", [])),
        flavour_not_after=frozenset(fl.get("not_after", [])),
        flavour_tag_prefixes=tuple(fl.get("tag_prefixes", [])),
        flavour_as_stated=frozenset(fl.get("as_stated", [])),
        flavour_field_label=_label_regex(fl.get("field_labels", [])),
        flavour_note_label=_label_regex(fl.get("note_labels", [])),
        flavour_farm_context=_words_regex(fl.get("farm_context", [])),
        noncoffee=nc_matchers,
        noncoffee_types=frozenset(key_of(t) for t in nc["noncoffee_types"]),
        coffee_types=frozenset(key_of(t) for t in nc["coffee_types"]),
    )
