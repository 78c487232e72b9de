"""The strict reading of the header From: who a message claims to be from, or a refusal.

The allow-list and the coordinator check decide on this address, so every ambiguity is
refused rather than resolved (security.md §3, §3.1; "Composition Kills", espoofer a8–a19):
different programs resolve an ambiguous From differently, and the attacker picks the
program that shows the police address while we check another one.

Two readings are compared: the raw header lines (Python's parser silently drops a From
line that starts with a space or has a space before the colon, and stops at a folded
header name) and the parsed message with its defects. The From value itself is parsed
again here from the raw bytes (UTF-8, for SMTPUTF8 mail) with the `email.policy.default`
header parser, so the result does not depend on the policy the caller parsed with.
"""

from __future__ import annotations

import email.errors
import email.policy
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email.headerregistry import Address, AddressHeader, BaseHeader
from email.message import EmailMessage, Message

from bin_gateway.auth.alignment import normalise_domain

__all__ = ["ADDRESS_IN_NAME", "MIXED_SCRIPTS", "Author", "Refusal", "mixed_scripts", "parse_author"]


@dataclass(frozen=True, slots=True)
class Author:
    """The one mailbox of the From header."""

    address: str  # local@domain: local part as written, domain as `domain`
    display_name: str  # decoded (RFC 2047); may be ""
    domain: str  # lower-case IDNA A-label, no trailing dot
    # The display name or a comment holds an e-mail address other than `address`
    # ("wijkagent@politie.example" <x@evil.example>): allowed, but a moderation notice
    # must show the real address and warn.
    display_name_has_address: bool = False

    @property
    def flags(self) -> list[str]:
        """What a coordinator should be warned about in this sender's name (see
        ``holding.sender_warnings``): stored with the message at intake."""
        found = []
        if self.display_name_has_address:
            found.append(ADDRESS_IN_NAME)
        if mixed_scripts(self.display_name):
            found.append(MIXED_SCRIPTS)
        return found


ADDRESS_IN_NAME = "address_in_name"
MIXED_SCRIPTS = "mixed_scripts"


def mixed_scripts(text: str) -> bool:
    """Letters from more than one script ("Pоlitie" with a Cyrillic о): a name made to
    look like another. Digits, spaces and punctuation belong to no script here."""
    scripts = {unicodedata.name(c, "?").split(" ", 1)[0] for c in text if c.isalpha()}
    return len(scripts) > 1


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the From cannot be trusted to name one sender (for the log, not for the peer)."""

    reason: str


# Message-level defects about the body's MIME structure, not about the header block: a
# truncated multipart says nothing about who sent it. Every other defect is a refusal.
_BODY_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.NoBoundaryInMultipartDefect,
)

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# Anything a reader might take for a From field: "From:", " From:", "From :", and a
# header name folded away from its colon ("From" alone on a line).
_FROM_LIKE = re.compile(rb"[ \t]*from[ \t]*(?::|$)", re.IGNORECASE)
_FROM_FIELD = re.compile(rb"from:", re.IGNORECASE)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:@]+")
_COMMENT = re.compile(r"\(([^()]*)\)")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


def parse_author(raw: bytes, message: EmailMessage | Message) -> Author | Refusal:
    """The From mailbox of `raw` (parsed as `message`), or why there is no single one."""
    lines = _header_lines(raw)
    from_like = [i for i, line in enumerate(lines) if _FROM_LIKE.match(line)]
    if not from_like:
        return Refusal("no From header")
    if len(from_like) > 1:
        return Refusal(f"{len(from_like)} From header lines")
    parsed_count = sum(1 for name in message if name.lower() == "from")
    if parsed_count != 1:
        return Refusal(f"parser sees {parsed_count} From headers")
    defects = [d for d in message.defects if not isinstance(d, _BODY_DEFECTS)]
    if defects:
        return Refusal("message defects: " + _defect_names(defects))
    value = _field_value(lines, from_like[0])
    if isinstance(value, Refusal):
        return value
    return _parse_value(value)


def _header_lines(raw: bytes) -> list[bytes]:
    """The raw lines of the header block (up to the first empty line).

    Found line by line, so the body (most of a message with a photo) is never split."""
    lines: list[bytes] = []
    start = 0
    for end in _LINE_BREAK.finditer(raw):
        line = raw[start:end.start()]
        if not line:
            return lines
        lines.append(line)
        start = end.end()
    if raw[start:]:
        lines.append(raw[start:])  # a message that ends without a line break
    return lines


def _field_value(lines: list[bytes], index: int) -> str | Refusal:
    first = lines[index]
    match = _FROM_FIELD.match(first)
    if match is None:
        return Refusal("malformed From header line")
    parts = [first[match.end() :]]
    for line in lines[index + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        parts.append(line)
    data = b"\r\n".join(parts)
    if b"\x00" in data:
        return Refusal("NUL in From")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal("From is not valid UTF-8")


def _parse_value(value: str) -> Author | Refusal:
    unfolded = _UNFOLD.sub("", value).strip()
    try:
        header = email.policy.default.header_factory("from", unfolded)
    except Exception as exc:
        # the stdlib parser raises odd errors on odd input
        return Refusal(f"From unparseable ({type(exc).__name__})")
    if not isinstance(header, AddressHeader) or not isinstance(header, BaseHeader):
        return Refusal("From unparseable")
    # A UTF-8 local part is legal under SMTPUTF8 (RFC 6532); Python flags it all the same.
    defects = [d for d in header.defects if not isinstance(d, email.errors.NonASCIILocalPartDefect)]
    if defects:
        return Refusal("From defects: " + _defect_names(defects))
    if any(group.display_name is not None for group in header.groups):
        return Refusal("From holds a group")
    if len(header.addresses) != 1:
        return Refusal(f"From holds {len(header.addresses)} mailboxes")
    return _author(header.addresses[0], unfolded)


def _author(mailbox: Address, value: str) -> Author | Refusal:
    local, domain_text = mailbox.username, mailbox.domain
    if "\x00" in local + domain_text + mailbox.display_name:
        return Refusal("NUL in From")
    if not local:
        return Refusal("empty local part")
    if "@" in local:
        return Refusal("quoted local part containing @")
    if "=?" in local:
        return Refusal("encoded-word in the address")
    if not _DOT_ATOM.fullmatch(local):
        return Refusal("quoted local part")
    if not domain_text:
        return Refusal("empty domain")
    if domain_text.startswith("["):
        return Refusal("domain literal")
    domain = normalise_domain(domain_text)
    if not domain or "." not in domain or domain.rsplit(".", 1)[1].isdigit():
        return Refusal("invalid domain")
    address = f"{local}@{domain}"
    return Author(
        address=address,
        display_name=mailbox.display_name,
        domain=domain,
        display_name_has_address=_names_other_address(mailbox.display_name, value, address),
    )


def _names_other_address(display_name: str, value: str, address: str) -> bool:
    """Whether the display name or a comment shows an address other than the real one."""
    visible = " ".join([display_name, *_COMMENT.findall(value)])
    for found in _ADDRESS_LIKE.findall(visible):
        local, _, domain = found.rpartition("@")
        if f"{local}@{normalise_domain(domain)}".lower() != address.lower():
            return True
    return False


def _defect_names(defects: Iterable[email.errors.MessageDefect]) -> str:
    return ", ".join(sorted({type(d).__name__ for d in defects}))
