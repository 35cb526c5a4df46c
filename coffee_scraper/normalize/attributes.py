"""Product-level coffee attributes (roast, process, species, origin, varieties, notes, …) from text.

Every decision follows docs/normalization-policy.md; words live in vocab/*.yaml. Variants are in
variants.py and the is-it-coffee decision in classify.py.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from itertools import accumulate

from .intermediate import RawProduct
from .models import Altitude, Evidence, construct
from .vocab import TEXT_VOCABS, Hit, Vocab, key_of

__all__ = ["Attributes", "extract_attributes", "name_clean"]

#: sentence separators: whitespace after . ! ?, a line break, " | ", a bullet. Written as
#: ``(?<=[.!?])\s+|\n|\s\|\s|•`` would match the same, but starting on a character class lets sre
#: skip straight to whitespace and bullets instead of trying the look-behind at every character.
_SENT_SPLIT = re.compile(r"([\s•](?:(?<=[.!?]\s)\s*|(?<=\n)|(?<=\s)\|\s|(?<=•)))")  # one group: split keeps them
_WORD = re.compile(r"[A-Za-z]+")


@dataclass
class Attributes:
    roast_level: str | None = None
    process: str | None = None
    species: str | None = None
    chicory_pct: int | None = None
    country: str | None = None
    region: str | None = None
    estate: str | None = None
    altitude_m: Altitude | None = None
    varieties: list[str] = field(default_factory=list)
    tasting_notes: list[str] = field(default_factory=list)
    decaf: bool = False
    evidence: list[Evidence] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


class _Ctx:
    """Per-product text views shared by the field rules (each computed once, most on first use)."""

    __slots__ = (
        "_bounds",
        "_estates",
        "_hits",
        "_sentences",
        "body",
        "body_low",
        "body_source",
        "segments",
        "tags",
        "title",
        "type_source",
        "types",
        "vocab",
    )

    def __init__(self, raw: RawProduct, v: Vocab) -> None:
        self.vocab = v
        self.title = raw.title
        self.body = raw.body
        self.body_source = raw.body_source
        self.tags = raw.tags
        self.types = raw.types
        self.type_source = raw.type_source
        self.body_low = raw.body.lower()
        self._sentences: list[str] | None = None
        self._bounds: list[int] | None = None
        self._hits: dict[str, dict[str, list[Hit]]] = {}
        self._estates: dict[str, list[tuple[int, int, str]]] = {}
        # (source, text) for short free-text fields: title and product types; the body is scanned whole
        segs: list[tuple[str, str]] = [("title", raw.title)]
        segs.extend((raw.type_source, t) for t in raw.types)
        self.segments = segs

    def _split(self) -> None:
        # sentence, separator, sentence, …: the separators' end offsets are where sentences start
        parts = _SENT_SPLIT.split(self.body)
        ends = list(accumulate(map(len, parts)))
        self._bounds = [0, *ends[1::2], len(self.body) + 1]
        self._sentences = [s for s in parts[0::2] if s] if self.body else []

    @property
    def body_sentences(self) -> list[str]:
        """The body's non-empty sentences."""
        if self._sentences is None:
            self._split()
        assert self._sentences is not None
        return self._sentences

    @property
    def bounds(self) -> list[int]:
        """Start offsets of the body's sentences (plus a sentinel past the end)."""
        if self._bounds is None:
            self._split()
        assert self._bounds is not None
        return self._bounds

    def sentence_of(self, pos: int) -> int:
        """Index of the body sentence holding character ``pos``."""
        return bisect_right(self.bounds, pos) - 1

    def hits(self, text: str) -> dict[str, list[Hit]]:
        """Vocabulary name (TEXT_VOCABS) → the phrase hits in ``text``; one scan per distinct text."""
        found = self._hits.get(text)
        if found is None:
            low = self.body_low if text is self.body else None
            found = dict(zip(TEXT_VOCABS, self.vocab.text_scan.scan(text, low), strict=True))
            self._hits[text] = found
        return found

    def estates_in(self, text: str) -> list[tuple[int, int, str]]:
        """``_estates_in`` of ``text``, computed once per distinct text (callers copy before changing)."""
        found = self._estates.get(text)
        if found is None:
            found = _estates_in(self.vocab, text)
            self._estates[text] = found
        return found


def _ev(attr: str, source: str, text: str) -> Evidence:
    # every caller passes strings (matched text, tags, vocabulary names): no validation needed
    return construct(Evidence, {"attribute": attr, "source": source, "text": text[:200]})


# --------------------------------------------------------------------------- roast
_ROAST_AFTER = re.compile(
    r"(?:[\s,&/]+(?:and\s+|or\s+)?\w+(?=[\s\-]))?[\s\-]*(?:style[\s\-]+)?(?:roast(?:ed|s)?|profile|level)\b"
    r"|[\s\-]+(?:(?:cold\s+brew|espresso|filter|house)\s+)?blend\b",
    re.I,
)
_ROAST_LABEL = re.compile(r"roast(?:ing)?\s*(?:profile|level|degree)?\s*[:：\-–—]\s*$", re.I)
_ROAST_BEFORE = re.compile(
    r"(?:roast(?:ed|ing)?\s+(?:it\s+|this(?:\s+coffee)?\s+|them\s+|these\s+beans\s+)?(?:to\s+|at\s+)?"
    r"(?:an?\s+|the\s+)?|roast\s*(?:profile|level|degree)?\s*[:：\-–—]\s*)$",
    re.I,
)
_ROAST_COMPARE = re.compile(r"(?:\bthan\s+(?:an?\s+|the\s+)?|\bas\s+\w+\s+as\s+(?:an?\s+|the\s+)?)$", re.I)
_ROAST_USAGE_AFTER = re.compile(r"[\s\-]*roast\s+espresso\b", re.I)
_ROAST_WORD = re.compile(r"\broast(?:ed)?\b|\b(?:profile|level)\b", re.I)
_TAG_SEPARATORS = re.compile(r"[\s\-_:]+")


def _roast_in_text(v: Vocab, text: str, hits: list[Hit]) -> list[tuple[str | None, str, int]]:
    """Roast-level mentions among ``hits`` (the roast vocabulary's hits in ``text``) said of this coffee."""
    out: list[tuple[str | None, str, int]] = []
    for start, end, matched, value in hits:
        after = text[end : end + 40]
        before = text[max(0, start - 40) : start]
        # a Japanese roast degree (浅煎り, 深煎り) holds the word "roast" (煎り) itself
        follows = "煎" in matched or _ROAST_AFTER.match(after) is not None
        label = _ROAST_LABEL.search(before) is not None
        if key_of(matched) in v.roast_needs_word and not (follows or label):
            continue
        if not follows and not label and not _ROAST_BEFORE.search(before):
            continue
        if _ROAST_COMPARE.search(before) or _ROAST_USAGE_AFTER.match(after):
            continue
        out.append((value, matched, start))
    return out


def _roast_tag(v: Vocab, tag: str) -> str | bool | None:
    """Level of a tag such as ``medium-roast`` / ``Roast: Dark``; False when the tag is not a roast tag."""
    if "roast" not in tag.casefold() and "煎り" not in tag:
        return False
    rest = _ROAST_WORD.sub(" ", tag)
    rest = _TAG_SEPARATORS.sub(" ", rest).strip()
    if not rest:
        return False
    k = key_of(rest)
    if k not in v.roast.table:
        return False
    level: str | None = v.roast.table[k]
    return level


def _roast(v: Vocab, c: _Ctx, a: Attributes) -> None:
    found: list[tuple[str | None, str, str]] = []
    for tag in c.tags:
        lvl = _roast_tag(v, tag)
        if lvl is not False:
            found.append((lvl if isinstance(lvl, str) else None, "tags", tag))
    for src, seg in c.segments:
        found.extend((lvl, src, m) for lvl, m, _pos in _roast_in_text(v, seg, c.hits(seg)["roast"]))
    by_sentence: dict[int, list[tuple[str | None, str]]] = {}
    for lvl, m, pos in _roast_in_text(v, c.body, c.hits(c.body)["roast"]):
        by_sentence.setdefault(c.sentence_of(pos), []).append((lvl, m))
    for hits in by_sentence.values():
        if len({h[0] for h in hits if h[0] is not None}) > 1:
            continue  # a sentence naming several levels compares or lists them ("light, medium or dark")
        found.extend((lvl, c.body_source, m) for lvl, m in hits)
    levels = {f[0] for f in found if f[0] is not None}
    if len(levels) == 1:
        a.roast_level = levels.pop()
        a.evidence.extend(_ev("roast_level", s, m) for lvl, s, m in found if lvl == a.roast_level)
    elif len(levels) > 1:
        a.flags.append("conflict:roast_level")


# --------------------------------------------------------------------------- process
# blends and boxes of several coffees: components may differ in process
_BLEND_WORD = re.compile(r"\b(?:blend(?:s|ed)?|trio|duo|sampler|assorted|gift\s+box|variety\s+pack)\b", re.I)
_MULTI_PROCESS = re.compile(
    r"\b(?:\d|two|three|four|five|multiple|different|distinct|various|several)\b[^.]{0,40}\bprocess", re.I
)
_BODY_BLEND = re.compile(r"\b(?:this|a|our)\s+(?:\w+\s+){0,2}blend\b")
_CM_TITLE = re.compile(r"(?<![A-Za-z])CM(?![A-Za-z])")


def _process_title_words(v: Vocab, text: str) -> list[tuple[str, str]]:
    """(process, word) for each whole ASCII word of ``text`` that is a process title word ("Natural")."""
    out = []
    # the same words as checking every ``_WORD`` of the text, found by one regex scan
    for w in v.process_title_regex.findall(text):
        val = v.process_title_words.get(w.casefold())
        if val and (val != "carbonic_maceration" or w == "CM"):
            out.append((val, w))
    return out


def _process(v: Vocab, c: _Ctx, a: Attributes) -> None:
    found: list[tuple[str, str, str]] = []
    for src, seg in [*c.segments, (c.body_source, c.body)]:
        for _s, _e, m, val in c.hits(seg)["process"]:
            found.append((val, src, m))
    for seg, src in [(c.title, "title"), *((t, c.type_source) for t in c.types)]:
        found.extend((val, src, w) for val, w in _process_title_words(v, seg))
    for tag in c.tags:
        val = v.process.lookup(tag) or v.process_title_words.get(tag.casefold().strip())
        if val:
            found.append((val, "tags", tag))
    if c.tags:  # process phrases inside longer tags ("Natural Process", "anaerobic-natural")
        for _s, _e, m, val in c.hits(" | ".join(t for t in c.tags if len(t) < 40))["process"]:
            found.append((val, "tags", m))
    if not found:
        return
    values = {f[0] for f in found}
    base = values & v.process_base
    special = values - v.process_base - {"other"}
    is_blend = bool(_BLEND_WORD.search(c.title) or any(_BLEND_WORD.search(t) for t in c.types)) or (
        "blend" in c.body_low and _BODY_BLEND.search(c.body_low) is not None
    )
    if is_blend:
        base |= {val for val, _w in _process_title_words(v, c.body) if val in v.process_base}
    # a blend / box naming several processes for its parts ("a Coorg washed, an Araku honey and a
    # Nilgiris anaerobic") has none of its own; one modifier on one base ("anaerobic natural") is one
    if is_blend and (len(base) > 1 or _MULTI_PROCESS.search(c.body)) and (not special or len(base | special) > 2):
        a.flags.append("mixed:process")
        return
    if not special and {"washed", "natural"} <= base and not base - {"washed", "natural"}:
        a.flags.append("conflict:process")
        return
    for val in v.process_precedence:
        if val in values:
            a.process = val
            a.evidence.extend(_ev("process", s, m) for pv, s, m in found if pv == val)
            return


# --------------------------------------------------------------------------- species / chicory
_RATIO = re.compile(r"\b([1-9]\d)\s*(?:%\s*)?[:/\-]\s*([1-9]\d)\b")
_CHICORY_AFTER = re.compile(r"\bchicory\D{0,12}?(\d{1,2})\s*%", re.I)
_CHICORY_BEFORE = re.compile(r"(\d{1,2})\s*%\s*chicory\b", re.I)


def _species(v: Vocab, c: _Ctx, a: Attributes) -> None:
    found: list[tuple[str, str, str]] = []
    for src, seg in [*c.segments, (c.body_source, c.body)]:
        for _s, _e, m, val in c.hits(seg)["species"]:
            found.append((val, src, m))
    low = c.body_low
    if ("arabica" in low or "robusta" in low) and _RATIO.search(low):
        for sent in c.body_sentences:
            sl = sent.lower()
            if "chicory" in sl or not ("arabica" in sl or "robusta" in sl):
                continue
            for rm in _RATIO.finditer(sl):
                if int(rm.group(1)) + int(rm.group(2)) == 100:
                    found.append(("blend", c.body_source, rm.group(0)))
    for tag in c.tags:
        val = v.species.lookup(tag)
        if val:
            found.append((val, "tags", tag))
    if not found:
        return
    values = {f[0] for f in found}
    if "blend" in values or {"arabica", "robusta"} <= values:
        rest = values - {"arabica", "robusta", "blend"}
        if rest:
            a.flags.append("conflict:species")
            return
        a.species = "blend"
    elif len(values) == 1:
        a.species = values.pop()
    else:
        a.flags.append("conflict:species")
        return
    a.evidence.extend(_ev("species", s, m) for _v, s, m in found)


def _chicory(c: _Ctx, a: Attributes) -> None:
    if "chicory" not in c.body_low and "chicory" not in c.title.lower():
        return
    for src, seg in [*c.segments, *((c.body_source, s) for s in c.body_sentences)]:
        if "chicory" not in seg.casefold():
            continue
        cands = [(x.start(), int(x.group(1)), x.group(0)) for x in _CHICORY_AFTER.finditer(seg)]
        cands += [(x.start(), int(x.group(1)), x.group(0)) for x in _CHICORY_BEFORE.finditer(seg)]
        # FSS rules: a coffee-chicory mixture holds at most 49 % chicory
        pcts = sorted(x for x in cands if 0 < x[1] < 50)
        if pcts:
            a.chicory_pct = pcts[0][1]
            a.evidence.append(_ev("chicory_pct", src, pcts[0][2]))
            return
        rm = _RATIO.search(seg)
        if rm and int(rm.group(1)) + int(rm.group(2)) == 100:
            a.chicory_pct = min(int(rm.group(1)), int(rm.group(2)))
            a.evidence.append(_ev("chicory_pct", src, rm.group(0)))
            return


# --------------------------------------------------------------------------- origin
_ESTATE_SUFFIX = (
    r"(?:Estates?|Coffee[ \t]+Collective|Collective|Village|Coffee[ \t]+Plantations|Cooperative|Co-?op|Farm|"
    r"Washing[ \t]+Station|Micro-?mill)"
)
_CAP = r"[A-Z][\w’'.\-]*"
_CAP_TAIL = r"[\w’'.\-]*"
# A name is up to four capitalized words before the suffix, on the suffix's line; a suffix followed by
# ":" is a label ("Estate: …"), not a name's end. Suffixes are rare, so they are found first and the
# name is read back from the text just before each one.
_ESTATE_SUFFIX_RE = re.compile(rf"{_ESTATE_SUFFIX}\b(?![ \t]*[:：])")
_ESTATE_NAME_BEFORE = re.compile(rf"[A-Z]{_CAP_TAIL}(?:[ \t]+[A-Z]{_CAP_TAIL}){{0,3}}[ \t]+$")
#: Spanish / Portuguese farm words that open a name: "Finca Nubes Altas", "Fazenda Santa Inês"
_ESTATE_PREFIX_RE = re.compile(
    r"((?:Finca|Hacienda|Fazenda|S[ií]tio)[ \t]+[A-Z][\w’'.\-]*"
    r"(?:[ \t]+(?:(?:de|del|la|las|los|el|do|da|dos|das|y)[ \t]+)?[A-Z][\w’'.\-]*){0,3})"
)
#: a labelled line: "Estate: Gowri Estate, BR Hills", "Farm: La Esperanza", "Washing station Gatomboya"
_ESTATE_LABEL_RE = re.compile(
    r"[\n·•|][ \t]*(estate|farm|finca|hacienda|fazenda|washing[ \t]+station|station|producer|"
    r"producers|cooperative|co-?op|micro-?mill|wet[ \t]+mill|mill)(?:[ \t]+name)?[ \t]*([:：\-–—]?)[ \t]*"
    r"([^\n·•|]+)",
    re.I,
)
#: where a labelled value ends: a comma, bracket, semicolon, spaced dash or " in "
_ESTATE_VALUE_END = re.compile(r"[,;(/]|\s[\-–—]\s|\s+(?:in|near|at|by|on)\s")
#: labels whose value is often a person ("Producer: Rodrigo Sánchez"): kept only when naming a farm
_ESTATE_ORG_LABELS = frozenset({"producer", "producers", "station", "mill"})
_ESTATE_ORG_WORD = re.compile(
    r"\b(?:Estates?|Farms?|Finca|Hacienda|Fazenda|Cooperative|Co-?op|Collective|Washing\s+Station|"
    r"Association|Union|Village|Micro-?mill)\b",
    re.I,
)
_ESTATE_CONNECT = frozenset({"de", "del", "la", "las", "los", "el", "do", "da", "dos", "das", "y", "e", "of", "&"})
_ESTATE_REJECT = frozenset(
    {
        "various", "multiple", "several", "many", "smallholders", "smallholder", "small", "local", "unknown",
        "n/a", "na", "family", "families", "different", "our", "the", "single", "grown", "coffee", "farmers",
        "producers", "mixed", "blend",
    }
)  # fmt: skip
_ESTATE_STOP = frozenset(
    {
        "the", "our", "this", "a", "an", "from", "at", "in", "of", "single", "coffee", "and", "both", "each",
        "its", "their", "his", "her", "with", "visit", "by", "for", "to", "is", "was", "on", "as", "new",
        "old-world", "partner", "family", "same", "every", "another", "one", "two",
    }
)  # fmt: skip
_ESTATE_STRIP = re.compile(r"[ \t]+Estates?$")


def _estate_name(words: str, suffix: str) -> str | None:
    toks = words.split()
    while toks and toks[0].casefold() in _ESTATE_STOP:
        toks = toks[1:]
    if not toks:
        return None
    name = " ".join(toks)
    if suffix.startswith("Estate"):
        return name
    return f"{name} {' '.join(suffix.split())}"


def _estate_mentions(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, name words, suffix) of each '<Name> Estate/Collective/Farm/…' in ``text``.

    The name is the run of one to four capitalized words right before the suffix, on its line, after
    the previous mention (mentions never overlap).
    """
    out: list[tuple[int, int, str, str]] = []
    if not _has_any(text, _ESTATE_SUFFIX_WORDS):
        return out
    last = 0
    for sm in _ESTATE_SUFFIX_RE.finditer(text):
        st = sm.start()
        if st <= last or text[st - 1] not in " \t":
            continue
        nm = _ESTATE_NAME_BEFORE.search(text, max(last, st - 400), st)
        if nm is not None:
            out.append((nm.start(), sm.end(), nm.group(0).rstrip(" \t"), sm.group(0)))
            last = sm.end()
    return out


def _estates_in(v: Vocab, text: str) -> list[tuple[int, int, str]]:
    """(start, end, estate) of estate mentions: '<Name> Estate/Collective/Farm/…', 'Finca <Name>', …"""
    out: list[tuple[int, int, str]] = []
    for start, end, words, suffix in _estate_mentions(text):
        name = _estate_name(words, suffix)
        if name:
            out.append((start, end, v.estates.lookup(name) or name))
    if "Finca" in text or "Hacienda" in text or "Fazenda" in text or "tio " in text:  # "Sítio"/"Sitio"
        for m in _ESTATE_PREFIX_RE.finditer(text):
            if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_"):
                continue  # not a word start
            if not any(s <= m.start() < e for s, e, _n in out):
                out.append((m.start(), m.end(), m.group(1)))
        out.sort()
    return out


_ESTATE_LABEL_WORDS = ("estate", "farm", "finca", "hacienda", "fazenda", "station", "producer", "co-op", "coop",
                       "cooperative", "mill")  # fmt: skip
_ESTATE_SUFFIX_WORDS = ("Estate", "Collective", "Village", "Plantations", "Cooperative", "Co-op", "Coop", "Farm",
                        "Washing", "Micro")  # fmt: skip


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    """Whether any of ``words`` occurs in ``text`` (a plain loop: cheaper than ``any`` over a generator)."""
    for w in words:  # noqa: SIM110 - a generator in any() costs more than the whole check
        if w in text:
            return True
    return False


def _labelled_estates(v: Vocab, text: str, low: str | None = None) -> list[tuple[int, int, str]]:
    """(start, end, estate) from labelled lines: "Estate: Gowri Estate, BR Hills" → "Gowri".

    ``low`` is ``text.lower()`` when the caller has it.
    """
    out: list[tuple[int, int, str]] = []
    if low is None:
        low = text.lower()
    if not _has_any(low, _ESTATE_LABEL_WORDS):
        return out
    padded = "\n" + text  # a label starts a line or follows a separator; offsets are one more
    if "·" in text or "•" in text or "|" in text:
        matches = list(_ESTATE_LABEL_RE.finditer(padded))
    else:  # labels open lines only: try each line start instead of scanning the text
        matches = []
        pos = 0
        while pos != -1:
            m = _ESTATE_LABEL_RE.match(padded, pos)
            if m:
                matches.append(m)
            pos = padded.find("\n", pos + 1)
    for m in matches:
        label = " ".join(m.group(1).casefold().split())
        value = m.group(3)
        end = _ESTATE_VALUE_END.search(value)
        if end:
            value = value[: end.start()]
        value = value.strip(" \t.:;–—-")
        words = value.split()
        if not words or len(words) > 6 or not words[0][0].isupper():
            continue
        if not m.group(2) and len(words) > 4:  # a label without a colon heads a short value only
            continue
        if any(w.casefold() in _ESTATE_REJECT for w in words[:1]) or any(
            not (w[0].isupper() or w[0].isdigit() or w.casefold() in _ESTATE_CONNECT) for w in words
        ):
            continue
        if label in _ESTATE_ORG_LABELS and not _ESTATE_ORG_WORD.search(value):
            continue  # "Producer: Rodrigo Sánchez" names a person
        if v.geo.lookup(value) is not None:
            continue  # "Farm: Huila" names a place, not a farm
        name = _ESTATE_STRIP.sub("", value)
        if name:
            start = m.start(3) - 1
            out.append((start, start + len(value), v.estates.lookup(name) or name))
    return out


def _estate(v: Vocab, c: _Ctx, a: Attributes) -> list[tuple[int, int]]:
    """Fill estate; returns spans of estate mentions in the body (regions are not read from them)."""
    body_hits = c.estates_in(c.body)
    labelled = _labelled_estates(v, c.body, c.body_low) if c.body else []
    title_hits = list(c.estates_in(c.title))
    if not title_hits:  # an estate the body names with "Estate" and the title names bare
        tkey = f" {key_of(c.title)} "
        low_title = " " + " ".join(w.casefold() for w in _WORD.findall(c.title)) + " "
        for _s, _e, name in [*labelled, *body_hits]:
            if f" {name.casefold()} " in low_title and tkey:
                title_hits.append((0, 0, name))
    spans = [(s, e) for s, e, _n in body_hits] + [(s, e) for s, e, _n in labelled]
    names = _distinct_names(n for _s, _e, n in labelled)
    source = c.body_source
    if not names:
        names = _distinct_names(n for _s, _e, n in title_hits)
        source = "title"
    if not names:
        names = _distinct_names(n for _s, _e, n in body_hits)
        source = c.body_source
    if len(names) == 1:
        a.estate = names[0]
        a.evidence.append(_ev("estate", source, names[0]))
    elif len(names) > 1:
        a.flags.append("conflict:estate")
    return spans


def _distinct_names(names: Iterator[str]) -> list[str]:
    """Names in order, one per spelling key ("Finca Nubes Altas" twice is one name)."""
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(key_of(n), n)
    return list(seen.values())


_ADJ_NOUN = re.compile(r"\s+(?:specialty\s+|speciality\s+|grown\s+)?(?:coffee|arabica|robusta|beans?|origin)", re.I)
_ORIGIN_CUE = re.compile(
    r"\b(?:from|origin|originating|grown|hails?|sourced|produced|cultivated|harvested|farm|region|estate|"
    r"district|village|hills?|valley|coast|slopes?|mountains?|highlands?|plateau|in\s+the\s+heart\s+of)\b|[:,]\s*$",
    re.I,
)


def _region_country(
    v: Vocab, c: _Ctx, a: Attributes, estate_spans: list[tuple[int, int]], c_estates: list[str]
) -> None:
    regions: list[tuple[str, str, str]] = []
    countries: list[tuple[str, str, str]] = []

    def scan(src: str, text: str, spans: list[tuple[int, int]]) -> None:
        body = src == c.body_source
        hits = c.hits(text)["geo"]
        has_region = any(kind == "region" for _s, _e, _m, (kind, _v) in hits)
        for s0, e0, m, (kind, val) in hits:
            if kind == "region":
                if not any(s0 >= os and e0 <= oe for os, oe in spans):
                    regions.append((val, src, m))
            elif kind == "country":
                if not body or _ORIGIN_CUE.search(text[max(0, s0 - 45) : s0]):
                    countries.append((val, src, m))
            elif kind == "state":
                if not body or has_region or _ORIGIN_CUE.search(text[max(0, s0 - 45) : s0]):
                    countries.append((val, src, m))
            elif kind == "adjective" and _ADJ_NOUN.match(text, e0):
                countries.append((val, src, m))

    title_spans = [(s, e) for s, e, _n in c.estates_in(c.title)]
    scan("title", c.title, title_spans)
    if c.types:
        scan(c.type_source, " | ".join(c.types), [])
    if c.tags:
        scan("tags", " | ".join(c.tags), [])
    scan(c.body_source, c.body, estate_spans)

    names = {r[0] for r in regions}
    specific = {n for n in names if not v.region_info[n].broad} or names
    ancestors: set[str] = set()
    for n in specific:
        p = v.region_info[n].parent
        while p:
            ancestors.add(p)
            p = v.region_info[p].parent if p in v.region_info else None
    leaves = specific - ancestors
    if len(leaves) == 1:
        a.region = leaves.pop()
        a.evidence.extend(_ev("region", s, m) for n, s, m in regions if n == a.region)
    elif len(leaves) > 1:
        a.flags.append("conflict:region")
    for n, s, m in regions:
        code = v.region_info[n].country
        if code:
            countries.append((code, s, m))
    for name in [a.estate, *c_estates]:
        if name and v.estate_country.get(name):
            countries.append((v.estate_country[name] or "", "estate", name))
    codes = {cc[0] for cc in countries if cc[0]}
    if len(codes) == 1:
        a.country = codes.pop()
        a.evidence.extend(_ev("country", s, m) for code, s, m in countries if code == a.country)
    elif len(codes) > 1:
        a.flags.append("conflict:country")
    if not names and a.country and a.country != "IN" and "conflict:region" not in a.flags:
        _labelled_region(v, c, a)


#: "Region: Kayanza, Burundi" / "Province — Kayanza": a labelled growing region (group 1 = the value)
_REGION_LABEL = re.compile(
    r"[\n·•|][ \t]*(?:growing[ \t]+)?(?:region|province|district|department|departamento|zone|"
    r"county|prefecture|municipality)[ \t]*[:：\-–—][ \t]*([^\n·•|]+)",
    re.I,
)
_REGION_VALUE_END = re.compile(r"[,;(/]|\s[\-–—]\s")
_REGION_GENERIC = re.compile(r"[ \t]+(?:region|province|district|department|zone|county|area)$", re.I)
_REGION_REJECT = frozenset(
    {
        "various", "multiple", "several", "mixed", "blend", "central", "south", "southern", "north", "northern",
        "east", "eastern", "west", "western", "africa", "asia", "america", "americas", "latin", "unknown", "n/a",
    }
)  # fmt: skip


def _labelled_region(v: Vocab, c: _Ctx, a: Attributes) -> None:
    """A foreign region not in the vocabulary, from one "Region:" label (policy: regions by their own
    names). Indian regions come only from the canonical list, so an Indian product never gets here."""
    if not c.body or not any(w in c.body_low for w in ("region", "province", "district", "department", "zone",
                                                        "county", "prefecture", "municipality")):  # fmt: skip
        return
    found: list[str] = []
    for m in _REGION_LABEL.finditer("\n" + c.body):
        value = m.group(1)
        end = _REGION_VALUE_END.search(value)
        if end:
            value = value[: end.start()]
        value = _REGION_GENERIC.sub("", value.strip(" \t.:;–—-"))
        words = value.split()
        if not words or len(words) > 4 or not all(w[0].isupper() or w.casefold() in _ESTATE_CONNECT for w in words):
            continue
        if any(w.casefold() in _REGION_REJECT for w in words) or v.geo.lookup(value) is not None:
            continue  # a continent, a country or a state is not a growing region
        if value not in found:
            found.append(value)
    if len(found) == 1:
        a.region = found[0]
        a.evidence.append(_ev("region", c.body_source, found[0]))


# --------------------------------------------------------------------------- altitude
_NUM = r"(\d{1,2}[,.]\d{3}|\d{3,4})"
_UNIT = (
    r"(m\.?\s*a\.?\s*s\.?\s*l\.?|masl|meters?|metres?|mtrs?|mts|m(?![a-z])|"
    r"f(?:ee|oo)?t(?![a-z])|ft\.?)"
)
_ALT = re.compile(
    rf"{_NUM}\s*{_UNIT}?(?:\s*(?:asl|a\.s\.l\.?|above\s+sea\s+level))?\s*(?:-|–|—|to)\s*{_NUM}\s*{_UNIT}"
    rf"|{_NUM}\s*{_UNIT}",
    re.I,
)
_FT = Decimal("0.3048")
_ALT_HINT = re.compile(r"\d\s*(?:[mM]|[fF][tTeE]|asl|ASL)")
#: where an _ALT match can start: its number is "d,ddd" / "dd.ddd" or three or four digits
_ALT_START = re.compile(r"\d(?=\d?[,.]\d{3}|\d{2})")


def _alt_matches(text: str) -> Iterator[re.Match[str]]:
    """The matches of ``_ALT.finditer(text)``, trying only where a number of its form starts."""
    pos = 0
    for d in _ALT_START.finditer(text):
        start = d.start()
        if start < pos:
            continue
        m = _ALT.match(text, start)
        if m:
            yield m
            pos = m.end()


def _to_m(num: str, unit: str | None) -> int:
    n = Decimal(num.replace(",", "").replace(".", ""))
    if unit and unit.casefold().startswith("f"):
        n = n * _FT
    return int(n.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _altitude(c: _Ctx, a: Attributes) -> None:
    for src, text in (("title", c.title), (c.body_source, c.body)):
        if not _ALT_HINT.search(text):
            continue
        for m in _alt_matches(text):
            if m.group(3) is not None:
                unit = m.group(4) or m.group(2)
                lo, hi = _to_m(m.group(1), unit), _to_m(m.group(3), unit)
            else:
                unit = m.group(6)
                lo = hi = _to_m(m.group(5), unit)
            if lo > hi:
                lo, hi = hi, lo
            if lo >= 300 and hi <= 3000:
                a.altitude_m = Altitude(min=lo, max=hi)
                a.evidence.append(_ev("altitude_m", src, m.group(0)))
                return


# --------------------------------------------------------------------------- varieties
def _varieties(v: Vocab, c: _Ctx, a: Attributes) -> None:
    out: list[str] = []
    for src, text in (("title", c.title), (c.body_source, c.body)):
        for _s, e, m, name in c.hits(text)["varieties"]:
            nxt = _WORD.match(text, e + 1) if e < len(text) else None
            if nxt and nxt.group(0).casefold() in v.variety_not_before:
                continue
            if name not in out:
                out.append(name)
                a.evidence.append(_ev("varieties", src, m))
    a.varieties = out


# --------------------------------------------------------------------------- tasting notes
# matched on " " + lower-cased text: the leading \W stands for \b before a word and lets sre skip ahead
_NOTE_CUE = re.compile(
    r"\W(?:notes?|tones?|overtones?|flavou?rs?|flavou?red|hints?|aromas?|aftertaste|finish(?:es|ing)?|"
    r"tastes?|tasting|palate|reminiscent|layers?|layered|cup\s+profile|profile|undertones?|sweetness\s+of|"
    r"bursting|expect|touch\s+of|in\s+the\s+cup|descriptors?)\b"
)  # matched on lower-cased text
#: what is left of a bare note list ("Cedar, Pipe tobacco, Dark cocoa.") once its notes are cut out
_LIST_REST = re.compile(r"(?:[\s,.;:!&/+·•\-–—]|\band\b|\bor\b)*")
_NOTE_SPACES = re.compile(r"[\s\-_]+")

_NOTE = 1  # context kinds of a label
_FIELD = 2


class _NoteSentence:
    """Tasting context of one body sentence: its labels, whether it cues notes, whether it is about farming.

    ``cue`` and ``farm`` are worked out on first use: most note words sit under a label.
    """

    __slots__ = ("_cue", "_farm", "labels", "low", "padded", "spans", "vocab")

    def __init__(self, v: Vocab, sent: str, spans: list[tuple[int, int]]) -> None:
        self.vocab = v
        self.spans = spans
        self.low = low = sent.lower()
        self.padded = padded = "\n" + low  # offsets in ``padded`` are one more than in the sentence
        self._cue: bool | None = None
        self._farm: bool | None = None
        fl, nl = v.flavour_field_label, v.flavour_note_label
        if ":" in low or "：" in low or "·" in low or "•" in low or "|" in low or ";" in low:
            labels = [(m.end() - 1, _FIELD) for m in fl.finditer(padded)]
            labels += [(m.end() - 1, _NOTE) for m in nl.finditer(padded)]
            labels.sort()
        else:  # no colon and no separator: a label can only open the sentence ("We taste …")
            m = fl.match(padded) or nl.match(padded)
            labels = [(m.end() - 1, _FIELD if m.re is fl else _NOTE)] if m else []
        self.labels = labels

    @property
    def cue(self) -> bool:
        """A note cue word in the sentence, or the sentence is a bare list of notes."""
        if self._cue is None:
            cue = _NOTE_CUE.search(self.padded) is not None
            if not cue and self.spans:
                rest, pos = [], 0
                for s, e in self.spans:
                    rest.append(self.low[pos:s])
                    pos = e
                rest.append(self.low[pos:])
                cue = _LIST_REST.fullmatch("".join(rest)) is not None
            self._cue = cue
        return self._cue

    @property
    def farm(self) -> bool:
        """Growing / processing words in the sentence ("shade", "intercropped", "made from")."""
        if self._farm is None:
            self._farm = self.vocab.flavour_farm_context.search(" " + self.low) is not None
        return self._farm

    def context(self, pos: int) -> int:
        """_NOTE, _FIELD or 0 (no label) for a note word at ``pos`` of the sentence."""
        kind, end = 0, 0
        for e, k in self.labels:
            if e > pos:
                break
            kind, end = k, e
        if kind == _FIELD and _NOTE_CUE.search(" " + self.low[end:pos]):  # "Roast: light, notes of plum"
            return _NOTE
        return kind


def _stated_note(v: Vocab, note: str, matched: str) -> str:
    """The note as the product spells it, for notes whose spellings differ in spacing only."""
    if note not in v.flavour_as_stated:
        return note
    low = _NOTE_SPACES.sub(" ", matched.casefold()).strip()
    want = key_of(note)
    for cand in (low, low[:-3] + "y" if low.endswith("ies") else "", low[:-2], low[:-1]):
        if cand and key_of(cand) == want:
            return cand
    return note


def _tasting_notes(v: Vocab, c: _Ctx, a: Attributes) -> None:
    out: list[str] = []
    body = c.body
    hits = c.hits(body)["flavours"] if body else []
    if hits:
        bounds = c.bounds
        list_only = v.flavour_list_only
        not_after = v.flavour_not_after
        not_before = v.flavour_not_before
        by_sent: dict[int, list[Hit]] = {}
        for h in hits:
            by_sent.setdefault(bisect_right(bounds, h[0]) - 1, []).append(h)
        for i, sent_hits in by_sent.items():
            sent_start = bounds[i]
            sent = body[sent_start : bounds[i + 1]]
            ctx = _NoteSentence(v, sent, [(s - sent_start, e - sent_start) for s, e, _m, _n in sent_hits])
            for s, e, m, note in sent_hits:
                kind = ctx.context(s - sent_start) if ctx.labels else 0
                if kind == _FIELD:
                    continue  # "Process: co-fermented with lychee pulp"
                if kind != _NOTE and not ctx.cue and (note in list_only or ctx.farm):
                    continue
                prev = body[max(sent_start, s - 12) : s].split()
                if prev and prev[-1].casefold() in not_after:
                    continue
                tail = body[e : e + 20].casefold().lstrip(" -")
                if tail.startswith(not_before):
                    continue
                if note in list_only and tail.startswith(("coffee", "were ", "are ", "was ", "is ")):
                    continue
                note = _stated_note(v, note, m)
                if note not in out:
                    out.append(note)
                    a.evidence.append(_ev("tasting_notes", c.body_source, m))
    for tag in c.tags:
        t = tag.strip()
        low = t.casefold()
        prefixed = low.startswith(v.flavour_tag_prefixes)
        if prefixed:  # then strip the first prefix that matches
            for p in v.flavour_tag_prefixes:
                if low.startswith(p):
                    t = t[len(p) :]
                    break
        note = v.flavours.lookup(t)
        if note and not prefixed and (v.process.lookup(t) or v.process_title_words.get(low)):
            continue  # a bare tag "honey" / "cherry" that is a process word names the process
        if note:
            note = _stated_note(v, note, t)
        if note and note not in out:
            out.append(note)
            a.evidence.append(_ev("tasting_notes", "tags", tag))
    a.tasting_notes = out


# --------------------------------------------------------------------------- decaf
_DECAF = re.compile(
    r"\b(?:decaf|decafe|decaffeinated|de-caffeinated|caffeine[\s\-]?free|swiss\s+water|mountain\s+water)\b",
    re.I,
)


def _decaf(c: _Ctx, a: Attributes) -> None:
    # = " ".join([title, *tags, *types, body]).lower(), reusing the lower-cased body (a space between
    # the parts ends any case context, so lower-casing them apart gives the same text)
    hay = " ".join([c.title, *c.tags, *c.types]).lower() + " " + c.body_low
    if not any(w in hay for w in ("decaf", "caffeine", "swiss water", "mountain water")):
        return
    for src, text in [
        ("title", c.title),
        *(("tags", t) for t in c.tags),
        *((c.type_source, t) for t in c.types),
        (c.body_source, c.body),
    ]:
        m = _DECAF.search(text)
        if m:
            a.decaf = True
            a.evidence.append(_ev("decaf", src, m.group(0)))
            return


# --------------------------------------------------------------------------- name_clean
_NC_SCORE = re.compile(
    r"\(?\s*\bSCA\s*(?:score\s*)?:?\s*\d{2}(?:\.\d+)?\s*\+?\s*\)?"
    r"|\(?\s*\b(?:score\s*:?\s*)?[89]\d(?:\.\d+)?\s*\+?\s*(?:pts|points|point)\b\.?\s*\)?",
    re.I,
)
_W_UNIT = r"(?:kgs?|g|gm|gms|grams?|gr|oz|lbs?|ml)"
_NC_WEIGHT = re.compile(
    rf"\(?\s*\b(?:\d+\s*[x×]\s*)?\d+(?:[.,]\d+)?\s*{_W_UNIT}\b(?:\s*[x×]\s*\d+\b)?\s*(?:each\s*)?\)?", re.I
)
_NC_PACK = re.compile(
    r"\(?\s*\b(?:pack|set|box)\s+of\s+\d+\s*(?:\w+)?\s*\)?|\(\s*\d+\s*(?:packs?|pcs|pieces)\s*\)|\b\d+[\s\-]?pack\b",
    re.I,
)
_NC_GRIND = re.compile(
    r"(?:\s[-–—|/:]\s*|\(\s*)(?:whole\s+beans?|beans|"
    r"(?:(?:coarse|medium|fine|extra\s+fine|coarsely|finely)\s+)?ground(?:\s+coffee)?|[\w ]{0,20}\bgrind)"
    r"\s*\)?\s*$",
    re.I,
)
_NC_TRIM = re.compile(r"^[\s\-–—|,/:+]+|[\s\-–—|,/:+(]+$")
_NC_EMPTY_PARENS = re.compile(r"\(\s*\)")
_NC_WORD_CHAR = re.compile(r"\w")
_NC_DIGIT = re.compile(r"\d")
#: whitespace runs other than a lone space (what ``\s+`` → " " changes; a lone space stays as it is)
_NC_SPACES = re.compile(r"[^\S ]\s*| \s+")
#: _NC_TRIM's classes once all whitespace is a plain space
_NC_TRIM_LEFT = " -–—|,/:+"
_NC_TRIM_RIGHT = " -–—|,/:+("


def name_clean(title: str) -> str:
    """The title without pack sizes, weights, grind words, cupping scores and trailing separators."""
    s = title
    if _NC_DIGIT.search(title):  # scores, pack sizes and weights all hold a digit
        s = _NC_SCORE.sub(" ", s)
        s = _NC_PACK.sub(" ", s)
        stripped = _NC_WEIGHT.sub(" ", s)
        if _NC_WORD_CHAR.search(stripped):
            s = stripped
    s = _NC_GRIND.sub(" ", s)
    s = _NC_EMPTY_PARENS.sub(" ", s)
    s = _NC_SPACES.sub(" ", s)
    # = _NC_TRIM.sub("", s): after the line above every whitespace character is a plain space
    s = s.lstrip(_NC_TRIM_LEFT).rstrip(_NC_TRIM_RIGHT)
    return s if s else title.strip()


# --------------------------------------------------------------------------- entry point
def extract_attributes(raw: RawProduct, v: Vocab) -> Attributes:
    """Every product attribute of a coffee product, with evidence and review flags."""
    c = _Ctx(raw, v)
    a = Attributes()
    _roast(v, c, a)
    _process(v, c, a)
    _species(v, c, a)
    _chicory(c, a)
    spans = _estate(v, c, a)
    all_estates = [n for _s, _e, n in c.estates_in(c.title)] + [n for _s, _e, n in c.estates_in(c.body)]
    _region_country(v, c, a, spans, all_estates)
    _altitude(c, a)
    _varieties(v, c, a)
    _tasting_notes(v, c, a)
    _decaf(c, a)
    return a
