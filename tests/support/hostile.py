"""Helpers for the hostile-input tests: CPython's e-mail corpus, every route's address and
legitimate sender, and a client in another thread that measures the gateway's answers.

The gateway, the smarthost sink and the DNS server of a ``World`` share the test's event
loop; a client on that same loop could not see the loop stall. ``ProbeClient`` runs
plain ``smtplib`` in its own thread, so a blocked gateway shows as a slow answer there.
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from bin_gateway.render import BulletinSource, BulletinTemplate
from tests.support.dkim_keys import plain_message, sign
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    COORDINATOR_DOMAIN,
    DOMAIN,
    SELECTOR,
    World,
)


def corpus_dir() -> tuple[Path | None, str]:
    """CPython's test_email data directory, or None and the reason it is missing."""
    try:
        import test.test_email
    except ImportError as exc:
        return None, f"this Python has no test.test_email ({exc})"
    folder = Path(os.path.dirname(test.test_email.__file__)) / "data"
    if not any(folder.glob("msg_*.txt")):
        return None, f"no msg_*.txt in {folder}"
    return folder, ""


def corpus() -> list[tuple[str, bytes]]:
    folder, _ = corpus_dir()
    if folder is None:
        return []
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("msg_*.txt"))]


_FROM_OR_ID = re.compile(rb"(?:from|message-id)[ \t]*:", re.IGNORECASE)


def with_author(raw: bytes, author: str, message_id: str) -> bytes:
    """``raw`` with its From and Message-ID fields (and their folded lines) replaced."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, body = raw, b""
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = bool(_FROM_OR_ID.match(line))
        if not dropping:
            kept.append(line)
    new_head = [f"From: {author}".encode(), f"Message-ID: <{message_id}>".encode(), *kept]
    return (b"\n".join(new_head) + b"\n\n" + body).replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    address: str  # RCPT TO
    mail_from: str  # MAIL FROM of the legitimate sender ("" = null sender)
    author: str  # From of the legitimate sender
    signer: str  # "agency", "coordinator" or "" (members are not DKIM-checked)


MEMBER = "lid0@bewoners.example"
LEAVER = "lid2@bewoners.example"
JOINER = "nieuw@bewoners.example"


async def prepare_routes(world: World) -> list[Route]:
    """A world with members, a published bulletin and a held item; one Route per kind."""
    members = await world.add_members("buurt-noord", 3)
    assert MEMBER in members and LEAVER in members
    first = world.agency_mail(subject="Eerste bericht")
    assert (await world.send(first, f"buurt-noord@{DOMAIN}")).accepted
    await approve(world, await moderation_for(world, "Eerste bericht"))
    copies = await world.wait_for_mail_to(MEMBER)
    reply_address = parseaddr(str(copies[0]["Reply-To"]))[1]
    bounce = next(r.mail_from for r in world.sink.messages if "lid1@bewoners.example" in r.rcpt_tos)
    held = plain_message(subject="Tweede bericht").replace(b"melding-1", b"melding-2")
    held = sign(held, world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)
    assert (await world.send(held, f"agency@{DOMAIN}")).accepted
    moderation = await moderation_for(world, "Tweede bericht")
    agency_from = f"Wijkagent Noord <{AGENCY}>"
    return [
        Route("intake", f"agency@{DOMAIN}", AGENCY, agency_from, "agency"),
        Route("list", f"buurt-noord@{DOMAIN}", AGENCY, agency_from, "agency"),
        Route("moderation", moderation, COORDINATOR, COORDINATOR, "coordinator"),
        Route("reply", reply_address, MEMBER, f"Lid 0 <{MEMBER}>", ""),
        Route("join", f"buurt-noord+aanmelden@{DOMAIN}", JOINER, JOINER, ""),
        Route("leave", f"buurt-noord+afmelden@{DOMAIN}", LEAVER, LEAVER, ""),
        Route("bounce", bounce.strip("<>"), "", "MAILER-DAEMON@mx.bewoners.example", ""),
        Route("unknown", f"niemand@{DOMAIN}", AGENCY, agency_from, "agency"),
    ]


async def moderation_for(world: World, subject: str, timeout: float = 30) -> str:  # noqa: ASYNC109
    """The token address of the moderation request about ``subject``."""
    deadline = time.monotonic() + timeout
    while True:
        for message in world.messages_to(COORDINATOR):
            address = parseaddr(str(message.get("Reply-To", "")))[1]
            if subject in str(message["Subject"]) and address.startswith("moderatie+"):
                return address
        assert time.monotonic() < deadline, f"no moderation request about {subject}"
        await world.settle()
        await asyncio.sleep(0.05)


async def approve(world: World, moderation: str) -> None:
    ok = world.coordinator_mail("OK\r\n", to=moderation)
    assert (await world.send(ok, moderation, mail_from=COORDINATOR)).accepted


def as_sender(world: World, route: Route, raw: bytes, message_id: str) -> tuple[bytes, bool]:
    """The corpus message written by the route's legitimate sender, signed where the route
    authenticates; (bytes, signed). dkimpy refuses to sign some broken messages: those go
    unsigned (and are refused as unauthenticated, a 5xx like any other)."""
    message = with_author(raw, route.author, message_id)
    keys = {"agency": (world.agency_key, AGENCY_DOMAIN),
            "coordinator": (world.coordinator_key, COORDINATOR_DOMAIN)}
    if route.signer not in keys:
        return message, False
    key, domain = keys[route.signer]
    try:
        return sign(message, key, domain=domain, selector=SELECTOR), True
    except Exception:  # dkimpy's parser raises several kinds on broken headers
        return message, False


@dataclass
class ProbeClient:
    """An SMTP client in its own thread: NOOP on one session, and now and then a whole
    transaction to ``address``, timing every answer. Start it, run the attack, ``await stop()``.
    ``slowest_noop`` is the event loop's own latency; a transaction also waits its turn
    to commit in the store.
    """

    port: int
    address: str
    message: bytes
    mail_from: str
    interval: float = 0.05
    noops: int = 0
    transactions: int = 0
    slowest: float = 0.0
    slowest_noop: float = 0.0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProbeClient:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def restart_timing(self) -> None:
        """Forget the answers timed so far: measure from here on."""
        self.slowest = self.slowest_noop = 0.0

    async def stop(self) -> ProbeClient:
        """Ask the thread to finish and wait for it without blocking the event loop (the
        gateway it talks to runs there)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)
        return self

    def _timed(self, call: object) -> tuple[int, bytes]:
        started = time.monotonic()
        answer = call()  # type: ignore[operator]
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        self.slowest_noop = max(self.slowest_noop, took)
        return answer  # type: ignore[no-any-return]

    def _run(self) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                # A new session now and then: aiosmtpd allows 100 of one command per session.
                with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as client:
                    client.ehlo("probe.example")
                    for _ in range(50):
                        if self._stop.is_set():
                            break
                        code, _ = self._timed(client.noop)
                        if code != 250:
                            self.errors.append(f"NOOP {code}")
                        self.noops += 1
                        n += 1
                        if n % 10 == 0:
                            self._transaction(client, n)
                        self._stop.wait(self.interval)
                    self._transaction(client, n + 1)
        except Exception as exc:  # any failure of the probe is the finding
            self.errors.append(repr(exc))

    def _transaction(self, client: smtplib.SMTP, n: int) -> None:
        message = self.message.replace(b"{n}", str(n).encode())
        started = time.monotonic()
        refused = client.sendmail(self.mail_from, [self.address], message)
        self.slowest = max(self.slowest, time.monotonic() - started)
        if refused:
            self.errors.append(f"refused {refused}")
        self.transactions += 1


def send_raw(port: int, mail_from: str, rcpt: str, data: bytes) -> tuple[int, str]:
    """One transaction on a plain socket, for a big message sent from a worker thread:
    smtplib would run regex passes over all of it first, holding this process's
    interpreter lock (and so the gateway's event loop, in a test) for a quarter of a
    second. ``data`` must be wire-ready already: CRLF lines, none starting with a dot.
    Returns the answer to the data."""
    assert b"\r\n." not in data and not data.startswith(b".") and data.endswith(b"\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        replies = connection.makefile("rb")

        def answer() -> tuple[int, str]:
            while True:
                line = replies.readline()
                if line[3:4] != b"-":
                    return int(line[:3]), line[4:].decode("ascii", "replace").strip()

        assert answer()[0] == 220
        for command in (b"EHLO big.example", f"MAIL FROM:<{mail_from}>".encode(),
                        f"RCPT TO:<{rcpt}>".encode(), b"DATA"):
            connection.sendall(command + b"\r\n")
            code, text = answer()
            assert code in (250, 354), (command, code, text)
        connection.sendall(data + b".\r\n")
        result = answer()
        connection.sendall(b"QUIT\r\n")
        return result


def render_bulletin(raw: bytes) -> bytes:
    """``raw`` as one member's bulletin copy (what the outbox sends), unsigned."""
    source = BulletinSource(
        original=raw, sender_name="Politie", list_id="buurt-noord", list_name="BIN Noord",
        domain=DOMAIN, subject_prefix="[BIN Noord]", note="", language="nl",
        replies_go_to="de politie",
    )
    return BulletinTemplate.build(source).message_for(
        to=MEMBER, reply_to=f"reactie+x@{DOMAIN}", message_id=f"<x@{DOMAIN}>",
        date="Mon, 04 Mar 2024 10:00:00 +0100",
    )
