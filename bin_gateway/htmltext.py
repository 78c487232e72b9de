"""HTML as plain text: the one renderer for every place that needs an HTML part as text.

Two readers use it: ``mailtext`` (a coordinator's decision, a member's reply), where
quoting must survive as ``> `` lines for the quote rules and hidden content must never
leak; and ``render`` (the text part of an HTML-only bulletin), which also wants link
targets and blank lines between paragraphs (``links=True, paragraphs=True``).

Whatever the options: ``<blockquote>`` and the quote containers of Gmail, Yahoo and
Thunderbird get ``> `` per level, everything below Outlook's reply header is quoted,
signature containers start with a ``--`` line, and hidden content (``<head>``, scripts,
styles, comments, ``display:none``, ``hidden``) is dropped. Hostile input stays linear
in time and bounded in output.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript", "xml", "svg"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)  # fmt: skip
_BLOCK = frozenset(
    {"address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "footer", "form",
     "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "ol", "p", "pre", "section",
     "table", "tr", "ul"}
)  # fmt: skip
# containers that hold a quoted message: Gmail, Yahoo, Thunderbird's attribution
_QUOTE_CLASSES = frozenset({"gmail_quote", "yahoo_quoted", "moz-cite-prefix"})
# Outlook puts the quoted message *after* these, not inside: everything below is quoted
_QUOTE_REST_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "x_divrplyfwdmsg"})
_SIGNATURE_CLASSES = frozenset({"gmail_signature", "moz-signature"})
_SIGNATURE_IDS = frozenset({"signature", "applemailsignature", "x_signature"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all")
_MAX_PREFIX = 8  # deeper quote levels look the same; bounds the output on hostile nesting


@dataclass(slots=True)
class _Element:
    tag: str
    skip: bool = False
    quote: bool = False
    pre: bool = False
    href: str = ""  # an http(s) link target, shown after the link's text (links=True)


class _TextRenderer(HTMLParser):
    """HTML -> text lines; quoted content gets "> " per level, hidden content is dropped."""

    def __init__(self, *, links: bool, paragraphs: bool) -> None:
        super().__init__(convert_charrefs=True)
        self._links = links
        self._paragraphs = paragraphs
        self._gap = False  # a blank line is due before the next line (paragraphs=True)
        self.lines: list[tuple[int, str]] = []
        self._stack: list[_Element] = []
        self._open: dict[str, int] = {}  # open elements per tag: O(1) "is it open?"
        self._current: list[str] = []
        self._has_text = False
        self._current_depth = 0
        self._skip = 0
        self._depth = 0
        self._pre = 0
        self._quote_rest = False
        self._nbsp = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._close("head")  # a <head> left open must not swallow the body
        if self._skip:
            if tag not in _VOID:
                self._push(_Element(tag))
            return
        attr = {name: (value or "") for name, value in attrs}
        classes = set(attr.get("class", "").lower().split())
        ident = attr.get("id", "").lower()
        if ident in _QUOTE_REST_IDS:
            self._newline()
            self._quote_rest = True
        if tag == "br":
            self._newline(force=True)
        elif tag in _BLOCK or tag == "hr":
            self._block_edge()
        if tag in _VOID:
            return
        hidden = "hidden" in attr or bool(_HIDDEN_STYLE.search(attr.get("style", "").lower()))
        href = attr.get("href", "") if self._links and tag == "a" else ""
        element = _Element(
            tag,
            skip=tag in _SKIPPED or hidden,
            quote=tag == "blockquote" or bool(classes & _QUOTE_CLASSES),
            pre=tag == "pre",
            href=href if href.lower().startswith(("http:", "https:")) else "",
        )
        self._push(element)
        if classes & _SIGNATURE_CLASSES or ident in _SIGNATURE_IDS:
            self._lines_append("-- ")  # as Gmail's own text part does: a delimiter line
        if tag == "li":
            self._current.append("- ")
        elif tag in ("td", "th"):
            self._current.append(" ")  # cells of one row stay apart on one line

    def handle_endtag(self, tag: str) -> None:
        self._close(tag)
        if tag in _BLOCK and not self._skip:
            self._block_edge()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._add(first)
            for piece in rest:
                self._newline(force=True)
                self._add(piece)
        else:
            # "<p>&nbsp;</p>" is how Outlook writes an empty line: keep it as one
            self._nbsp = self._nbsp or ("\xa0" in data and not data.strip())
            self._add(re.sub(r"\s+", " ", data))

    def _push(self, element: _Element) -> None:
        self._stack.append(element)
        self._open[element.tag] = self._open.get(element.tag, 0) + 1
        if element.quote:
            self._newline()
            self._depth += 1
        self._skip += element.skip
        self._pre += element.pre

    def _close(self, tag: str) -> None:
        """Pop up to the innermost open ``tag``; an end tag nobody opened is ignored."""
        if not self._open.get(tag):
            return
        while self._stack:
            element = self._stack.pop()
            self._open[element.tag] -= 1
            self._skip -= element.skip
            self._pre -= element.pre
            if element.quote:
                self._newline()
                self._depth -= 1
            if element.href and element.href not in (self._current or [""])[-1]:
                self._add(f" ({element.href})")  # unless the link's text is its target
            if element.tag == tag:
                return

    def _add(self, text: str) -> None:
        if not self._has_text and text.strip():
            self._current_depth = self._level()  # a line is as deep as its first word
            self._has_text = True
        self._current.append(text)

    def _level(self) -> int:
        return max(self._depth, 1) if self._quote_rest else self._depth

    def _block_edge(self) -> None:
        self._newline()
        self._gap = self._paragraphs

    def _newline(self, *, force: bool = False) -> None:
        text = "".join(self._current).strip()
        if text or force or self._nbsp:
            self._emit(self._current_depth if text else self._level(), text)
        self._current = []
        self._has_text = self._nbsp = False

    def _lines_append(self, text: str) -> None:
        self._newline()
        self._emit(self._level(), text)

    def _emit(self, depth: int, text: str) -> None:
        if self._gap and self.lines:  # as deep as the shallower neighbour: "> a", ">", "> b"
            self.lines.append((min(depth, self.lines[-1][0]), ""))
        self._gap = False
        self.lines.append((depth, text))

    def text(self) -> str:
        self._newline()
        out: list[str] = []
        for depth, text in self.lines:
            prefix = "> " * min(depth, _MAX_PREFIX)
            line = (prefix + text).rstrip()
            if line.strip("> ") or (out and out[-1].strip("> ")):  # one blank line at most
                out.append(line)
        return "\n".join(out)


def html_to_text(source: str, *, links: bool = False, paragraphs: bool = False) -> str:
    """Render HTML as plain text the quote and signature rules can read. Never raises.

    ``links``: an http(s) link's target follows its text in parentheses.
    ``paragraphs``: block elements (paragraphs, list items, rows, ...) are set apart by a
    blank line; without it they only start a new line.
    """
    renderer = _TextRenderer(links=links, paragraphs=paragraphs)
    # HTMLParser is lenient, but whatever text it got before a failure is still the text
    with contextlib.suppress(Exception):
        renderer.feed(_defuse(source))
        renderer.close()
    return renderer.text()


_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# a "<" that does not open a tag closed before the next "<" is text; escaping it keeps
# Python 3.11's HTMLParser linear (it rescans the rest after each such "<": gh-135462)
_STRAY_LT = re.compile(r"<(?![a-zA-Z/!?][^<>]*>)")


def _defuse(source: str) -> str:
    """Drop comments (hidden text; an unclosed one hides the rest) and escape stray "<"."""
    return _STRAY_LT.sub("&lt;", _COMMENT.sub("", source))
