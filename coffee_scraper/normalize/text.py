"""HTML → clean text for the normalizer (selectolax/lexbor parse, entities decoded, blocks on new lines).

No attribute logic lives here and nothing here regexes raw HTML.
"""

from __future__ import annotations

import html
import re

from selectolax.lexbor import LexborHTMLParser

__all__ = ["MAX_TEXT", "clean_inline", "clear_inline_cache", "html_to_text", "scalar_text"]

#: inputs longer than this (characters) are cut before parsing: product pages are never this long
MAX_TEXT = 200_000

_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "td",
        "th",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "pre",
        "hr",
        "dt",
        "dd",
        "dl",
        "figure",
        "figcaption",
        "summary",
        "details",
    }
)
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "iframe", "svg", "head"})
_WS_CHARS = r" \t\r\f\v\u00a0\u2009\u200a\u200b\u202f\u3000"
#: a run of inline whitespace (every run becomes one space)
_WS = re.compile(rf"[{_WS_CHARS}]+")
#: the runs ``_WS`` matches except a lone space, which needs no replacing: same result, far fewer matches
#: (a pattern that opens with an alternation gets no first-character prefix, so sre would try it at every
#: character; opening on the character class lets sre skip straight to whitespace)
_WS_TO_FIX = re.compile(rf"[{_WS_CHARS}](?:(?<=[{_WS_CHARS[1:]}])[{_WS_CHARS}]*|[{_WS_CHARS}]+)")


_INLINE_CACHE: dict[str, str] = {}
_INLINE_CACHE_MAX = 20_000


def clear_inline_cache() -> None:
    """Forget the memoized results of :func:`clean_inline`."""
    _INLINE_CACHE.clear()


def clean_inline(value: object) -> str:
    """A short plain-text field (title, tag, option value): entities decoded, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, str) and len(value) <= 200:
        hit = _INLINE_CACHE.get(value)
        if hit is None:
            hit = _clean_inline(value)
            if len(_INLINE_CACHE) >= _INLINE_CACHE_MAX:
                _INLINE_CACHE.clear()
            _INLINE_CACHE[value] = hit
        return hit
    return _clean_inline(value)


def _clean_inline(value: object) -> str:
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            return ""
    text = value[:MAX_TEXT]
    if "&" in text:
        text = html.unescape(text)
    if "<" in text and ">" in text:
        text = html_to_text(text).replace("\n", " ")
    return _WS_TO_FIX.sub(" ", text).strip()


def html_to_text(value: object) -> str:
    """Visible text of an HTML fragment; block elements start new lines; whitespace collapsed."""
    if not isinstance(value, str) or not value:
        return ""
    src = value[:MAX_TEXT]
    if "<" not in src:
        return _normalize_ws(html.unescape(src) if "&" in src else src)
    try:
        tree = LexborHTMLParser(src)
    except Exception:  # lexbor refuses some pathological inputs; fall back to the text as-is
        return _normalize_ws(html.unescape(src))
    root = tree.body or tree.root
    if root is None:
        return ""
    parts: list[str] = []
    # the walk is in document order, so a text node's parent element comes before it: until a skipped
    # element (script, style, …) has been seen, no text node can be inside one (saves a parent lookup)
    skip_seen = False
    for node in root.traverse(include_text=True):
        tag = node.tag
        if tag == "-text":
            if skip_seen:
                parent = node.parent
                if parent is not None and parent.tag in _SKIP_TAGS:
                    continue
            text = node.text_content
            if text:
                parts.append(text)
        elif tag in _BLOCK_TAGS:
            parts.append("\n")
        elif tag in _SKIP_TAGS:
            skip_seen = True
    text = "".join(parts)
    if "&" in text:  # lexbor decodes entities; double-encoded ones ("&amp;#8211;") get a second pass
        text = html.unescape(text)
    return _normalize_ws(text)


def _normalize_ws(text: str) -> str:
    """Inline whitespace runs → one space; a whitespace run holding line breaks → one "\\n"; stripped.

    The same as ``re.sub(r"\\s*\\n\\s*", "\\n", _WS.sub(" ", text)).strip()`` (tests/normalize check it),
    without a regex that has to be tried at every character.
    """
    text = _WS_TO_FIX.sub(" ", text)
    if "\n" not in text:
        return text.strip()
    lines = text.split("\n")
    last = len(lines) - 1
    # a run of blank lines is one whitespace run: it collapses into a single line break
    out = [lines[0].rstrip()]
    out.extend(s for s in (line.strip() for line in lines[1:last]) if s)
    out.append(lines[last].lstrip())
    return "\n".join(out).strip()


def scalar_text(value: object) -> str:
    """A platform id or code as text: strings and integers as they are, anything else (bool, None, …) empty."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (str, int)):
        return str(value)
    return ""
