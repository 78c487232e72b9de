"""One value at a time: the parsers behind the config's keys, and the values they make.

Each parser takes the text as written and returns the value or raises ValueError with a
text fit for a problem list (the offending value in double quotes, see ``quoted``).

Addresses are stored as ``local@domain`` with the local part as written and the domain as
a lower-case IDNA A-label. They are *compared* (``Agency.allows``,
``MailingList.is_coordinator``) with the local part case-insensitive too: RFC 5321 allows
case-sensitive mailboxes, but no real provider gives ``Jan@`` and ``jan@`` to different
people, and an admin who wrote ``Wijkagent@`` expects ``wijkagent@`` to pass. Nothing
else is folded (no ``+tag`` or dot stripping): a sender must still authenticate (§5).

Sizes are binary: ``"1 KB"`` = 1024 bytes, ``"15 MB"`` = 15 × 1024² bytes, as mail
clients and most admins count them; a bare number is bytes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import idna
from email_validator import EmailNotValidError, validate_email

from bin_gateway.texts import LANGUAGES

E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str  # an IP address (IPv6 without brackets) or a lower-case host name
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def quoted(value: str) -> str:
    """A value as it appears in a problem text: in double quotes, escapes visible."""
    return json.dumps(value, ensure_ascii=False)


def _reason(exc: EmailNotValidError) -> str:
    text = str(exc).rstrip(".")
    return text[:1].lower() + text[1:]


def normalise_address(address: str) -> str:
    """``" Jan@Example.NL "`` -> ``"Jan@example.nl"``; ValueError with a readable text.

    The local part stays as written, the domain becomes a lower-case A-label. Display
    names, quoted local parts, IP literals and special-use domains are refused.
    """
    try:
        info = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        reason = _reason(exc)
        raise ValueError(f"{quoted(address)} is not a valid e-mail address ({reason})") from None
    return f"{info.local_part}@{info.ascii_domain}"


def address_key(address: str) -> str | None:
    """The form addresses are compared in (see the module docstring); None if unusable."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    try:
        ascii_domain = domain.lower() if domain.isascii() else idna.encode(domain, uts46=True)
    except idna.IDNAError:
        return None
    if isinstance(ascii_domain, bytes):  # idna returns bytes
        ascii_domain = ascii_domain.decode("ascii")
    return f"{local.lower()}@{ascii_domain}"


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``"15 MB"`` -> 15728640 (binary units: K/KB/KiB, M/MB/MiB, G/GB/GiB); ``"900"`` = bytes."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f'{quoted(text)} is not a size (use e.g. "15 MB")')
    unit = _SIZE_UNITS[(match.group(2) or "")[:1].lower()]
    return int(float(match.group(1)) * unit)


_DURATION = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|[wdhms]))+\s*", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|[wdhms])", re.IGNORECASE)
_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"24h"``, ``"30m"``, ``"90s"``, ``"500ms"``, ``"1d12h"`` -> timedelta."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f'{quoted(text)} is not a duration (use e.g. "7d", "24h" or "1d12h")')
    parts = _DURATION_PART.findall(text)
    return timedelta(seconds=sum(float(n) * _SECONDS[unit.lower()] for n, unit in parts))


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_name(text: str, *, fqdn: bool = True) -> str:
    """A host name as a lower-case A-label; ValueError unless every label is LDH."""
    try:
        name = text.lower() if text.isascii() else idna.encode(text, uts46=True).decode()
    except idna.IDNAError:
        name = ""
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{quoted(text)} is not a host name")
    if fqdn and len(labels) < 2:
        raise ValueError(f'{quoted(text)} is not a fully qualified name (e.g. "mail.example.nl")')
    return name


def parse_host_port(
    text: str, default_port: int, *, ip_only: bool = False, any_port: bool = False
) -> HostPort:
    """``"127.0.0.1:25"``, ``"[::1]:25"``, ``"::1"``, ``"mail.example.nl"`` (default port)."""
    bad = ValueError(f'{quoted(text)} is not host:port (e.g. "127.0.0.1:25" or "[::1]:25")')
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        host, closed, rest = text[1:].partition("]")
        if not closed or ":" not in host or (rest and not rest.startswith(":")):
            raise bad
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:  # name:port or IPv4:port
        host, _, port_text = text.partition(":")
    else:  # a name, IPv4, or a bare IPv6 address (which cannot carry a port)
        host = text
    if not host or (port_text is not None and not port_text.isdigit()):
        raise bad
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if ip_only or ":" in host:
            message = f"{quoted(text)} is not an IP address (with an optional port)"
            raise ValueError(message) from None
        host = host_name(host, fqdn=False)
    port = default_port if port_text is None else int(port_text)
    # Port 0 ("any free port") only where we listen: tests and the demo use it.
    if not (0 if any_port else 1) <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    return HostPort(host, port)


_LOCAL_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]|\.(?!\.))*(?<!\.)")


def local_id(text: str) -> str:
    """An id that is also a local part: lower-case letters, digits, '.', '-'; no '+'."""
    if len(text) > 64 or not _LOCAL_ID.fullmatch(text):
        raise ValueError(f"{quoted(text)} is not a valid id (lower-case a-z, 0-9, '.', '-')")
    return text


def mail_domain(text: str) -> str:
    """A domain that can receive mail, as a lower-case A-label."""
    try:
        return validate_email(f"postmaster@{text}", check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise ValueError(f"{quoted(text)} is not a usable mail domain ({_reason(exc)})") from None


def sender_entry(text: str) -> str:
    """``"@domain"`` (a whole domain) or an address, normalised."""
    if text.startswith("@"):
        return "@" + mail_domain(text[1:])
    return normalise_address(text)


def display_text(text: str) -> str:
    """A name that ends up in headers: no control characters (header injection)."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{quoted(text)} contains control characters")
    return text


def nonempty_name(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return display_text(text.strip())


def supported_language(text: str) -> str:
    if text not in LANGUAGES:
        raise ValueError(f"{quoted(text)} is not a supported language ({', '.join(LANGUAGES)})")
    return text


def public_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f'{quoted(text)} is not a base URL (e.g. "https://bin.example.nl")')
    return text.rstrip("/")


def positive(parse: Callable[[str], timedelta]) -> Callable[[str], timedelta]:
    def parse_positive(text: str) -> timedelta:
        value = parse(text)
        if value <= timedelta(0):
            raise ValueError(f"{quoted(text)} must be longer than zero")
        return value

    return parse_positive


def one_of(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse_one_of(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{quoted(text)} is not one of {', '.join(map(quoted, allowed))}")
        return text

    return parse_one_of


def choice(enum: type[E]) -> Callable[[str], E]:
    allowed = one_of(tuple(member.value for member in enum))

    def parse_choice(text: str) -> E:
        return enum(allowed(text))

    return parse_choice


def file_path(base: Path, *, must_exist: bool) -> Callable[[str], Path]:
    """A path relative to the config file's directory; optionally a readable file."""

    def parse_path(text: str) -> Path:
        if not text:
            raise ValueError("must not be empty")
        path = base / Path(text).expanduser()
        if must_exist:
            try:
                with path.open("rb") as handle:
                    handle.read(1)
            except OSError as exc:
                raise ValueError(f'"{path}" cannot be read ({exc.strerror})') from None
        return path

    return parse_path
