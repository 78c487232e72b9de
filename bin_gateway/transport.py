"""The outbound boundary: how the delivery worker hands one message copy to the world.

A ``Transport`` sends one message to one recipient and says what happened; it never
retries and never raises for an expected outcome (a refused recipient, a dead
smarthost). The delivery worker owns the retry policy and records the ``SendResult``.

Implementations: ``smarthost.SmarthostPool`` (production) and
``maildir.MaildirTransport`` (development: every copy becomes a file).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = [
    "SendResult",
    "SendStatus",
    "Transport",
    "check_envelope",
    "result_for_reply",
    "validate_envelope_address",
]

# RFC 5321 §4.5.3.1.3: a reverse- or forward-path is at most 256 octets including
# the angle brackets.
_MAX_ADDRESS_OCTETS = 254

# Characters that end or restructure an address on an SMTP command line, or that
# RFC 5321 does not allow in an unquoted local part. '<' and '>' are refused even
# inside a quoted local part: aiosmtplib and many servers re-parse the path.
_UNQUOTED_LOCAL_FORBIDDEN = frozenset('"(),:;<>[]\\@')
_DOMAIN_FORBIDDEN = frozenset('"(),:;<>[]\\@')
# Unicode categories that are never part of an address we want to send: controls
# (C0, DEL, C1 incl. NEL), format characters (zero-width and bidi tricks),
# surrogates, private use, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


class SendStatus(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"  # try again later: 4xx, no answer, connection trouble
    PERMANENT = "permanent"  # give up: 5xx, or an address we refuse to send to


@dataclass(frozen=True, slots=True)
class SendResult:
    status: SendStatus
    code: int  # SMTP code, or 0 when no SMTP answer (connection error, timeout)
    text: str  # the server's text or the error, for the log and the queue listing
    # No connection could be made at all (refused, no route): the smarthost is down, not
    # this copy's problem; the outbox pauses rather than try every copy in turn.
    unreachable: bool = False


class Transport(Protocol):
    """Sends one message copy to one recipient; safe to call concurrently."""

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult: ...

    async def close(self) -> None: ...


def result_for_reply(code: int, text: str) -> SendResult:
    """Classify an SMTP reply: 2xx sent, 5xx permanent, anything else temporary."""
    if 200 <= code < 300:
        return SendResult(SendStatus.SENT, code, text)
    if 500 <= code < 600:
        return SendResult(SendStatus.PERMANENT, code, text)
    # 4xx, and replies no sane server sends here (1xx, 3xx): a later try may work.
    return SendResult(SendStatus.TEMPORARY, code, text)


def validate_envelope_address(address: str, *, allow_null: bool = False) -> str:
    """Return ``address`` unchanged if it is safe on an SMTP command line.

    aiosmtplib truncates instead of refusing (``'a@b\\r\\nRCPT TO:<x@evil>'`` goes out
    as ``<a@b>``), so every address is checked here first. ``allow_null`` admits the
    null reverse-path ``""`` (bounces); it is never a valid recipient.

    Raises ``ValueError`` with a reason that does not echo the address.
    """
    if address == "":
        if allow_null:
            return address
        raise ValueError("empty address")
    _refuse_invisible_characters(address)
    if "<" in address or ">" in address:
        raise ValueError("contains an angle bracket")
    if len(address.encode("utf-8")) > _MAX_ADDRESS_OCTETS:
        raise ValueError(f"longer than {_MAX_ADDRESS_OCTETS} octets")
    local, domain = _split_address(address)
    if local.startswith('"'):
        _check_quoted_local(local)
    else:
        _check_unquoted_local(local)
    _check_domain(domain)
    return address


def check_envelope(envelope_from: str, recipient: str) -> SendResult | None:
    """The PERMANENT result for an envelope we refuse to send, or None if both are fine."""
    for role, address, allow_null in (
        ("envelope sender", envelope_from, True),
        ("envelope recipient", recipient, False),
    ):
        try:
            validate_envelope_address(address, allow_null=allow_null)
        except ValueError as exc:
            return SendResult(SendStatus.PERMANENT, 0, f"refused {role} address: {exc}")
    return None


def _refuse_invisible_characters(address: str) -> None:
    for char in address:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(f"contains control or format character U+{ord(char):04X}")


def _split_address(address: str) -> tuple[str, str]:
    if address.startswith('"'):
        end = _end_of_quoted_string(address)
        local, rest = address[: end + 1], address[end + 1 :]
        if not rest.startswith("@"):
            raise ValueError("quoted local part is not followed by '@'")
        return local, rest[1:]
    if address.count("@") != 1:
        raise ValueError("must contain exactly one '@'")
    local, _, domain = address.partition("@")
    if not local:
        raise ValueError("empty local part")
    return local, domain


def _end_of_quoted_string(address: str) -> int:
    """Index of the closing quote of the quoted string that starts ``address``."""
    index = 1
    while index < len(address):
        char = address[index]
        if char == "\\":
            index += 2  # quoted-pair: the next character is literal
            continue
        if char == '"':
            return index
        index += 1
    raise ValueError("unterminated quoted local part")


def _check_quoted_local(local: str) -> None:
    if len(local) <= 2:
        raise ValueError("empty quoted local part")
    # Spaces are allowed inside the quotes; control characters were refused already.


def _check_unquoted_local(local: str) -> None:
    for char in local:
        if char.isspace():
            raise ValueError("contains whitespace outside a quoted local part")
        if char in _UNQUOTED_LOCAL_FORBIDDEN:
            raise ValueError(f"local part contains {char!r}")


def _check_domain(domain: str) -> None:
    if not domain:
        raise ValueError("empty domain")
    if domain.startswith("["):
        _check_address_literal(domain)
        return
    for char in domain:
        if char.isspace():
            raise ValueError("domain contains whitespace")
        if char in _DOMAIN_FORBIDDEN:
            raise ValueError(f"domain contains {char!r}")
    if any(not label for label in domain.split(".")):
        raise ValueError("domain has an empty label")


def _check_address_literal(domain: str) -> None:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3), nothing fancier."""
    if not domain.endswith("]"):
        raise ValueError("unterminated address literal")
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    allowed = set("0123456789abcdefABCDEF:.")
    if not inner or any(char not in allowed for char in inner):
        raise ValueError("malformed address literal")
