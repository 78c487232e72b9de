"""Mails the gateway writes itself: moderation requests, outcomes, confirmations.

Each is built whole, DKIM-signed and queued in the caller's transaction, once per
``source_key`` (a re-run after a crash finds the key and queues nothing twice). They
say ``Auto-Submitted: auto-generated`` (RFC 3834) so well-behaved robots stay quiet,
and carry our X-Loop so a forwarded copy that comes back is dropped.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite

from .offload import in_pieces, offload
from .render_headers import checked_address, encode_from, encode_subject, one_line
from .signing import Signer
from .store import Store
from .texts import render

LOOP_ADDRESS_LOCAL = "bin-gateway"
_TIME_FORMATS = {"nl": "%d-%m-%Y %H:%M", "en": "%d %b %Y %H:%M"}
DECISION_WORDS = {
    "nl": {"approved": "goedgekeurd", "rejected": "afgewezen", "expired": "laten verlopen"},
    "en": {"approved": "approved", "rejected": "rejected", "expired": "let expire"},
}


def local_time(timestamp: float, language: str) -> str:
    """A time as a Dutch reader expects it: Amsterdam time, day first."""
    try:
        zone: ZoneInfo | None = ZoneInfo("Europe/Amsterdam")
    except ZoneInfoNotFoundError:  # no tzdata on this machine: say UTC rather than lie
        zone = None
    moment = datetime.fromtimestamp(timestamp, zone or UTC)
    suffix = "" if zone else " UTC"
    return moment.strftime(_TIME_FORMATS.get(language, _TIME_FORMATS["en"])) + suffix


@dataclass(frozen=True, slots=True)
class Notice:
    to: str
    text: str  # the texts/ name, e.g. "moderation_request"
    language: str
    fields: dict[str, object]
    from_name: str
    from_local: str  # local part in the gateway's domain
    reply_to: tuple[str, ...] = ()
    attachment: bytes | None = None  # an original message, attached as .eml
    attachment_name: str = "bericht.eml"


class NoticeWriter:
    def __init__(self, *, domain: str, signer: Signer) -> None:
        self.domain = domain
        self.signer = signer  # also signs relayed replies (reply_relay)

    def build(self, notice: Notice) -> bytes:
        """The signed message. Written as text with render_headers' encoders (the email
        package's header objects cost over a millisecond a notice, on the event loop)."""
        text = render(notice.language, notice.text, **notice.fields)
        domain = self.domain
        headers = [
            f"From: {encode_from(_one_line(notice.from_name), f'{notice.from_local}@{domain}')}",
            f"To: <{checked_address('to', notice.to)}>",
            f"Subject: {encode_subject(_one_line(text.subject))}",
            f"Date: {format_datetime(datetime.now(UTC))}",
            f"Message-ID: <notice-{uuid.uuid4().hex}@{domain}>",
        ]
        if notice.reply_to:
            reply_to = ", ".join(f"<{checked_address('reply_to', a)}>" for a in notice.reply_to)
            headers.append(f"Reply-To: {reply_to}")
        headers += ["Auto-Submitted: auto-generated", f"X-Loop: {LOOP_ADDRESS_LOCAL}@{domain}",
                    "MIME-Version: 1.0"]
        body = _text_part(text.body)
        if notice.attachment is not None:
            boundary = f"=_notice_{uuid.uuid4().hex}"
            body = (f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                    f"--{boundary}\r\n").encode("ascii") + body + (
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment;"
                f' filename="{_safe_filename(notice.attachment_name)}"\r\n\r\n'
            ).encode("ascii") + _base64_lines(notice.attachment) + f"--{boundary}--\r\n".encode()
        head = "\r\n".join(headers).encode("utf-8") + b"\r\n"
        return self.signer.sign_message(head + body)

    async def build_ahead(self, notices: Sequence[Notice]) -> list[Built]:
        """``notices`` built and signed, to queue in a transaction to come. Do this for a
        notice that attaches an original message: base64 and the DKIM body hash over up
        to ``max_message_size`` cost about half a second for 15 MB, in a worker thread
        then, and not while the transaction holds the store's write lock."""
        return await offload(_attached(notices), self._build_all, notices)

    async def queue(
        self, db: aiosqlite.Connection, notice: Notice | Built, *, kind: str, source_key: str
    ) -> bool:
        """Queue ``notice`` inside the caller's transaction, built and signed here unless
        it was built ahead (a big attachment is built in a worker thread all the same)."""
        if isinstance(notice, Notice):
            notice = (await offload(_attached([notice]), self._build_all, [notice]))[0]
        return await Store.enqueue_message(
            db, kind=kind, source_key=f"{source_key}:{notice.to.lower()}",
            envelope_from="", recipients=[notice.to], message=notice.message,
        )

    def _build_all(self, notices: Sequence[Notice]) -> list[Built]:
        return [Built(notice.to, self.build(notice)) for notice in notices]


@dataclass(frozen=True, slots=True)
class Built:
    """A notice built and signed (``NoticeWriter.build_ahead``), ready to queue."""

    to: str
    message: bytes


def _attached(notices: Iterable[Notice]) -> int:
    """The bytes of original messages ``notices`` attach: what building them reads."""
    return sum(len(n.attachment) for n in notices if n.attachment is not None)


def _one_line(text: str) -> str:
    return one_line(text)[:200]


def _text_part(body: str) -> bytes:
    """A UTF-8 text/plain part, quoted-printable, CRLF."""
    encoded = binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"))
    return (b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + encoded.replace(b"\n", b"\r\n") + b"\r\n")


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines (57 bytes each): in pieces, as base64 of 15 MB
    in one call would keep the event loop from the interpreter lock for 0.1 s."""
    return in_pieces(_base64_piece, data, step=57)


def _base64_piece(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _safe_filename(name: str) -> str:
    """Our own attachment names ("bericht.eml"): plain ASCII, no quotes."""
    cleaned = "".join(c for c in name if c.isascii() and c.isprintable() and c not in '"\\')
    return cleaned or "bericht.eml"
