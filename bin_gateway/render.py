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

import base64
import hashlib
import html
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import EmailMessage, MIMEPart
from html.parser import HTMLParser
from io import BytesIO
from typing import TypeVar, cast

from bin_gateway import texts

__all__ = ["BulletinSource", "BulletinTemplate"]

# MIME part headers and bodies: CRLF line ends, RFC 2231 parameters, lines folded at 78.
_OUT = email_policy.SMTP
_LENIENT_OUT = email_policy.compat32.clone(linesep="\r\n", mangle_from_=False)

_WORDS = {
    "nl": {"note": "Noot van de coördinator:", "no_subject": "(geen onderwerp)"},
    "en": {"note": "Coordinator's note:", "no_subject": "(no subject)"},
}
_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_MAX_DEPTH = 16  # deeper nesting is hostile, not mail an agency writes
_MAX_SUBJECT = 250
_MAX_NAME = 120
_PLAIN_ATOM = re.compile(r"(?!.*=\?)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A subject word left as it is: printable ASCII that no decoder could take for an encoded-word.
_PLAIN_WORD = re.compile(r"(?!.*=\?)[!-~]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029<>,;]")
_MESSAGE_ID = re.compile(r"<?([!-;=?A-~]+@[!-;=?A-Z^-~]+)>?")
_BAD_URL = re.compile(r"[^!#-;=?-~]")  # printable ASCII without space, '"', '<', '>'
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_LIST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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


@dataclass(slots=True)
class _Content:
    """What we keep of the original while walking its MIME tree (an accumulator)."""

    text: str | None = None
    html: str | None = None
    related: list[MIMEPart] = field(default_factory=list)  # inline resources of the HTML
    attachments: list[MIMEPart] = field(default_factory=list)

    def has_body(self) -> bool:
        return self.text is not None or self.html is not None


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
        original = _parse(source.original)
        subject = _prefixed_subject(original, source.subject_prefix, words["no_subject"])
        display = _one_line(f"{_one_line(source.sender_name)[:_MAX_NAME]} via {source.list_name}")
        content_type, cte, body = _render_body(source, original)
        list_name, list_tag = _one_line(source.list_name), f"{source.list_id}.{source.domain}"
        return cls(
            body=body,
            subject=subject,
            from_header=_encode_from(display, list_address),
            subject_header=_encode_subject(subject),
            list_id_header=_header("List-Id", [*_phrase_tokens(list_name), f"<{list_tag}>"]),
            list_address=list_address,
            unsubscribe_mailto=f"<mailto:{source.list_id}+afmelden@{source.domain}>",
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
            ("To", _checked_address("to", to)),
            ("Subject", self.subject_header),
            ("Date", _checked_line("date", date)),
            ("Message-ID", _checked_message_id(message_id)),
            ("Reply-To", _checked_address("reply_to", reply_to)),
            ("List-Id", self.list_id_header),
        ]
        if one_click_url is None:
            headers.append(("List-Unsubscribe", self.unsubscribe_mailto))
        else:
            url = _checked_url(one_click_url)
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


# --- per-member checks (hot path: keep them to one regex each) ---------------------------


def _checked_address(name: str, value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or _BAD_ADDRESS.search(value):
        raise ValueError(f"{name}: not a bare mail address: {value!r}")
    return value


def _checked_line(name: str, value: str) -> str:
    if not value or _CONTROL.search(value):
        raise ValueError(f"{name}: empty or contains control characters: {value!r}")
    return value


def _checked_message_id(value: str) -> str:
    match = _MESSAGE_ID.fullmatch(value)
    if match is None or value.startswith("<") != value.endswith(">"):
        raise ValueError(f"message_id: not a msg-id: {value!r}")
    return f"<{match.group(1)}>"


def _checked_url(value: str) -> str:
    if not value.lower().startswith("https://") or len(value) > 900 or _BAD_URL.search(value):
        raise ValueError(f"one_click_url: not a plain https URL: {value!r}")
    return value


def _check_source(source: BulletinSource) -> None:
    """Settings come from the config; a bad one is a programming error, not bad mail."""
    if source.language not in _WORDS:
        raise ValueError(f"unknown language {source.language!r}")
    if not _DOMAIN.fullmatch(source.domain) or not _LIST_ID.fullmatch(source.list_id):
        raise ValueError(f"bad list address {source.list_id!r}@{source.domain!r}")


# --- shared headers (once per bulletin) --------------------------------------------------


def _one_line(value: str) -> str:
    """Collapse control characters and whitespace runs: header text is one line."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _header(name: str, tokens: list[str]) -> str:
    """Join tokens with spaces, folding between them so no line passes 78 characters."""
    lines, width = [tokens[0]], len(name) + 2 + len(tokens[0])
    for token in tokens[1:]:
        if width + 1 + len(token) > 78:
            lines.append(token)
            width = 1 + len(token)
        else:
            lines[-1] += " " + token
            width += 1 + len(token)
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-words of at most 75 characters, never splitting a character."""
    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > 45:  # 45 octets are 60 base64 characters
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words]


def _mixed_tokens(text: str, plain: re.Pattern[str]) -> list[str]:
    """Words matching ``plain`` stay readable; each run of other words becomes encoded-words.

    A run is encoded with its inner spaces, as decoders drop the space between two
    encoded-words; plain words between runs keep runs apart.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if plain.fullmatch(word):
            if run:
                tokens += _encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _encoded_words(" ".join(run))
    return tokens


def _phrase_tokens(phrase: str) -> list[str]:
    """A display name or List-Id phrase: atoms, one quoted-string, or encoded-words.

    Any "=?" is encoded, quoted or not: some clients decode encoded-words even inside
    quotes, which would let a name show text it does not contain.
    """
    if not phrase:
        return []
    if phrase.isascii() and "=?" not in phrase:
        if _ATOMS.fullmatch(phrase):
            return phrase.split(" ")
        quoted = phrase.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}"'.split(" ")  # a fold inside a quoted-string keeps its space
    return _mixed_tokens(phrase, _PLAIN_ATOM)


def _encode_from(display: str, address: str) -> str:
    return _header("From", [*_phrase_tokens(display), f"<{address}>"])


def _encode_subject(subject: str) -> str:
    return _header("Subject", _mixed_tokens(subject, _PLAIN_WORD))


def _prefixed_subject(original: MIMEPart | None, prefix: str, neutral: str) -> str:
    subject = ""
    if original is not None:
        try:
            # The bottom-most Subject: DKIM signs bottom-up, a prepended one is unsigned.
            values = original.get_all("Subject") or []
            subject = _one_line(str(values[-1])) if values else ""
        except Exception:  # a broken header must not stop the bulletin
            subject = ""
    if len(subject) > _MAX_SUBJECT:
        subject = subject[: _MAX_SUBJECT - 1] + "…"
    subject = subject or neutral
    prefix = _one_line(prefix)
    if prefix and prefix.casefold() not in subject.casefold():
        subject = f"{prefix} {subject}"
    return subject


# --- reading the original ----------------------------------------------------------------


def _parse(original: bytes) -> MIMEPart | None:
    try:
        return message_from_bytes(original, policy=email_policy.default)
    except Exception:  # the parser is lenient; this is the last resort
        return None


def _collect(part: MIMEPart, found: _Content, depth: int = 0) -> None:
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


def _collect_leaf(part: MIMEPart, found: _Content) -> None:
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
    declared = (part.get_content_charset() or "us-ascii").lower()
    if declared in ("us-ascii", "ascii"):
        chain = ["utf-8"]
    elif declared in ("iso-8859-1", "latin-1", "latin1", "l1"):
        chain = []  # WHATWG: this label means windows-1252 in practice
    else:
        chain = [declared, "utf-8"]
    for charset in chain:
        try:
            return _tidy(raw.decode(charset))
        except (LookupError, UnicodeError):
            continue
    return _tidy(raw.decode("cp1252", errors="replace"))


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def _fallback_text(original: bytes) -> str:
    _, _, body = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    try:
        return _tidy(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _tidy(body.decode("cp1252", errors="replace"))


# --- writing the body --------------------------------------------------------------------


def _render_body(source: BulletinSource, original: MIMEPart | None) -> tuple[str, str, bytes]:
    found = _Content()
    try:
        if original is not None:
            _collect(original, found)
    except Exception:  # broken MIME: fall back to the best text we can get
        found = _Content(text=_fallback_text(source.original))
    if original is None:
        found.text = _fallback_text(source.original)
    try:
        return _generate(_assemble(source, found))
    except Exception:  # an unrenderable attachment must not lose the text
        plain = _Content(text=found.text, html=found.html)
        return _generate(_assemble(source, plain))


def _assemble(source: BulletinSource, found: _Content) -> MIMEPart:
    seed = hashlib.sha256(source.original + repr(source.note).encode()).hexdigest()[:16]
    counter = itertools.count()

    def boundary() -> str:
        # "=_" never occurs in quoted-printable or base64, the encodings of our leaves.
        return f"=_bin_{seed}_{next(counter)}"

    text = found.text if found.text is not None else html_to_text(found.html or "")
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
        "list_name": _one_line(source.list_name),
        "replies_go_to": _one_line(source.replies_go_to),
        "leave_address": f"{source.list_id}+afmelden@{source.domain}",
    }


def _frame_text(source: BulletinSource, text: str) -> str:
    footer = texts.render(source.language, "bulletin_footer", **_footer_fields(source)).body
    note = _tidy(source.note).strip()
    top = f"{_WORDS[source.language]['note']}\n{note}\n\n{'-' * 40}\n\n" if note else ""
    # "-- " is the signature delimiter: mail clients leave the footer out of replies.
    return f"{top}{text.strip(chr(10))}\n\n-- \n{footer.strip()}\n"


def _frame_html(source: BulletinSource, original_html: str) -> str:
    escaped = {k: html.escape(v) for k, v in _footer_fields(source).items()}
    footer = texts.render_html(source.language, "bulletin_footer", **escaped)
    note = _tidy(source.note).strip()
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
    if ctype.startswith("multipart/"):  # a container without boundary: keep its bytes
        ctype = "application/octet-stream"
    maintype, _, subtype = ctype.partition("/")
    filename = _one_line(part.get_filename() or "") or None
    cid = _one_line(str(part.get("Content-ID", ""))) or None
    params: dict[str, object] = _safe(lambda: dict(part["Content-Type"].params), {})
    params = {k: _one_line(str(v)) for k, v in params.items() if k not in ("boundary", "name")}
    if filename:
        params["name"] = filename
    disposition = part.get_content_disposition() or disposition
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
    filename = _one_line(part.get_filename() or "") or "bericht.eml"
    leaf.set_content(data, "application", "octet-stream", filename=filename)
    return leaf


_T = TypeVar("_T")


def _safe(compute: Callable[[], _T], default: _T) -> _T:
    try:
        return compute()
    except Exception:  # header objects raise on some malformed values
        return default


# --- HTML-only originals still need a text part ------------------------------------------

_BLOCK_TAGS = frozenset(
    {"p", "div", "tr", "table", "ul", "ol", "li", "h1", "h2", "h3", "h4", "blockquote"}
    | {"hr", "pre", "section", "article", "header", "footer", "address", "dl", "dt", "dd"}
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "template"})


class _TextExtractor(HTMLParser):
    """Visible text with line breaks at block elements and link targets kept."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag == "br" or tag in _BLOCK_TAGS:
            self.chunks.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self._href = href if href.lower().startswith(("http:", "https:")) else None

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        elif tag == "a" and self._href:
            if not self.chunks or self._href not in self.chunks[-1]:
                self.chunks.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """Readable text of an HTML document, for the text part of an HTML-only bulletin."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.chunks)
    except Exception:  # broken markup: strip tags the crude way
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
