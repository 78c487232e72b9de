"""Render an approved bulletin once, then personalise it per member cheaply.

:meth:`BulletinTemplate.build` does the expensive work once per bulletin: it parses the
original, keeps its text, HTML, inline images and attachments, drops every other header,
frames the text and HTML with the coordinator's note and the footer, and encodes the
shared headers. The body is identical for every member, so its DKIM body hash is computed
once. :meth:`BulletinTemplate.headers_for` then only fills in the per-member values.

``build`` is CPU work: call it through ``asyncio.to_thread``. It is deterministic (the
MIME boundaries derive from the input), so a re-render after a crash is byte-identical.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import EmailMessage, MIMEPart
from io import BytesIO
from typing import TypeVar, cast

from bin_gateway import texts
from bin_gateway.htmltext import html_to_text
from bin_gateway.render_content import Content, collect_content, parse_original, tidy
from bin_gateway.render_headers import (
    checked_address,
    checked_line,
    checked_message_id,
    checked_url,
    encode_from,
    encode_list_id,
    encode_subject,
    one_line,
    prefixed_subject,
)

__all__ = ["BulletinSource", "BulletinTemplate"]

# MIME part headers and bodies: CRLF line ends, RFC 2231 parameters, lines folded at 78.
_OUT = email_policy.SMTP
_LENIENT_OUT = email_policy.compat32.clone(linesep="\r\n", mangle_from_=False)

_WORDS = {
    "nl": {"note": "Noot van de coördinator:", "no_subject": "(geen onderwerp)"},
    "en": {"note": "Coordinator's note:", "no_subject": "(no subject)"},
}
_MAX_NAME = 120
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_LIST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# RFC 2045 tokens, kept short: what the generator cannot fold must stay under 998 octets.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_MAX_PARAMETERS = 8
_PARAMETER = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_CONTENT_ID = re.compile(r"<?[!-~]{1,250}>?")
_META_CHARSET = re.compile(r"(<meta\b[^>]*?charset\s*=\s*[\"']?)([-\w:.]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BulletinSource:
    """Everything a bulletin is rendered from; identical inputs give identical bytes."""

    original: bytes  # the agency's (or coordinator's) message as received
    sender_name: str  # "Politie Oost-Brabant" (agency) or the coordinator's name
    list_id: str  # "buurt-noord"
    list_name: str  # "BIN Noord"
    domain: str  # "bin.example.nl"
    subject_prefix: str  # "[BIN Noord]"
    note: str  # coordinator's note, "" for none
    language: str  # "nl" | "en"
    replies_go_to: str  # footer text: e.g. "de politie en de coördinator"


@dataclass(frozen=True, slots=True)
class BulletinTemplate:
    """One bulletin's shared body and pre-encoded headers; personalise with headers_for."""

    body: bytes  # CRLF line endings, 7bit, identical for all members
    subject: str  # decoded subject as sent, prefix included
    from_header: str  # the values below are encoded and folded ("\r\n " continuations)
    subject_header: str
    list_id_header: str
    list_address: str  # "buurt-noord@bin.example.nl", also the X-Loop marker
    unsubscribe_mailto: str  # "<mailto:buurt-noord+afmelden@bin.example.nl>"
    content_type: str
    transfer_encoding: str

    @classmethod
    def build(cls, source: BulletinSource) -> BulletinTemplate:
        """Render ``source``; never raises on the original's content, only on bad settings."""
        _check_source(source)
        words = _WORDS[source.language]
        list_address = f"{source.list_id}@{source.domain}"
        original = parse_original(source.original)
        subject = prefixed_subject(original, source.subject_prefix, words["no_subject"])
        display = one_line(f"{one_line(source.sender_name)[:_MAX_NAME]} via {source.list_name}")
        content_type, cte, body = _render_body(source, original)
        list_name, list_tag = one_line(source.list_name), f"{source.list_id}.{source.domain}"
        return cls(
            body=body,
            subject=subject,
            from_header=encode_from(display, list_address),
            subject_header=encode_subject(subject),
            list_id_header=encode_list_id(list_name, list_tag),
            list_address=list_address,
            unsubscribe_mailto=f"<mailto:{_leave_address(source)}>",
            content_type=content_type,
            transfer_encoding=cte,
        )

    def headers_for(
        self,
        *,
        to: str,
        reply_to: str,
        message_id: str,
        date: str,
        one_click_url: str | None = None,
    ) -> list[tuple[str, str]]:
        """The member's headers in order; raises ValueError on an unsafe value."""
        headers = [
            ("From", self.from_header),
            ("To", checked_address("to", to)),
            ("Subject", self.subject_header),
            ("Date", checked_line("date", date)),
            ("Message-ID", checked_message_id(message_id)),
            ("Reply-To", checked_address("reply_to", reply_to)),
            ("List-Id", self.list_id_header),
        ]
        if one_click_url is None:
            headers.append(("List-Unsubscribe", self.unsubscribe_mailto))
        else:
            url = checked_url(one_click_url)
            headers.append(("List-Unsubscribe", f"{self.unsubscribe_mailto},\r\n <{url}>"))
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers += [
            ("Precedence", "list"),
            ("X-Loop", self.list_address),
            ("MIME-Version", "1.0"),
            ("Content-Type", self.content_type),
            ("Content-Transfer-Encoding", self.transfer_encoding),
        ]
        return headers

    def message_for(
        self,
        *,
        to: str,
        reply_to: str,
        message_id: str,
        date: str,
        one_click_url: str | None = None,
    ) -> bytes:
        """The member's whole message: headers, a blank line, the shared body."""
        headers = self.headers_for(
            to=to, reply_to=reply_to, message_id=message_id, date=date, one_click_url=one_click_url
        )
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        # UTF-8 only for an internationalised member address (SMTPUTF8); all else is ASCII.
        return head.encode("utf-8") + b"\r\n" + self.body


# --- settings ----------------------------------------------------------------------------


def _check_source(source: BulletinSource) -> None:
    """Settings come from the config; a bad one is a programming error, not bad mail."""
    if source.language not in _WORDS:
        raise ValueError(f"unknown language {source.language!r}")
    if not _DOMAIN.fullmatch(source.domain) or not _LIST_ID.fullmatch(source.list_id):
        raise ValueError(f"bad list address {source.list_id!r}@{source.domain!r}")


def _leave_address(source: BulletinSource) -> str:
    """Where a member writes to leave the list (also the List-Unsubscribe mailto)."""
    return f"{source.list_id}+afmelden@{source.domain}"


# --- writing the body --------------------------------------------------------------------


def _render_body(source: BulletinSource, original: MIMEPart | None) -> tuple[str, str, bytes]:
    found = collect_content(original, source.original)
    try:
        return _generate(_assemble(source, found))
    except Exception:  # an unrenderable attachment must not lose the text
        plain = Content(text=found.text, html=found.html)
        return _generate(_assemble(source, plain))


def _assemble(source: BulletinSource, found: Content) -> MIMEPart:
    seed = hashlib.sha256(source.original + repr(source.note).encode()).hexdigest()[:16]
    counter = itertools.count()

    def boundary() -> str:
        # "=_" never occurs in quoted-printable or base64, the encodings of our leaves.
        return f"=_bin_{seed}_{next(counter)}"

    if found.text is not None:
        text = found.text
    else:  # an HTML-only original still needs a text part
        text = html_to_text(found.html or "", links=True, paragraphs=True)
    root: MIMEPart = _text_leaf(_frame_text(source, text), "plain")
    attachments = [_rebuilt(p, "attachment") for p in found.attachments]
    if found.html is not None:
        html_leaf = _text_leaf(_frame_html(source, found.html), "html")
        if found.related:
            inline = [_rebuilt(p, "inline") for p in found.related]
            kept_inline = [p for p in inline if p is not None]
            html_leaf = _multipart("related", [html_leaf, *kept_inline], boundary())
        root = _multipart("alternative", [root, html_leaf], boundary())
    else:
        attachments += [_rebuilt(p, "attachment") for p in found.related]
    kept = [a for a in attachments if a is not None]
    if kept:
        root = _multipart("mixed", [root, *kept], boundary())
    return root


def _generate(root: MIMEPart) -> tuple[str, str, bytes]:
    buffer = BytesIO()
    BytesGenerator(buffer, policy=_OUT, mangle_from_=False).flatten(cast(EmailMessage, root))
    head, _, body = buffer.getvalue().partition(b"\r\n\r\n")
    fields: dict[str, str] = {}
    for line in re.split(rb"\r\n(?![ \t])", head):
        name, _, value = line.decode("ascii").partition(":")
        fields[name.strip().lower()] = value.strip()
    # Belt and braces: no bare CR or LF may reach the wire (SMTP smuggling).
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return fields["content-type"], fields.get("content-transfer-encoding", "7bit"), body


def _multipart(subtype: str, parts: list[MIMEPart], boundary: str) -> MIMEPart:
    container = MIMEPart(policy=_OUT)
    container["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    for part in parts:
        container.attach(part)
    return container


def _text_leaf(text: str, subtype: str) -> MIMEPart:
    leaf = MIMEPart(policy=_OUT)
    leaf.set_content(text, subtype=subtype, charset="utf-8", cte="quoted-printable")
    return leaf


def _footer_fields(source: BulletinSource) -> dict[str, str]:
    return {
        "list_name": one_line(source.list_name),
        "replies_go_to": one_line(source.replies_go_to),
        "leave_address": _leave_address(source),
    }


def _frame_text(source: BulletinSource, text: str) -> str:
    footer = texts.render(source.language, "bulletin_footer", **_footer_fields(source)).body
    note = tidy(source.note).strip()
    top = f"{_WORDS[source.language]['note']}\n{note}\n\n{'-' * 40}\n\n" if note else ""
    # "-- " is the signature delimiter: mail clients leave the footer out of replies.
    return f"{top}{text.strip(chr(10))}\n\n-- \n{footer.strip()}\n"


def _frame_html(source: BulletinSource, original_html: str) -> str:
    escaped = {k: html.escape(v) for k, v in _footer_fields(source).items()}
    footer = texts.render_html(source.language, "bulletin_footer", **escaped)
    note = tidy(source.note).strip()
    top = ""
    if note:
        label = html.escape(_WORDS[source.language]["note"])
        lines = "<br>\n".join(html.escape(line) for line in note.split("\n"))
        top = (
            '<div style="margin:0 0 1em 0;padding:0.5em 1em;border-left:4px solid #c2410c;'
            f'background:#fff7ed"><p style="margin:0 0 0.5em 0"><strong>{label}</strong></p>'
            f'<p style="margin:0">{lines}</p></div>\n'
        )
    bottom = f'\n<hr>\n<div style="font-size:smaller;color:#555555">\n{footer.strip()}\n</div>\n'
    # The part is re-encoded as UTF-8; a <meta charset> left at the old value would win
    # in some clients and garble the text.
    doc = _META_CHARSET.sub(lambda m: m.group(1) + "utf-8", original_html)
    opening = re.search(r"<body\b[^>]*>", doc, re.IGNORECASE)
    cut = opening.end() if opening else 0
    doc = doc[:cut] + top + doc[cut:]
    closing = doc.lower().rfind("</body")
    closing = closing if closing >= 0 else len(doc)
    return doc[:closing] + bottom + doc[closing:]


def _rebuilt(part: MIMEPart, disposition: str) -> MIMEPart | None:
    """A fresh part with the same decoded bytes; only Content-* metadata is carried over."""
    if part.get_content_maintype() == "message":
        return _rebuilt_message(part)
    data = part.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    ctype = part.get_content_type()
    if ctype.startswith("multipart/") or not _MEDIA_TYPE.fullmatch(ctype):
        # A container without boundary, or a type that is no type at all (Python hands
        # back junk such as a 1,000-letter "maintype" as it is): keep the bytes only.
        ctype = "application/octet-stream"
    maintype, _, subtype = ctype.partition("/")
    filename = one_line(part.get_filename() or "") or None
    cid = one_line(str(part.get("Content-ID", ""))) or None
    if cid is not None and not _CONTENT_ID.fullmatch(cid):
        cid = None  # an unfoldable line over 998 octets would break the copy's DKIM
    params: dict[str, object] = _safe(lambda: dict(part["Content-Type"].params), {})
    # Short plain names only (CPython's folder loops forever on a 1,000-letter one) and
    # few of them (folding time grows with the square of their number).
    kept = [(k, v) for k, v in params.items()
            if k not in ("boundary", "name") and _PARAMETER.fullmatch(k)][:_MAX_PARAMETERS]
    params = {k: one_line(str(v)) for k, v in kept}
    if filename:
        params["name"] = filename
    found = part.get_content_disposition()
    disposition = found if found in ("inline", "attachment") else disposition
    leaf = MIMEPart(policy=_OUT)
    try:
        leaf.set_content(data, maintype, subtype, disposition=disposition, filename=filename,
                         cid=cid, params=params)  # fmt: skip
    except Exception:  # odd metadata: keep the bytes, lose the decoration
        leaf = MIMEPart(policy=_OUT)
        leaf.set_content(data, "application", "octet-stream", disposition="attachment")
    return leaf


def _rebuilt_message(part: MIMEPart) -> MIMEPart | None:
    """message/rfc822 may only be 7bit/8bit: keep it when clean, else ship it as a file."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    data = b""
    for out in (email_policy.default.clone(linesep="\r\n"), _LENIENT_OUT):
        try:
            data = inner.as_bytes(policy=out) if isinstance(inner, MIMEPart) else b""
            break
        except Exception:  # noqa: S112 - try the more lenient generator next
            continue
    if not data:
        return None
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    leaf = MIMEPart(policy=_OUT)
    clean = data.isascii() and all(len(line) <= 998 for line in data.split(b"\r\n"))
    if part.get_content_type() == "message/rfc822" and clean:
        leaf["Content-Type"] = "message/rfc822"
        leaf["Content-Transfer-Encoding"] = "7bit"
        leaf.set_payload(data.decode("ascii"))
        return leaf
    filename = one_line(part.get_filename() or "") or "bericht.eml"
    leaf.set_content(data, "application", "octet-stream", filename=filename)
    return leaf


_T = TypeVar("_T")


def _safe(compute: Callable[[], _T], default: _T) -> _T:
    try:
        return compute()
    except Exception:  # header objects raise on some malformed values
        return default
