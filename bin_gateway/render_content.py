"""What a bulletin keeps of the original: its text, HTML, inline images and attachments.

The first text and HTML parts are the body; inline resources of the HTML stay with it;
every other leaf becomes an attachment; signatures and hostile nesting are dropped. Text
is decoded whatever its label says, and broken MIME falls back to the raw body as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import MIMEPart

from .mailtext import decode_bytes

__all__ = ["Content", "collect_content", "parse_original", "tidy"]

_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_MAX_DEPTH = 16  # deeper nesting is hostile, not mail an agency writes


@dataclass(slots=True)
class Content:
    """What we keep of the original while walking its MIME tree (an accumulator)."""

    text: str | None = None
    html: str | None = None
    related: list[MIMEPart] = field(default_factory=list)  # inline resources of the HTML
    attachments: list[MIMEPart] = field(default_factory=list)

    def has_body(self) -> bool:
        return self.text is not None or self.html is not None


def collect_content(original: MIMEPart | None, raw: bytes) -> Content:
    """The parts of ``original`` (parsed from ``raw``) to keep; never raises on bad MIME."""
    found = Content()
    try:
        if original is not None:
            _collect(original, found)
    except Exception:  # broken MIME: fall back to the best text we can get
        found = Content(text=_fallback_text(raw))
    if original is None:
        found.text = _fallback_text(raw)
    return found


def parse_original(original: bytes) -> MIMEPart | None:
    try:
        return message_from_bytes(original, policy=email_policy.default)
    except Exception:  # the parser is lenient; this is the last resort
        return None


def _collect(part: MIMEPart, found: Content, depth: int = 0) -> None:
    """Walk the MIME tree: the first text and HTML are the body, the rest is kept aside."""
    ctype = part.get_content_type()
    if depth > _MAX_DEPTH or ctype in _SIGNATURES:
        return
    if part.get_content_maintype() == "message" or not part.is_multipart():
        _collect_leaf(part, found)
        return
    subparts = [p for p in part.get_payload() if isinstance(p, MIMEPart)]
    subtype = part.get_content_subtype()
    if subtype == "related" and subparts:
        _collect(subparts[0], found, depth + 1)
        for sub in subparts[1:]:
            target = found.related if sub.get("Content-ID") else found.attachments
            target.extend(_leaves(sub, depth + 1))
        return
    for sub in subparts:
        # alternative and signed hold one body in several forms; mixed holds one body first.
        if subtype in ("alternative", "signed") or not (sub.is_attachment() or found.has_body()):
            _collect(sub, found, depth + 1)
        else:
            found.attachments.extend(_leaves(sub, depth + 1))


def _collect_leaf(part: MIMEPart, found: Content) -> None:
    ctype = part.get_content_type()
    if not part.is_attachment():
        # A multipart without a usable boundary arrives as a leaf: its raw text is the body.
        if (ctype == "text/plain" or ctype.startswith("multipart/")) and found.text is None:
            found.text = _decode_text(part)
            return
        if ctype == "text/html" and found.html is None:
            found.html = _decode_text(part)
            return
    found.attachments.append(part)


def _leaves(part: MIMEPart, depth: int) -> list[MIMEPart]:
    if depth > _MAX_DEPTH or part.get_content_type() in _SIGNATURES:
        return []
    if part.get_content_maintype() == "message" or not part.is_multipart():
        return [part]
    subparts = [p for p in part.get_payload() if isinstance(p, MIMEPart)]
    return [leaf for sub in subparts for leaf in _leaves(sub, depth + 1)]


def _decode_text(part: MIMEPart) -> str:
    """Decode a text part whatever its label says; mislabelled 8-bit text is common."""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raw = str(part.get_payload()).encode("utf-8", "replace")
    return tidy(decode_bytes(raw, part.get_content_charset() or "us-ascii"))


def tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def _fallback_text(original: bytes) -> str:
    _, _, body = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    try:
        return tidy(body.decode("utf-8"))
    except UnicodeDecodeError:
        return tidy(body.decode("cp1252", errors="replace"))
