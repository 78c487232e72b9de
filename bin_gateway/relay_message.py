"""The envelope of a relayed reply: fresh headers in front of the anonymised entity.

Nothing of the writer's own headers is carried over (``anonymise`` returns only the MIME
entity). Message-ID, In-Reply-To and References are ours: In-Reply-To names the thread,
so both sides' mail clients keep the conversation together without learning anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from .notices import LOOP_ADDRESS_LOCAL
from .render_headers import one_line


@dataclass(frozen=True, slots=True)
class RelayHeaders:
    from_name: str
    from_local: str  # in the gateway's domain: the thread address the other side answers
    to: str
    subject: str
    thread_id: int


def thread_message_id(thread_id: int, domain: str) -> str:
    """The id every message of a thread refers to, so clients group the conversation."""
    return f"<thread-{thread_id}@{domain}>"


def relay_message(entity: bytes, headers: RelayHeaders, domain: str) -> bytes:
    """The whole unsigned message: our headers, then the entity's MIME headers and body."""
    head = EmailMessage(policy=policy.SMTP)
    address = Address(one_line(headers.from_name)[:120], headers.from_local, domain)
    head["From"] = address
    head["Reply-To"] = Address("", headers.from_local, domain)
    head["To"] = headers.to
    head["Subject"] = one_line(headers.subject)[:250]
    head["Date"] = format_datetime(datetime.now(UTC))
    head["Message-ID"] = f"<relay-{uuid.uuid4().hex}@{domain}>"
    head["In-Reply-To"] = thread_message_id(headers.thread_id, domain)
    head["References"] = thread_message_id(headers.thread_id, domain)
    # Ours coming back in (a forwarding rule, an auto-responder) is dropped as a loop.
    head["X-Loop"] = f"{LOOP_ADDRESS_LOCAL}@{domain}"
    block = head.as_bytes()
    # as_bytes ends the header block with an empty line; the entity brings its own.
    return block[: -len(b"\r\n")] + _crlf(entity)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
