"""A smarthost on loopback that fails at random, and remembers every command it saw.

Each transaction draws one fault (or none) from a seeded random generator when MAIL
arrives::

    421 at MAIL            (aiosmtplib closes the connection on 421)
    451 at RCPT
    452 after the data     (not accepted)
    drop before accepting  (the data arrived; the connection is cut without an answer)
    drop after accepting   (recorded as accepted, then cut: the sender cannot know)
    stall                  (never answers the data: the sender's timeout ends it)
    stall after accepting  (recorded, then never answers)

Recipients in ``unknown`` get ``550 5.1.1`` at RCPT every time. ``refuse_for(seconds)``
closes the listening socket and every open connection, as a restarting smarthost does,
and listens again on the same port afterwards.

Every MAIL and RCPT is kept as an ``Event`` (monotonic time, connection number, whether
it was that connection's first transaction, the answer), every acceptance in
``accepted``, and every acceptance the sender never heard of in ``cut_after_accept``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["FAULTS", "Event", "FaultySmarthost"]

HOST = "127.0.0.1"

# fault -> probability per transaction (the rest: a clean delivery)
FAULTS: dict[str, float] = {
    "421-mail": 0.06,
    "451-rcpt": 0.06,
    "452-data": 0.06,
    "drop-before": 0.04,
    "drop-after": 0.04,
    "stall": 0.01,
    "stall-after": 0.01,
}


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # time.monotonic()
    connection: int
    first: bool  # the first transaction on its connection
    command: str  # "MAIL" or "RCPT"
    address: str  # MAIL: the envelope sender (bounce+<token>@...); RCPT: the recipient
    code: int


@dataclass(slots=True)
class _Connection:
    number: int
    transactions: int = 0
    fault: str = ""


@dataclass(slots=True)
class FaultySmarthost:
    rng: random.Random
    unknown: frozenset[str]
    faults: dict[str, float] = field(default_factory=lambda: dict(FAULTS))
    port: int = 0
    events: list[Event] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # envelope sender -> count
    cut_after_accept: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    connections_total: int = 0
    refused_seconds: float = 0.0
    _server: asyncio.Server | None = None
    _live: set[SMTP] = field(default_factory=set)

    async def start(self) -> FaultySmarthost:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._close_connections()
            await self._server.wait_closed()
            self._server = None

    async def refuse_for(self, seconds: float) -> None:
        """No listener (connection refused) and no open connection for ``seconds``."""
        self.injected["refused"] += 1
        await self.stop()
        await asyncio.sleep(seconds)
        self.refused_seconds += seconds
        await self.start()

    def _close_connections(self) -> None:
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()  # FIN after what was written: answers arrive

    def _protocol(self) -> SMTP:
        self.connections_total += 1
        return _FaultySMTP(self, _Connection(self.connections_total), _Handler(self),
                           hostname="smarthost.test", enable_SMTPUTF8=True)

    def draw(self) -> str:
        roll = self.rng.random()
        for fault, chance in self.faults.items():
            if roll < chance:
                return fault
            roll -= chance
        return ""


class _FaultySMTP(SMTP):
    def __init__(self, host: FaultySmarthost, connection: _Connection, handler: _Handler,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.host = host
        self.connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.host._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.host._live.discard(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, host: FaultySmarthost) -> None:
        self._host = host

    def _log(self, server: SMTP, command: str, address: str, code: int) -> None:
        assert isinstance(server, _FaultySMTP)
        connection = server.connection
        self._host.events.append(Event(time.monotonic(), connection.number,
                                       connection.transactions == 1, command, address, code))

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        assert isinstance(server, _FaultySMTP)
        server.connection.transactions += 1
        fault = server.connection.fault = self._host.draw()
        if fault:
            self._host.injected[fault] += 1
        if fault == "421-mail":
            self._log(server, "MAIL", address, 421)
            return "421 4.3.2 going down"
        self._log(server, "MAIL", address, 250)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        assert isinstance(server, _FaultySMTP)
        if address.lower() in self._host.unknown:
            self._log(server, "RCPT", address, 550)
            return "550 5.1.1 no such user"
        if server.connection.fault == "451-rcpt":
            self._log(server, "RCPT", address, 451)
            return "451 4.3.0 try again later"
        self._log(server, "RCPT", address, 250)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _FaultySMTP)
        fault, sender = server.connection.fault, str(envelope.mail_from)
        if fault == "452-data":
            return "452 4.3.1 insufficient storage"
        if fault in ("drop-after", "stall-after"):
            self._host.accepted[sender] += 1
            self._host.cut_after_accept[sender] += 1
        if fault in ("drop-before", "drop-after"):
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            await asyncio.Event().wait()  # connection_lost cancels this: never answer
        if fault in ("stall", "stall-after"):
            await asyncio.Event().wait()  # until the sender gives up and hangs up
        self._host.accepted[sender] += 1
        return "250 2.0.0 OK: queued"
