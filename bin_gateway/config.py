"""The configuration file: TOML in, frozen dataclasses out, every problem reported at once.

``load_config`` is synchronous (it reads files): call it at start, or through
``asyncio.to_thread`` on SIGHUP. Each section has a small reader function; a ``_Table``
wraps one TOML table, hands out typed values, records a problem with its dotted key path
instead of raising, and afterwards reports every key nobody asked for (a typo must never
pass silently). If anything was recorded, the half-filled values are dropped and one
``ConfigError`` carries all problems.

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
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import idna
from cryptography.hazmat.primitives.asymmetric import rsa
from email_validator import EmailNotValidError, validate_email

from bin_gateway.errors import ConfigError
from bin_gateway.keys import read_private_key
from bin_gateway.texts import LANGUAGES

__all__ = [
    "RESERVED_LOCAL_PARTS",
    "Agency",
    "AuthRequirement",
    "Config",
    "DeliveryMode",
    "DeliverySettings",
    "DkimSettings",
    "GatewaySettings",
    "HostPort",
    "HttpSettings",
    "InboundSettings",
    "MailingList",
    "ModerationSettings",
    "StartTls",
    "Subscription",
    "TlsSettings",
    "address_key",
    "load_config",
    "normalise_address",
    "parse_config",
    "parse_duration",
    "parse_host_port",
    "parse_size",
]

# Local parts the router gives a fixed meaning; a list id equal to one would be unreachable.
RESERVED_LOCAL_PARTS = frozenset({"postmaster", "abuse", "moderatie", "bounce", "reactie"})
REPLY_TARGETS = ("origin", "coordinators")
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


class AuthRequirement(StrEnum):
    ALIGNED = "aligned"
    DKIM = "dkim"
    NONE = "none"


class DeliveryMode(StrEnum):
    SMTP = "smtp"
    MAILDIR = "maildir"


class StartTls(StrEnum):
    OFF = "off"
    OPPORTUNISTIC = "opportunistic"  # encrypt if offered; no certificate check (RFC 7435)
    REQUIRED = "required"  # refuse to send in clear; certificate verified


class Subscription(StrEnum):
    OPEN = "open"
    APPROVAL = "approval"
    CLOSED = "closed"


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


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    domain: str
    hostname: str
    listen: tuple[HostPort, ...]
    data_dir: Path
    intake: str
    admin: str
    language: str
    max_message_size: int


@dataclass(frozen=True, slots=True)
class TlsSettings:
    certificate: Path
    private_key: Path


@dataclass(frozen=True, slots=True)
class DkimSettings:
    selector: str
    private_key: Path


@dataclass(frozen=True, slots=True)
class InboundSettings:
    require: AuthRequirement
    nameservers: tuple[HostPort, ...]
    trusted_authserv_ids: tuple[str, ...]
    dns_timeout: float  # seconds


@dataclass(frozen=True, slots=True)
class ModerationSettings:
    expire_after: timedelta
    remind_after: timedelta


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    mode: DeliveryMode
    smarthost: HostPort
    starttls: StartTls
    username: str
    password_file: Path | None
    connections: int
    give_up_after: timedelta
    retry_after: timedelta  # the first retry; each next one waits twice as long (max 2h)
    maildir: Path


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: HostPort
    public_url: str  # without a trailing slash


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str
    senders: tuple[str, ...]  # normalised addresses, or "@domain" (A-label) for a whole domain
    lists: tuple[str, ...]  # list ids that intake mail from this agency goes to

    def allows(self, address: str) -> bool:
        """True if ``address`` is one of the senders, or in a listed domain (not subdomains)."""
        return self._match(address) > 0

    def _match(self, address: str) -> int:
        """2 for an exact address entry, 1 for a domain entry, 0 for none."""
        key = address_key(address)
        if key is None:
            return 0
        if any(address_key(sender) == key for sender in self.senders):
            return 2
        return 1 if "@" + key.rpartition("@")[2] in self.senders else 0


@dataclass(frozen=True, slots=True)
class MailingList:
    id: str
    name: str
    coordinators: tuple[str, ...]
    replies_to: tuple[str, ...]  # a subset of REPLY_TARGETS
    subscription: Subscription
    subject_prefix: str
    language: str
    redact_contact_details: bool

    def is_coordinator(self, address: str) -> bool:
        key = address_key(address)
        return key is not None and any(address_key(c) == key for c in self.coordinators)


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    gateway: GatewaySettings
    tls: TlsSettings | None
    dkim: DkimSettings
    inbound: InboundSettings
    moderation: ModerationSettings
    delivery: DeliverySettings
    http: HttpSettings | None
    agencies: tuple[Agency, ...]
    lists: tuple[MailingList, ...]

    def list_by_id(self, list_id: str) -> MailingList | None:
        return next((lst for lst in self.lists if lst.id == list_id), None)

    def agency_for(self, address: str) -> Agency | None:
        """The agency naming this exact address, else the first one allowing its domain."""
        best = max(self.agencies, key=lambda agency: agency._match(address), default=None)
        return best if best is not None and best._match(address) else None

    def warnings(self) -> list[str]:
        """Settings that work but are risky; logged at every start (reads the DKIM key)."""
        found: list[str] = []
        if self.inbound.require is AuthRequirement.NONE:
            found.append('inbound.require = "none": anyone can pose as an agency or coordinator')
        open_listen = [str(hp) for hp in self.gateway.listen if not hp.is_loopback]
        if self.tls is None and open_listen:
            found.append(f"no [tls] while listening on {', '.join(open_listen)}: no STARTTLS")
        bits = _rsa_key_bits(self.dkim.private_key)
        if bits is not None and bits < 2048:
            found.append(f"dkim.private_key is a {bits}-bit RSA key: receivers want >= 2048")
        found += [
            f'lists "{lst.id}": redact_contact_details = false: replies may reveal members'
            for lst in self.lists
            if not lst.redact_contact_details
        ]
        delivery = self.delivery
        if (
            delivery.mode is DeliveryMode.SMTP
            and delivery.starttls is StartTls.OFF
            and not delivery.smarthost.is_loopback
        ):
            found.append(f'delivery.starttls = "off" to {delivery.smarthost}: mail in plain text')
        if self.http is not None and self.http.public_url.startswith("http:"):
            found.append("http.public_url is not https: unsubscribe links travel in plain text")
        return found


def _rsa_key_bits(path: Path) -> int | None:
    """The size of an RSA key; None for Ed25519 or a key that has become unreadable."""
    try:
        key = read_private_key(path)
    except ValueError:
        return None  # the signer reports it at start; this is only a size check
    return key.key_size if isinstance(key, rsa.RSAPrivateKey) else None


# --------------------------------------------------------------------------- values


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


def _host_name(text: str, *, fqdn: bool = True) -> str:
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
        host = _host_name(host, fqdn=False)
    port = default_port if port_text is None else int(port_text)
    # Port 0 ("any free port") only where we listen: tests and the demo use it.
    if not (0 if any_port else 1) <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    return HostPort(host, port)


_LOCAL_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]|\.(?!\.))*(?<!\.)")


def _local_id(text: str) -> str:
    """An id that is also a local part: lower-case letters, digits, '.', '-'; no '+'."""
    if len(text) > 64 or not _LOCAL_ID.fullmatch(text):
        raise ValueError(f"{quoted(text)} is not a valid id (lower-case a-z, 0-9, '.', '-')")
    return text


def _mail_domain(text: str) -> str:
    """A domain that can receive mail, as a lower-case A-label."""
    try:
        return validate_email(f"postmaster@{text}", check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise ValueError(f"{quoted(text)} is not a usable mail domain ({_reason(exc)})") from None


def _sender_entry(text: str) -> str:
    """``"@domain"`` (a whole domain) or an address, normalised."""
    if text.startswith("@"):
        return "@" + _mail_domain(text[1:])
    return normalise_address(text)


def _display_text(text: str) -> str:
    """A name that ends up in headers: no control characters (header injection)."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{quoted(text)} contains control characters")
    return text


def _nonempty_name(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return _display_text(text.strip())


def _language(text: str) -> str:
    if text not in LANGUAGES:
        raise ValueError(f"{quoted(text)} is not a supported language ({', '.join(LANGUAGES)})")
    return text


def _public_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f'{quoted(text)} is not a base URL (e.g. "https://bin.example.nl")')
    return text.rstrip("/")


def _positive(parse: Callable[[str], timedelta]) -> Callable[[str], timedelta]:
    def parse_positive(text: str) -> timedelta:
        value = parse(text)
        if value <= timedelta(0):
            raise ValueError(f"{quoted(text)} must be longer than zero")
        return value

    return parse_positive


def _choice(enum: type[E]) -> Callable[[str], E]:
    values = tuple(member.value for member in enum)

    def parse_choice(text: str) -> E:
        if text not in values:
            raise ValueError(f"{quoted(text)} is not one of {', '.join(map(quoted, values))}")
        return enum(text)

    return parse_choice


def _reply_target(text: str) -> str:
    if text not in REPLY_TARGETS:
        raise ValueError(f"{quoted(text)} is not one of {', '.join(map(quoted, REPLY_TARGETS))}")
    return text


def _file_path(base: Path, *, must_exist: bool) -> Callable[[str], Path]:
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


# --------------------------------------------------------------------------- reading

_MISSING, _INVALID = object(), object()
_KIND = {str: "a string", bool: "true or false", int: "an integer", list: "a list", dict: "a table"}


def _kind(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "an integer"),
                       (float, "a number"), (list, "a list"), (dict, "a table")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "a date or time"


@dataclass
class _Table:
    """One TOML table being read; problems go to the shared list, typed values come back."""

    raw: Mapping[str, object]
    path: str
    problems: list[str]
    base: Path
    children: list[_Table] = field(default_factory=list)
    read: set[str] = field(default_factory=set)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def take(self, key: str, kind: type, required: bool) -> object:
        self.read.add(key)
        if key not in self.raw:
            if required:
                self.problem(key, "missing (required)")
            return _MISSING
        value = self.raw[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.problem(key, f"expected {_KIND[kind]}, got {_kind(value)}")
            return _INVALID
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.take(key, str, required=default is None)
        return value if isinstance(value, str) else (default or "")

    def parsed(self, key: str, parse: Callable[[str], T], default: str | None, fallback: T) -> T:
        value = self.take(key, str, required=default is None)
        value = default if value is _MISSING else value
        if not isinstance(value, str):
            return fallback
        try:
            return parse(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return fallback

    def parsed_list(
        self,
        key: str,
        parse: Callable[[str], T],
        default: tuple[str, ...] | None = None,
        nonempty: bool = False,
    ) -> tuple[T, ...]:
        value = self.take(key, list, required=default is None)
        items = list(default or ()) if value is _MISSING else value
        if nonempty and items == []:
            self.problem(key, "must not be empty")
        result: list[T] = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            try:
                if not isinstance(item, str):
                    raise ValueError(f"expected a string, got {_kind(item)}")
                result.append(parse(item))
            except ValueError as exc:
                self.problems.append(f"{self.at(key)}[{index}]: {exc}")
        return tuple(result)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.take(key, bool, required=False)
        return value if isinstance(value, bool) else default

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.take(key, int, required=False)
        if not isinstance(value, int):
            return default
        if not low <= value <= high:
            self.problem(key, f"{value} is outside {low}..{high}")
        return value

    def size(self, key: str, default: str) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            self.read.add(key)  # a bare TOML integer is a number of bytes
        else:
            value = self.parsed(key, parse_size, default, 1)
        if value <= 0:
            self.problem(key, "must be larger than zero")
        return value

    def table(self, key: str, required: bool = False) -> _Table | None:
        value = self.take(key, dict, required=False)
        if value is _MISSING and required:
            value = {}  # each required key of the section reports itself
        return self._child(value, self.at(key)) if isinstance(value, dict) else None

    def tables(self, key: str) -> list[_Table]:
        value = self.take(key, list, required=False)
        result: list[_Table] = []
        for index, item in enumerate(value if isinstance(value, list) else []):
            if isinstance(item, dict):
                result.append(self._child(item, f"{self.at(key)}[{index}]"))
            else:
                self.problems.append(f"{self.at(key)}[{index}]: expected a table")
        return result

    def _child(self, raw: Mapping[str, object], path: str) -> _Table:
        child = _Table(raw, path, self.problems, self.base)
        self.children.append(child)
        return child

    def report_unknown_keys(self) -> None:
        self.problems.extend(
            f"{self.at(key)}: unknown key" for key in self.raw if key not in self.read
        )
        for child in self.children:
            child.report_unknown_keys()


def _read_gateway(t: _Table) -> GatewaySettings:
    domain = t.parsed("domain", _mail_domain, None, "")
    data_dir = _file_path(t.base, must_exist=False)
    return GatewaySettings(
        domain=domain,
        hostname=t.parsed("hostname", _host_name, None, ""),
        listen=t.parsed_list(
            "listen", lambda s: parse_host_port(s, 25, any_port=True), ("0.0.0.0:25",),
            nonempty=True,
        ),
        data_dir=t.parsed("data_dir", data_dir, "/var/lib/bin-gateway", Path()),
        intake=t.parsed("intake", _intake, "agency", ""),
        admin=t.parsed("admin", _outside(domain, normalise_address), None, ""),
        language=t.parsed("language", _language, "nl", "nl"),
        max_message_size=t.size("max_message_size", "15 MB"),
    )


def _intake(text: str) -> str:
    if _local_id(text) in RESERVED_LOCAL_PARTS:
        raise ValueError(f"{quoted(text)} is a reserved address")
    return text


def _read_tls(t: _Table) -> TlsSettings:
    readable = _file_path(t.base, must_exist=True)
    return TlsSettings(
        certificate=t.parsed("certificate", readable, None, Path()),
        private_key=t.parsed("private_key", readable, None, Path()),
    )


def _read_dkim(t: _Table) -> DkimSettings:
    def usable_key(text: str) -> Path:
        path = _file_path(t.base, must_exist=False)(text)
        read_private_key(path)  # the signer's own loader: check-config refuses what it would
        return path

    return DkimSettings(
        selector=t.parsed("selector", lambda s: _host_name(s, fqdn=False), None, ""),
        private_key=t.parsed("private_key", usable_key, None, Path()),
    )


def _read_inbound(t: _Table) -> InboundSettings:
    nameserver = lambda s: parse_host_port(s, 53, ip_only=True)  # noqa: E731
    return InboundSettings(
        require=t.parsed("require", _choice(AuthRequirement), "aligned", AuthRequirement.ALIGNED),
        nameservers=t.parsed_list("nameservers", nameserver, ()),
        trusted_authserv_ids=t.parsed_list("trusted_authserv_ids", _authserv_id, ()),
        dns_timeout=t.parsed(
            "dns_timeout", _positive(parse_duration), "5s", timedelta(seconds=5)
        ).total_seconds(),
    )


def _authserv_id(text: str) -> str:
    """An authserv-id (RFC 8601): usually the MTA's host name; kept lower-case, as
    domain names compare case-insensitively."""
    if not text or any(char.isspace() or ord(char) < 32 for char in text):
        raise ValueError(f"{quoted(text)} is not an authserv-id")
    return text.lower()


def _read_moderation(t: _Table) -> ModerationSettings:
    duration = _positive(parse_duration)
    expire = t.parsed("expire_after", duration, "7d", timedelta(days=7))
    remind = t.parsed("remind_after", duration, "24h", timedelta(hours=24))
    if remind >= expire:
        t.problem("remind_after", "must be shorter than expire_after")
    return ModerationSettings(expire_after=expire, remind_after=remind)


def _read_delivery(t: _Table, gateway: GatewaySettings) -> DeliverySettings:
    password = _file_path(t.base, must_exist=True)
    settings = DeliverySettings(
        mode=t.parsed("mode", _choice(DeliveryMode), "smtp", DeliveryMode.SMTP),
        smarthost=t.parsed(
            "smarthost", lambda s: parse_host_port(s, 25), "127.0.0.1:25", HostPort("", 0)
        ),
        starttls=t.parsed("starttls", _choice(StartTls), "opportunistic", StartTls.OPPORTUNISTIC),
        username=t.parsed("username", _display_text, "", ""),
        password_file=t.parsed("password_file", lambda s: password(s) if s else None, "", None),
        connections=t.integer("connections", 8, 1, 100),
        give_up_after=t.parsed("give_up_after", _positive(parse_duration), "4d", timedelta(days=4)),
        retry_after=t.parsed("retry_after", _positive(parse_duration), "5m", timedelta(minutes=5)),
        maildir=t.parsed(
            "maildir",
            _file_path(t.base, must_exist=False),
            str(gateway.data_dir / "outbox"),
            Path(),
        ),
    )
    if settings.username and not t.raw.get("password_file"):
        t.problem("password_file", "required when a username is set")
    if settings.password_file is not None and not settings.username:
        t.problem("username", "required when a password_file is set")
    return settings


def _read_http(t: _Table) -> HttpSettings:
    return HttpSettings(
        listen=t.parsed(
            "listen", lambda s: parse_host_port(s, 8025, any_port=True), "127.0.0.1:8025",
            HostPort("", 0),
        ),
        public_url=t.parsed("public_url", _public_url, None, ""),
    )


def _read_list(t: _Table, gateway: GatewaySettings) -> MailingList:
    list_id = t.parsed("id", _local_id, None, "")
    name = t.parsed("name", _nonempty_name, None, "")
    return MailingList(
        id=list_id,
        name=name,
        coordinators=t.parsed_list(
            "coordinators", _outside(gateway.domain, normalise_address), nonempty=True
        ),
        replies_to=t.parsed_list("replies_to", _reply_target, REPLY_TARGETS, nonempty=True),
        subscription=t.parsed("subscription", _choice(Subscription), "open", Subscription.OPEN),
        subject_prefix=t.parsed("subject_prefix", _display_text, f"[{name}]", ""),
        language=t.parsed("language", _language, gateway.language, gateway.language),
        redact_contact_details=t.boolean("redact_contact_details", True),
    )


def _outside(domain: str, parse: Callable[[str], str]) -> Callable[[str], str]:
    """Wrap an address parser: mail to the gateway's own domain comes back to it (a loop)."""

    def parse_outside(text: str) -> str:
        address = parse(text)
        if domain and address.rpartition("@")[2] == domain:
            raise ValueError(f"{quoted(address)} is in the gateway's own domain (a mail loop)")
        return address

    return parse_outside


def _read_lists(root: _Table, gateway: GatewaySettings) -> tuple[MailingList, ...]:
    tables = root.tables("lists")
    if not tables and root.raw.get("lists", []) == []:
        root.problem("lists", "at least one [[lists]] entry is required")
    reserved = RESERVED_LOCAL_PARTS | {gateway.intake}
    seen: set[str] = set()
    lists = []
    for t in tables:
        lst = _read_list(t, gateway)
        if lst.id in reserved:
            t.problem("id", f"{quoted(lst.id)} is taken by the intake or a reserved address")
        elif lst.id in seen:
            t.problem("id", f"duplicate list id {quoted(lst.id)}")
        seen.add(lst.id)
        lists.append(lst)
    return tuple(lists)


def _read_agencies(root: _Table, list_ids: set[str], domain: str) -> tuple[Agency, ...]:
    def known_list(text: str) -> str:
        if text not in list_ids:
            raise ValueError(f"no list with id {quoted(text)}")
        return text

    agencies: list[Agency] = []
    owners: dict[str, str] = {}  # sender entry -> agency id: one sender, one agency
    for t in root.tables("agencies"):
        agency_id = t.parsed("id", _local_id, None, "")
        if any(agency_id == other.id for other in agencies):
            t.problem("id", f"duplicate agency id {quoted(agency_id)}")

        def unclaimed(text: str, agency_id: str = agency_id) -> str:
            sender = _outside(domain, _sender_entry)(text)
            owner = owners.setdefault(address_key(sender) or sender, agency_id)
            if owner != agency_id:
                raise ValueError(f"{quoted(sender)} is already a sender of {quoted(owner)}")
            return sender

        agencies.append(
            Agency(
                id=agency_id,
                name=t.parsed("name", _nonempty_name, None, ""),
                senders=t.parsed_list("senders", unclaimed, nonempty=True),
                lists=t.parsed_list("lists", known_list, ()),
            )
        )
    return tuple(agencies)


def _read_config(root: _Table, source: str) -> Config:
    """Read the sections in the order of config.example.toml, so problems come in that order."""
    gateway = _read_gateway(_required(root.table("gateway", required=True)))
    tls = root.table("tls")
    tls_settings = _read_tls(tls) if tls else None
    dkim = _read_dkim(_required(root.table("dkim", required=True)))
    inbound = _read_inbound(_optional(root, "inbound"))
    moderation = _read_moderation(_optional(root, "moderation"))
    delivery = _read_delivery(_optional(root, "delivery"), gateway)
    http = root.table("http")
    http_settings = _read_http(http) if http else None
    lists = _read_lists(root, gateway)
    agencies = _read_agencies(root, {lst.id for lst in lists}, gateway.domain)
    return Config(
        Path(source), gateway, tls_settings, dkim, inbound, moderation, delivery,
        http_settings, agencies, lists,
    )  # fmt: skip


def _required(table: _Table | None) -> _Table:
    # table(required=True) returns None only for a wrong type, already reported
    return table if table is not None else _Table({}, "", [], Path())


def _optional(root: _Table, key: str) -> _Table:
    """An optional section with defaults: absent reads as empty."""
    table = root.table(key)
    return table if table is not None else _Table({}, key, [], root.base)


def parse_config(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> Config:
    """Parse TOML text; relative paths resolve against ``base_dir`` (default: the cwd).

    Raises ConfigError listing every problem found.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    problems: list[str] = []
    root = _Table(raw, "", problems, (base_dir or Path.cwd()).absolute())
    config = _read_config(root, source)
    root.report_unknown_keys()
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path) -> Config:
    """Read and validate the file at ``path`` (paths inside resolve against its directory)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors on Windows add a BOM
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, str(path), base_dir=path.parent)
