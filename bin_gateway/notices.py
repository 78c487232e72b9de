"""Mails the gateway writes itself: moderation requests, outcomes, confirmations.

Each is built whole, DKIM-signed and queued in the caller's transaction, once per
``source_key`` (a re-run after a crash finds the key and queues nothing twice). They
say ``Auto-Submitted: auto-generated`` (RFC 3834) so well-behaved robots stay quiet,
and carry our X-Loop so a forwarded copy that comes back is dropped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite

from .render_headers import one_line
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
        self._domain = domain
        self.signer = signer  # also signs relayed replies (reply_relay)

    def build(self, notice: Notice) -> bytes:
        text = render(notice.language, notice.text, **notice.fields)
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = Address(_one_line(notice.from_name), notice.from_local, self._domain)
        message["To"] = notice.to
        message["Subject"] = _one_line(text.subject)
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<notice-{uuid.uuid4().hex}@{self._domain}>"
        if notice.reply_to:
            message["Reply-To"] = ", ".join(notice.reply_to)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Loop"] = f"{LOOP_ADDRESS_LOCAL}@{self._domain}"
        message.set_content(text.body, charset="utf-8", cte="quoted-printable")
        if notice.attachment is not None:
            message.add_attachment(
                notice.attachment, maintype="application", subtype="octet-stream",
                filename=notice.attachment_name,
            )
        return self.signer.sign_message(message.as_bytes())

    async def queue(
        self, db: aiosqlite.Connection, notice: Notice, *, kind: str, source_key: str
    ) -> bool:
        """Build, sign and queue ``notice`` inside the caller's transaction."""
        return await Store.enqueue_message(
            db, kind=kind, source_key=f"{source_key}:{notice.to.lower()}",
            envelope_from="", recipients=[notice.to], message=self.build(notice),
        )


def _one_line(text: str) -> str:
    return one_line(text)[:200]
