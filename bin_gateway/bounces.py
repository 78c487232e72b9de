"""What a message to a VERP bounce address says about the copy it names (SPEC F5).

The bounce address already tells us which delivery, and so which recipient, this is
about; what is left to read is whether it is a failure at all, and of which kind:

* a standard DSN (RFC 3464, ``multipart/report; report-type=delivery-status``) is read
  field by field, for the block about our recipient only: ``Action: failed`` is
  permanent (the remote MTA gave up, whatever its status class), ``delayed`` is
  temporary, ``delivered``/``relayed``/``expanded`` are no failure;
* anything else goes through flufl.bounce's detectors (Exim, qmail, Yahoo, Exchange,
  ... the non-standard formats), which sort addresses into temporary and permanent;
* a message naming no failure of our recipient (an out-of-office, a person writing back,
  a DSN about somebody else) is ``NONE``: it is never counted and never answered.

Never raises: a bounce is remote input like any other.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from enum import StrEnum

from flufl.bounce import all_failures

from .render_headers import one_line

_MAX_DETAIL = 300
_MAX_PARTS = 200  # MIME parts we look at; more is hostile, not a bounce
# "550 5.1.1 ...", "550-5.1.1 ...", "#5.1.1", or an enhanced status code alone.
_SMTP_LINE = re.compile(
    r"\b[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b.*|#?\b[45]\.\d{1,3}\.\d{1,3}\b.*"
)
_DSN_BLOCK_SPLIT = re.compile(r"\r?\n\s*\r?\n")
_WARNING_SUBJECTS = ("warning: message", "delayed mail", "delivery status notification (delay)")
_WARNING_TEXT = re.compile(
    r"has not yet been delivered|no action is required on your part|still being retried"
    r"|will (?:continue to )?(?:be )?retr(?:y|ied)", re.IGNORECASE)
_DIAGNOSTIC_TYPE = re.compile(r"^\s*(?:smtp|x-[a-z0-9-]+)\s*;\s*", re.IGNORECASE)
_FIELD = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*)$")


class BounceKind(StrEnum):
    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    NONE = "none"  # not a failure of this recipient: an auto-reply, a person, another address


@dataclass(frozen=True, slots=True)
class BounceVerdict:
    kind: BounceKind
    detail: str  # the remote server's words, one line


NOT_A_BOUNCE = BounceVerdict(BounceKind.NONE, "")

# flufl.bounce logs every detector it runs, and a traceback for any input one of them
# chokes on (an empty From, say): remote junk, already answered by NOT_A_BOUNCE here.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def classify(raw: bytes, recipient: str) -> BounceVerdict:
    """Whether ``raw`` reports a failure to deliver to ``recipient``, and which kind."""
    try:
        message = message_from_bytes(raw, policy=email_policy.compat32)
        found = _from_dsn(message, recipient.lower())
        if found is None:
            found = _from_detectors(message, recipient.lower())
        return found
    except Exception:  # hostile or broken input: not something to count against a member
        return NOT_A_BOUNCE


def _parts(message: Message) -> list[Message]:
    parts: list[Message] = []
    for part in message.walk():
        parts.append(part)
        if len(parts) >= _MAX_PARTS:
            break
    return parts


def _from_dsn(message: Message, recipient: str) -> BounceVerdict | None:
    """The verdict of an RFC 3464 report, or None when there is no delivery-status part."""
    status_parts = [p for p in _parts(message)
                    if p.get_content_type() in ("message/delivery-status",
                                                "message/global-delivery-status")]
    if not status_parts:
        return None
    for part in status_parts:
        for fields in _dsn_blocks(part):
            named = fields.get("final-recipient", "") + " " + fields.get("original-recipient", "")
            if recipient not in named.lower():
                continue
            action = fields.get("action", "").strip().lower()
            status = fields.get("status", "").strip()
            diagnostic = _DIAGNOSTIC_TYPE.sub("", fields.get("diagnostic-code", ""))
            detail = _one_detail(diagnostic or status)
            if action == "failed":
                return BounceVerdict(BounceKind.PERMANENT, detail or status)
            if action == "delayed":
                return BounceVerdict(BounceKind.TEMPORARY, detail or status)
            return NOT_A_BOUNCE  # delivered, relayed, expanded: good news
    return NOT_A_BOUNCE  # a report, but about other recipients


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The per-recipient field blocks of a delivery-status part, keys lower-cased."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses the blocks as "messages"
        return [{k.lower(): " ".join(str(v).split()) for k, v in block.items()}
                for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = []
    for chunk in _DSN_BLOCK_SPLIT.split(text):
        fields: dict[str, str] = {}
        last = ""
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            match = _FIELD.match(line)
            if match:
                last = match.group(1).lower()
                fields[last] = match.group(2).strip()
        blocks.append(fields)
    return blocks


def _from_detectors(message: Message, recipient: str) -> BounceVerdict:
    temporary, permanent = all_failures(message)
    failed = {_address(a) for a in permanent}
    delayed = {_address(a) for a in temporary}
    if recipient in failed and _is_warning(message):
        # flufl.bounce's simple matcher takes Exim's opening line, shared by failures and
        # delay warnings, for a failure: a copy still being retried is no lost copy.
        return BounceVerdict(BounceKind.TEMPORARY, _detail_from_text(message, recipient))
    if recipient in failed:
        return BounceVerdict(BounceKind.PERMANENT, _detail_from_text(message, recipient))
    if recipient in delayed:
        return BounceVerdict(BounceKind.TEMPORARY, _detail_from_text(message, recipient))
    return NOT_A_BOUNCE


def _is_warning(message: Message) -> bool:
    subject = str(message.get("Subject", "")).strip().lower()
    if subject.startswith(_WARNING_SUBJECTS):
        return True
    return any(_WARNING_TEXT.search(line) for line in _text_lines(message)[:80])


def _address(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip().strip("<>").lower()


def _text_lines(message: Message) -> list[str]:
    lines: list[str] = []
    for part in _parts(message):
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            lines += payload.decode(part.get_content_charset() or "utf-8", "replace").splitlines()
    return lines


def _detail_from_text(message: Message, recipient: str) -> str:
    """The line holding the first SMTP reply in the bounce's text (the server's words,
    whole), else the line naming the recipient."""
    lines = _text_lines(message)
    for line in lines:
        if _SMTP_LINE.search(line):
            return _one_detail(line)
    return _one_detail(next((line for line in lines if recipient in line.lower()), ""))


def _one_detail(text: str) -> str:
    return one_line(text)[:_MAX_DETAIL]
