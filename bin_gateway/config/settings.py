"""The configuration as the program sees it: frozen dataclasses and the enums they use.

The values are checked on the way in (``reader``); these classes only hold them and
answer the questions the rest of the gateway asks of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from bin_gateway.config.values import HostPort, address_key
from bin_gateway.keys import read_private_key
from bin_gateway.tokens import TOKEN_PREFIXES

# Local parts the router gives a fixed meaning; a list id equal to one would be unreachable.
RESERVED_LOCAL_PARTS = frozenset({"postmaster", "abuse", *TOKEN_PREFIXES})
REPLY_TARGETS = ("origin", "coordinators")


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


class Pseudonyms(StrEnum):
    PER_BULLETIN = "per_bulletin"  # a fresh pseudonym in every bulletin's thread
    PER_LIST = "per_list"  # one pseudonym per member across the list's bulletins


class Subscription(StrEnum):
    OPEN = "open"
    APPROVAL = "approval"
    CLOSED = "closed"


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
    keep_messages: timedelta  # retention: stored mail older than this loses its bytes


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
    timeout: float = 60.0  # seconds for one copy: connecting and the whole transaction


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
    review_replies: bool  # hold each member reply for a coordinator's OK before relaying
    acknowledge_replies: bool  # tell the member the reply was passed on, and what was removed
    reply_thread_lifetime: timedelta  # how long after the bulletin its reply addresses work
    pseudonyms: Pseudonyms
    replies_per_hour: int  # per member; further replies are held for the coordinators

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
