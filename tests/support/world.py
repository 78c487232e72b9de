"""The whole gateway on loopback, with its neighbours: a DNS server, a smarthost sink.

``World`` is the end-to-end fixture: the real gateway (``Gateway.start``) on
127.0.0.1:0 with a config file written like an admin would, the production resolver
asking a dnslib server that publishes the test domains' DKIM, SPF and DMARC records,
and a recording aiosmtpd smarthost. Tests speak SMTP to the gateway and look at what
the smarthost received, what the store holds and which log events fired.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
import dkim
import dns.resolver

from bin_gateway.app import Gateway
from bin_gateway.config import Config, load_config
from bin_gateway.keys import dkim_txt_record, generate_key, write_private_key
from bin_gateway.store import Store
from tests.support.dkim_keys import DkimKey, ed25519_key, plain_message, publish, rsa_key, sign
from tests.support.dns_server import DnsServer, Zone
from tests.support.sink import Received, Sink

DOMAIN = "bin.example.nl"
AGENCY = "wijkagent.noord@politie.example"
AGENCY_DOMAIN = "politie.example"
COORDINATOR = "coordinator.noord@example.nl"
COORDINATOR_2 = "reserve.noord@example.nl"
COORDINATOR_DOMAIN = "example.nl"
STRANGER = "iemand@elders.example"
SELECTOR = "s1"
GATEWAY_SELECTOR = "bin1"

CONFIG = """
[gateway]
domain = "{domain}"
hostname = "mail.{domain}"
listen = ["127.0.0.1:0"]
data_dir = "data"
admin = "beheer@beheer.example"
language = "{language}"
max_message_size = "{max_size}"
keep_messages = "{keep_messages}"

[dkim]
selector = "{gateway_selector}"
private_key = "dkim.pem"

[inbound]
require = "{require}"
nameservers = ["127.0.0.1:{dns_port}"]
dns_timeout = "{dns_timeout}"

[moderation]
expire_after = "{expire_after}"
remind_after = "{remind_after}"

[delivery]
mode = "smtp"
smarthost = "127.0.0.1:{sink_port}"
starttls = "off"
connections = 4
retry_after = "{retry_after}"
give_up_after = "{give_up_after}"
timeout = "{delivery_timeout}"

{http}

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@{agency_domain}"]
lists = ["buurt-noord", "buurt-zuid"]

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["{coordinator}", "{coordinator_2}"]
{noord_extra}

[[lists]]
id = "buurt-zuid"
name = "BIN Zuid"
coordinators = ["coordinator.zuid@example.nl"]
"""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str


@dataclass(slots=True)
class Transaction:
    """What the gateway answered to one SMTP transaction."""

    rcpt: list[Reply]
    data: Reply | None  # None when every RCPT was refused

    @property
    def accepted(self) -> bool:
        return self.data is not None and self.data.code == 250


@dataclass(slots=True)
class World:
    tmp: Path
    dns: DnsServer
    sink: Sink
    gateway: Gateway
    config: Config
    agency_key: DkimKey
    coordinator_key: DkimKey
    options: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.gateway.ports[0]

    @property
    def store(self) -> Store:
        return self.gateway.services.store

    async def send(
        self, data: bytes, rcpt: list[str] | str, mail_from: str = AGENCY
    ) -> Transaction:
        """One SMTP transaction to the gateway; collects every reply, raises on none."""
        recipients = [rcpt] if isinstance(rcpt, str) else rcpt
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.port, timeout=30, local_hostname="client.example"
        )
        await client.connect()
        try:
            await client.ehlo()
            await client.mail(mail_from)
            replies = []
            for address in recipients:
                try:
                    answer = await client.rcpt(address)
                    replies.append(Reply(answer.code, answer.message))
                except aiosmtplib.SMTPRecipientRefused as exc:
                    replies.append(Reply(exc.code, exc.message))
            if not any(r.code == 250 for r in replies):
                return Transaction(replies, None)
            try:
                answer = await client.data(data)
                return Transaction(replies, Reply(answer.code, answer.message))
            except aiosmtplib.SMTPDataError as exc:
                return Transaction(replies, Reply(exc.code, exc.message))
        finally:
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()

    def agency_mail(self, *, subject: str = "Inbraken in Noord", body: str | None = None,
                    author: str = f"Wijkagent Noord <{AGENCY}>", extra_headers: str = "") -> bytes:
        message = plain_message(author, subject=subject, extra_headers=extra_headers,
                                **({"body": body} if body is not None else {}))
        return sign(message, self.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)

    def coordinator_mail(self, body: str, *, to: str, subject: str = "Re: besluit",
                         author: str = COORDINATOR, extra_headers: str = "") -> bytes:
        message = (
            f"From: {author}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0100\r\n"
            f"Message-ID: <{time.monotonic_ns()}@example.nl>\r\n{extra_headers}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        ).encode()
        return sign(message, self.coordinator_key, domain=COORDINATOR_DOMAIN, selector=SELECTOR)

    async def delivered(self, count: int, timeout: float = 15.0) -> list[Received]:  # noqa: ASYNC109
        return await self.sink.wait_for(count, timeout)

    def messages_to(self, recipient: str) -> list[EmailMessage]:
        return [parse(r.data) for r in self.sink.messages if recipient in r.rcpt_tos]

    async def wait_for_mail_to(self, recipient: str, count: int = 1,
                               timeout: float = 15.0) -> list[EmailMessage]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages_to(recipient)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"{recipient} got {len(self.messages_to(recipient))} of {count}")

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until every stored message is processed and every queued delivery handed over."""
        async with asyncio.timeout(timeout):
            while True:
                rows = await self.store.read(
                    "SELECT (SELECT count(*) FROM inbound WHERE state = 'received'),"
                    " (SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending'))"
                )
                if not rows[0][0] and not rows[0][1]:
                    return
                await asyncio.sleep(0.02)

    async def moderation_address(self, coordinator: str = COORDINATOR, index: int = -1) -> str:
        """The token address of the (last) moderation mail this coordinator got."""
        message = (await self.wait_for_mail_to(coordinator))[index]
        reply_to = str(message["Reply-To"])
        match = re.search(r"moderatie\+[a-z2-7]+@" + re.escape(DOMAIN), reply_to)
        assert match, reply_to
        return match.group(0)

    async def add_members(self, list_id: str, count: int, start: int = 0) -> list[str]:
        people = [(f"lid{n}@bewoners.example", f"Lid {n}") for n in range(start, start + count)]
        await self.store.add_members(list_id, people)
        return [email for email, _ in people]

    async def stop(self) -> None:
        """Stop everything, neighbours too even if the gateway's stop fails: a DNS
        thread left running would keep the test process from exiting."""
        try:
            await self.gateway.stop()
        finally:
            await self.sink.stop()
            self.dns.stop()


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def write_config(tmp: Path, *, dns_port: int, sink_port: int, key_pem: bytes,
                 **overrides: str) -> Path:
    values = {
        "domain": DOMAIN, "language": "nl", "max_size": "1 MB", "require": "aligned",
        "dns_port": str(dns_port), "dns_timeout": "2s", "expire_after": "7d",
        "remind_after": "24h", "sink_port": str(sink_port), "retry_after": "200ms",
        "give_up_after": "4d", "agency_domain": AGENCY_DOMAIN, "coordinator": COORDINATOR,
        "coordinator_2": COORDINATOR_2, "gateway_selector": GATEWAY_SELECTOR,
        "keep_messages": "90d", "delivery_timeout": "60s",
        "http": "",  # e.g. '[http]\nlisten = "127.0.0.1:0"\npublic_url = "https://..."'
        "noord_extra": "",  # more keys of list buurt-noord, e.g. "review_replies = true"
    } | overrides
    key_path = tmp / "dkim.pem"
    if not key_path.exists():
        write_private_key(key_path, key_pem)
    path = tmp / "config.toml"
    path.write_text(CONFIG.format(**values), "utf-8")
    return path


_GATEWAY_KEYS: dict[str, bytes] = {}


def gateway_key(kind: str = "ed25519") -> bytes:
    if kind not in _GATEWAY_KEYS:
        _GATEWAY_KEYS[kind] = generate_key(kind, 2048)
    return _GATEWAY_KEYS[kind]


# The ``make_world`` fixture (conftest.py): start a world with config overrides.
MakeWorld = Callable[..., Awaitable["World"]]


def publish_test_domains(zone: Zone) -> tuple[DkimKey, DkimKey]:
    """The agency's and the coordinators' DKIM keys, SPF and DMARC, as the world's DNS
    publishes them; returns (agency key, coordinator key)."""
    agency_key, coordinator_key = rsa_key(1024), ed25519_key()
    publish(zone, AGENCY_DOMAIN, SELECTOR, agency_key)
    publish(zone, COORDINATOR_DOMAIN, SELECTOR, coordinator_key)
    for domain in (AGENCY_DOMAIN, COORDINATOR_DOMAIN, DOMAIN):
        zone.add_txt(domain, "v=spf1 -all")
        zone.add_txt(f"_dmarc.{domain}", "v=DMARC1; p=reject")
    return agency_key, coordinator_key


async def start_world(tmp: Path, *, key_kind: str = "ed25519", **overrides: str) -> World:
    dns = DnsServer().start()
    sink = await Sink.start()
    agency_key, coordinator_key = publish_test_domains(dns.zone)
    pem = gateway_key(key_kind)
    dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
    sink_port = int(overrides.pop("sink_port", sink.port))  # or another smarthost's
    path = write_config(tmp, dns_port=dns.port, sink_port=sink_port, key_pem=pem, **overrides)
    config = load_config(path)
    gateway = await Gateway.start(config)
    return World(tmp, dns, sink, gateway, config, agency_key, coordinator_key, overrides)


async def restart(world: World) -> World:
    """Stop the gateway (not its neighbours) and start it again on the same store."""
    await world.gateway.stop()
    world.gateway = await Gateway.start(world.config)
    return world


def verify_with_zone(world: World, data: bytes) -> bool:
    """dkimpy's own verifier, fetching the key from the test DNS server."""
    return verify_with_dns(world.dns, data)


def verify_with_dns(server: DnsServer, data: bytes) -> bool:
    """dkimpy's own verifier, fetching the key from ``server``."""
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = server.port
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return bool(dkim.verify(data, dnsfunc=dnsfunc))
