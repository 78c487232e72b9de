"""Read a coordinator's decision from their reply to a moderation mail (SPEC F2).

The rule, kept strict on purpose (a bulletin reaches a whole neighbourhood):

* Only the coordinator's own text counts (:mod:`bin_gateway.mailtext` cuts quotes,
  attributions, Outlook header blocks and signatures). An ``OK`` that appears only in
  quoted text never counts.
* The first non-empty own line decides, by its first word, case-insensitively:
  ``OK OKAY OKÉ JA AKKOORD GOEDKEUREN APPROVE`` approve; ``NEE NO AFWIJZEN REJECT``
  reject. The word may carry trailing punctuation (``Ok!``, ``OK.``, ``ja,``, ``Nee:``)
  but not a question mark (``OK?`` asks, it does not decide). Any other first word,
  including look-alikes such as ``Oke``, ``Prima``, ``Oké?`` or ``Nope``, is UNCLEAR and
  the coordinator is asked again; nothing is sent on a guess.
* After the keyword, the rest of the line plus the following own lines of the same
  block (up to the quote or the signature) are the *note* printed above the bulletin
  (approve) or the *reason* sent to the agency (reject). "Nee hoor, prima" is therefore
  a rejection with reason "hoor, prima": the first word decides, not the sentiment.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from bin_gateway.mailtext import Line, LineKind, best_text, classify_lines

__all__ = [
    "APPROVE_WORDS",
    "REJECT_WORDS",
    "Decision",
    "DecisionKind",
    "decide_text",
    "read_decision",
]

APPROVE_WORDS = frozenset({"ok", "okay", "oké", "ja", "akkoord", "goedkeuren", "approve"})
REJECT_WORDS = frozenset({"nee", "no", "afwijzen", "reject"})

_FIRST_LINE_MAX = 200  # echoed back in the "we could not read your reply" mail
# the first word, optional emphasis (*OK*, _OK_) around it, then anything that is not a
# letter, digit or question mark: "OK!", "ja, graag", "Nee: klopt niet", "OK 👍"
_KEYWORD = re.compile(r"^[*_\s\ufeff\u200b-\u200d\u2060]*([^\W_]+)[*_]*(?![\w?])(.*)$", re.DOTALL)
_SEPARATORS = " \t:;,.!-–—*_"


class DecisionKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    UNCLEAR = "unclear"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    note: str  # approve: the coordinator's note above the bulletin ("" if none)
    reason: str  # reject: the reason for the agency ("" if none given)
    first_line: str  # the line that decided (or failed to); for logs and the unclear mail


def read_decision(message: Message) -> Decision:
    """The decision in a coordinator's reply; UNCLEAR whenever the rule does not match."""
    return decide_text(best_text(message))


def decide_text(text: str) -> Decision:
    """The decision in an already extracted reply text (see :func:`read_decision`)."""
    block = _first_own_block(classify_lines(text))
    if not block:
        return Decision(DecisionKind.UNCLEAR, note="", reason="", first_line="")
    first = unicodedata.normalize("NFC", block[0].strip())
    kind, rest = _keyword(first)
    shown = first[:_FIRST_LINE_MAX]
    if kind is DecisionKind.UNCLEAR:
        return Decision(kind, note="", reason="", first_line=shown)
    rest = rest.lstrip(_SEPARATORS).rstrip()
    if not any(ch.isalnum() for ch in rest):
        rest = ""  # "OK!!! 👍" carries no note
    extra = _join([rest, *block[1:]])
    if kind is DecisionKind.APPROVE:
        return Decision(kind, note=extra, reason="", first_line=shown)
    return Decision(kind, note="", reason=extra, first_line=shown)


def _first_own_block(lines: tuple[Line, ...]) -> list[str]:
    """Own lines from the first non-empty one up to the next quoted or signature line."""
    block: list[str] = []
    for line in lines:
        if line.kind is not LineKind.OWN:
            if block:
                break
            continue
        if block or line.text.strip():
            block.append(line.text)
    return block


def _keyword(line: str) -> tuple[DecisionKind, str]:
    match = _KEYWORD.match(line)
    if match is None:
        return DecisionKind.UNCLEAR, ""
    word, rest = match.group(1).casefold(), match.group(2)
    if word in APPROVE_WORDS:
        return DecisionKind.APPROVE, rest
    if word in REJECT_WORDS:
        return DecisionKind.REJECT, rest
    return DecisionKind.UNCLEAR, ""


def _join(lines: list[str]) -> str:
    """Join note lines, trimming blank edges and squeezing runs of blank lines."""
    out: list[str] = []
    for line in (raw.rstrip() for raw in lines):
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")
