"""The writer's own text of a mail: pick the best text part, cut quotes and signatures.

Pure functions, used for a coordinator's decision and for a member's relayed reply::

    best_text(message)      -> str                  text/plain, else text/html rendered
    html_to_text(html)      -> str                  quotes as "> " (from ``htmltext``)
    decode_bytes(b, cs)     -> str                  declared charset, UTF-8, windows-1252
    classify_lines(text)    -> tuple[Line, ...]     each line OWN, QUOTED or SIGNATURE
    split_own_text(text)    -> OwnText(own, quoted)

CPU-bound (a 7 MB HTML part takes seconds): call it through ``asyncio.to_thread``.

Quoting is recognised by form, not by content: ``>`` lines (HTML ``<blockquote>`` and
the quote containers of Gmail and Outlook are rendered that way), attribution lines
("Op … schreef …:", "On … wrote:", "Am … schrieb …:", "Le … a écrit :"), Outlook's
header blocks ("Van: … Verzonden: … Onderwerp: …") and separators
("-----Oorspronkelijk bericht-----"). Everything below an Outlook block is quoted,
because Outlook quotes without ``>``. Unquoted lines *after* a ``>`` block are the
writer's own (bottom-posting, interleaved answers). When in doubt a line counts as
quoted: for the anonymiser a lost line is better than a leaked one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from bin_gateway.htmltext import html_to_text

__all__ = [
    "Line",
    "LineKind",
    "OwnText",
    "best_text",
    "classify_lines",
    "decode_bytes",
    "html_to_text",
    "split_own_text",
    "tidy_lines",
]

_MAX_DEPTH = 20  # MIME nesting we follow; deeper structures are hostile, not mail
_ATTRIBUTION_MAX = 400  # an attribution longer than this is prose, not a quote header


class LineKind(StrEnum):
    OWN = "own"
    QUOTED = "quoted"
    SIGNATURE = "signature"


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    text: str


@dataclass(frozen=True, slots=True)
class OwnText:
    own: str
    quoted: str


# --- choosing and decoding the text part ----------------------------------------------


def best_text(message: Message) -> str:
    """The message's text: text/plain if present, else text/html as text. Never raises."""
    try:
        return _normalise(_part_text(message, 0))
    except Exception:  # broken MIME must not stop the caller; an empty text is "unclear"
        return ""


def _part_text(part: Message, depth: int) -> str:
    if depth > _MAX_DEPTH:
        return ""
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if part.get_content_subtype() == "alternative":
            return _best_alternative(children, depth)
        # mixed/related/signed: the body is every inline text part, in order (Apple Mail
        # splits text around inline images); attachments and signatures are skipped
        texts = (_part_text(c, depth + 1) for c in children if _is_body(c))
        return "\n".join(t for t in texts if t.strip())
    ctype = part.get_content_type()
    if ctype == "text/plain":
        return _plain(part)
    if ctype == "text/html":
        return html_to_text(_decoded(part))
    return ""


def _is_body(part: Message) -> bool:
    if part.get_content_disposition() == "attachment":
        return False
    return part.get_content_maintype() in ("text", "multipart")


def _best_alternative(children: list[Message], depth: int) -> str:
    plain = [c for c in children if c.get_content_type() == "text/plain"]
    for child in plain:
        text = _part_text(child, depth + 1)
        if text.strip():  # some clients send an empty text/plain beside the real HTML
            return text
    for child in reversed(children):  # RFC 2046: the last alternative is the richest
        if child.get_content_type() != "text/plain":
            text = _part_text(child, depth + 1)
            if text.strip():
                return text
    return ""


def _decoded(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or ""
    except Exception:  # a broken part is skipped; the others may still carry the text
        return ""
    return decode_bytes(payload, charset) if isinstance(payload, bytes) else ""


def decode_bytes(payload: bytes, charset: str) -> str:
    """Decode with the declared charset, else UTF-8, else windows-1252 (never raises)."""
    declared = charset.strip().lower()
    if declared in ("iso-8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", ""):
        # mail clients label windows-1252 (and UTF-8) as these; browsers do the same
        declared = "utf-8" if _is_utf8(payload) else "windows-1252"
    for candidate in (declared, "utf-8"):
        if not candidate:
            continue
        try:
            return payload.decode(candidate)
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
    return payload.decode("windows-1252", errors="replace")


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _plain(part: Message) -> str:
    text = _decoded(part).replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format", "")).lower() == "flowed":
        delsp = str(part.get_param("delsp", "")).lower() == "yes"
        text = _unflow(text, delsp=delsp)
    return text


def _unflow(text: str, *, delsp: bool) -> str:
    """Join RFC 3676 soft line breaks so a wrapped attribution is one line again."""
    out: list[str] = []
    pending: tuple[int, str] | None = None
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        body = raw[depth:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        if pending is not None and pending[0] == depth:
            body = pending[1] + body
        elif pending is not None:
            out.append(_flowed_line(*pending))
        pending = None
        if body.endswith(" ") and body != "-- ":
            pending = (depth, body[:-1] if delsp else body)
        else:
            out.append(_flowed_line(depth, body))
    if pending is not None:
        out.append(_flowed_line(*pending))
    return "\n".join(out)


def _flowed_line(depth: int, body: str) -> str:
    return ">" * depth + (" " if depth and body else "") + body


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_INVISIBLE.update({0xA0: " ", 0x202F: " "})


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# --- recognising quotes and signatures ------------------------------------------------

_INTRO = r"(?:On|Op|Am|Le|El|Il|Em|W\s+dniu|Dnia|Den|P[aå])"
_VERB = (
    r"(?:wrote|schreef|geschreven|schrieb|geschrieben|[ée]crit|escribi[óo]|scritto|"
    r"escreveu|pisze|napisa[łl](?:\(a\))?|skrev|kirjoitti)"
)
# every pattern needs a date (a digit) or an address: "Zoals ik al schreef:" is prose
_ATTRIBUTION = (
    re.compile(rf"^{_INTRO}\s(?=.*\d).*\b{_VERB}\b.*:$", re.IGNORECASE),
    re.compile(rf"^.{{0,200}}\S@\S.{{0,200}}\s{_VERB}\s?:$", re.IGNORECASE),  # X <x@y> wrote:
    re.compile(r"^.{1,100}\son\s(?=.*\d).{1,100}\sat\s.{1,100}\swrote\s?:$", re.IGNORECASE),
)
_SEPARATOR = re.compile(
    r"^[-_=*\s]*(?:original(?:e)? message|oorspronkelijk bericht|origineel bericht|"
    r"ursprüngliche nachricht|message d'origine|forwarded message|doorgestuurd bericht|"
    r"weitergeleitete nachricht|message transf[ée]r[ée]|wiadomo[śs][ćc] przekazana(?: dalej)?|"
    r"begin (?:forwarded|doorgestuurd) (?:message|bericht):?)[-_=*\s]*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^_{10,}$")
_HEADER_FROM = re.compile(r"^\*?(?:from|van|von|de|da)\s?:\*?\s*\S", re.IGNORECASE)
_HEADER_DATE = re.compile(
    r"^\*?(?:sent|date|verzonden|datum|gesendet|envoy[ée]|inviato|enviado)\s?:\*?",
    re.IGNORECASE,
)
_HEADER_OTHER = re.compile(
    r"^\*?(?:to|aan|an|[àa]|para|cc|subject|onderwerp|betreff|objet|oggetto|asunto)"
    r"\s?:\*?",
    re.IGNORECASE,
)
_SIG_DELIMITER = re.compile(r"^--\s*$")  # "-- ", often stripped to "--" on the way
_SENT_FROM = (
    re.compile(
        r"^(?:sent|verzonden|verstuurd|gestuurd|envoy[ée]|enviado|inviato)\s+"
        r"(?:from|with|via|on|vanaf|vanuit|van|met|op|de|depuis|desde|da|dal)\s+"
        r"(?:my|mijn|mon|mi|il mio|een|an?)\s+\S[^,;:]{0,35}$",
        re.IGNORECASE,
    ),
    re.compile(
        r"^(?:sent|verzonden|verstuurd)\s+(?:from|with|via|vanaf|vanuit|met)\s+"
        r"(?:outlook|mail|gmail|yahoo|aol|proton\s?mail|samsung|android|blackberry|ios|"
        r"ipad|iphone|windows|ziggo|kpn|telfort|xs4all)\b[^,;:]{0,35}$",
        re.IGNORECASE,
    ),
    re.compile(r"^von meine[mr]\s.{1,50}\sgesendet\.?$", re.IGNORECASE),
    re.compile(r"^(?:get|download|haal)\s+outlook\s+(?:for|voor)\s.{1,30}$", re.IGNORECASE),
    re.compile(r"^(?:outlook voor \S+ downloaden|t[ée]l[ée]charger outlook pour .{1,30})$", re.I),
)
# only when something was written above it: "Groetjes, Jan" alone is not a signature
_VALEDICTION = re.compile(
    r"^(?:met\s+)?(?:(?:vriendelijke|hartelijke|beste|lieve|warme)\s+)?"
    r"(?:groet(?:en|jes)?|gr\.?|mvg|m\.v\.g\.?|kind regards|best regards|regards|best wishes|"
    r"cheers|mit freundlichen gr[üu](?:ß|ss)en|viele gr[üu](?:ß|ss)e|cordialement|bien à vous)"
    r"(?!\w)[,.!]?(?:\s*[,-]?\s*\S+(?:\s+\S+){0,2})?$",  # and at most a name after it
    re.IGNORECASE,
)


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _is_header_block(lines: list[str], i: int) -> bool:
    """An Outlook-style "Van: / Verzonden: / Aan: / Onderwerp:" block starts at i."""
    if not _HEADER_FROM.match(lines[i].strip()):
        return False
    window = [line.strip() for line in lines[i + 1 : i + 7]]
    return any(_HEADER_DATE.match(w) for w in window) and any(
        _HEADER_OTHER.match(w) for w in window
    )


def _starts_outlook_quote(lines: list[str], i: int) -> bool:
    stripped = lines[i].strip()
    if _SEPARATOR.match(stripped):
        return True
    if _RULE.match(stripped):
        following = _next_nonblank(lines, i + 1)
        return following is not None and _is_header_block(lines, following)
    return _is_header_block(lines, i)


def _attribution_length(lines: list[str], i: int) -> int:
    """How many lines (1-3) an attribution starting at i spans, or 0 if there is none."""
    joined = ""
    for n in range(3):
        if i + n >= len(lines) or _is_quoted(lines[i + n]) or not lines[i + n].strip():
            return 0
        joined = f"{joined} {lines[i + n].strip()}".strip()
        if len(joined) > _ATTRIBUTION_MAX:
            return 0
        if joined.endswith(":") and any(p.match(joined) for p in _ATTRIBUTION):
            return n + 1
        if n == 0 and not re.match(rf"^{_INTRO}\s", joined, re.IGNORECASE):
            return 0  # only a dated intro ("Op di 3 nov. …") may wrap onto more lines
    return 0


def _next_nonblank(lines: list[str], start: int) -> int | None:
    """The next non-blank line within a few lines (bounded: no quadratic scans)."""
    return next((j for j in range(start, min(start + 4, len(lines))) if lines[j].strip()), None)


def _is_signature_start(line: str, *, has_own_text: bool) -> bool:
    stripped = line.strip()
    if len(stripped) > 100:
        return False
    if _SIG_DELIMITER.match(stripped) or any(p.match(stripped) for p in _SENT_FROM):
        return True
    return has_own_text and _VALEDICTION.match(stripped) is not None


def classify_lines(text: str) -> tuple[Line, ...]:
    """Label every line of ``text`` as the writer's own, quoted, or signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kinds: list[LineKind] = []
    in_signature = has_own = False
    while len(kinds) < len(lines):
        i = len(kinds)
        if _is_quoted(lines[i]):
            kinds.append(LineKind.QUOTED)
            in_signature = False
        elif _starts_outlook_quote(lines, i):
            break  # Outlook quotes without ">": the rest is quoted
        elif span := _attribution_length(lines, i):
            following = _next_nonblank(lines, i + span)
            if following is None or not _is_quoted(lines[following]):
                break  # an attribution not followed by ">" lines: the rest is the quote
            kinds.extend([LineKind.QUOTED] * span)
            in_signature = False
        elif in_signature or _is_signature_start(lines[i], has_own_text=has_own):
            kinds.append(LineKind.SIGNATURE)
            in_signature = True
        else:
            kinds.append(LineKind.OWN)
            has_own = has_own or bool(lines[i].strip())
    kinds.extend([LineKind.QUOTED] * (len(lines) - len(kinds)))
    return tuple(Line(kind, line) for kind, line in zip(kinds, lines, strict=True))


def split_own_text(text: str) -> OwnText:
    """Split ``text`` into what the writer wrote and what they quoted (signature dropped)."""
    classified = classify_lines(text)
    own = [line.text for line in classified if line.kind is LineKind.OWN]
    quoted = [line.text for line in classified if line.kind is LineKind.QUOTED]
    return OwnText(own=tidy_lines(own), quoted=tidy_lines(quoted))


def tidy_lines(lines: list[str]) -> str:
    """Join lines, trim blank edges and squeeze runs of blank lines to one."""
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1].strip()):
            out.append(line.rstrip())
    return "\n".join(out).strip("\n")
