"""A small real DNS server for tests: a mutable zone served over UDP and TCP on loopback.

The production resolver (dnspython) queries it like any name server, so tests exercise
the real wire path: 255-byte TXT strings, truncation and TCP fallback, timeouts, SERVFAIL.

    with DnsServer() as server:
        server.zone.add_txt("s1._domainkey.politie.example", "v=DKIM1; k=rsa; p=...")
        resolver = make_resolver([("127.0.0.1", server.port)])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

TTL = 60


class _DropQuery(DNSError):  # type: ignore[misc]
    """Raised inside the handler to send no answer at all (dnslib then stays silent)."""


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _txt_strings(text: str | bytes) -> list[bytes]:
    """Split a TXT value into <= 255-byte character-strings, as real DKIM keys are published."""
    data = text.encode() if isinstance(text, str) else text
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


@dataclass
class Zone:
    """The records the server answers from; safe to change while the server runs."""

    records: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    timeouts: set[str] = field(default_factory=set)
    servfails: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0  # queries being answered right now (delayed ones wait here)
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _add(self, name: str, qtype: int, rdata: Any) -> None:
        with self.lock:
            self.records.setdefault(_key(name), []).append((qtype, rdata))

    def add_txt(self, name: str, text: str | bytes) -> None:
        """Publish one TXT record; values over 255 bytes become several strings."""
        self._add(name, QTYPE.TXT, TXT(_txt_strings(text)))

    def add_txt_strings(self, name: str, strings: list[bytes]) -> None:
        """Publish one TXT record made of exactly these character-strings."""
        self._add(name, QTYPE.TXT, TXT(strings))

    def add_a(self, name: str, address: str) -> None:
        self._add(name, QTYPE.A, A(address))

    def add_aaaa(self, name: str, address: str) -> None:
        self._add(name, QTYPE.AAAA, AAAA(address))

    def add_mx(self, name: str, exchange: str, preference: int = 10) -> None:
        self._add(name, QTYPE.MX, MX(exchange, preference))

    def add_ptr(self, name: str, target: str) -> None:
        self._add(name, QTYPE.PTR, PTR(target))

    def remove(self, name: str) -> None:
        """Forget every record and fault of a name (it answers NXDOMAIN again)."""
        with self.lock:
            self.records.pop(_key(name), None)
            self.timeouts.discard(_key(name))
            self.servfails.discard(_key(name))

    def timeout(self, name: str) -> None:
        """Never answer queries for this name."""
        with self.lock:
            self.timeouts.add(_key(name))

    def servfail(self, name: str) -> None:
        """Answer SERVFAIL for this name."""
        with self.lock:
            self.servfails.add(_key(name))

    def delay(self, name: str, seconds: float) -> None:
        """Answer queries for this name only after ``seconds`` (a slow name server)."""
        with self.lock:
            self.delays[_key(name)] = seconds

    def clear(self) -> None:
        """Forget every record, fault and logged query."""
        with self.lock:
            self.records.clear()
            self.timeouts.clear()
            self.servfails.clear()
            self.delays.clear()
            self.queries.clear()

    def queried(self, name: str) -> int:
        """How many queries (any type) reached the server for this name."""
        with self.lock:
            return sum(1 for qname, _ in self.queries if qname == _key(name))


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        # The raw label bytes are kept so a name with odd bytes never matches a clean one.
        qname = str(request.q.qname)
        key = _key(qname)
        qtype = request.q.qtype
        zone = self.zone
        with zone.lock:
            delay = zone.delays.get(key, 0.0)
            zone.in_flight += 1
            zone.most_in_flight = max(zone.most_in_flight, zone.in_flight)
        try:
            if delay:
                time.sleep(delay)  # each query has its own server thread
            return self._answer(request, qname, key, qtype)
        finally:
            with zone.lock:
                zone.in_flight -= 1

    def _answer(self, request: DNSRecord, qname: str, key: str, qtype: int) -> DNSRecord:
        zone = self.zone
        with zone.lock:
            zone.queries.append((key, QTYPE.get(qtype, str(qtype))))
            if key in zone.timeouts:
                raise _DropQuery("dropped on purpose")
            reply = request.reply()
            if key in zone.servfails:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            entries = zone.records.get(key)
            if entries is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rtype, rdata in entries:
                if rtype == qtype:
                    reply.add_answer(RR(qname, rtype, rdata=rdata, ttl=TTL))
        return reply


class _TruncatingHandler(DNSHandler):  # type: ignore[misc]
    """Honours the UDP size limit (512, or the EDNS payload) so big answers go over TCP.

    dnslib's own `truncate()` drops the question section, which resolvers reject as a
    mismatched reply; a truncated answer here keeps the question and sets TC.
    """

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > _udp_limit(request):
            truncated = request.reply()
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed


def _udp_limit(request: DNSRecord) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, int(rr.rclass))
    return 512


def _quiet_logger() -> DNSLogger:
    return DNSLogger(logf=lambda _text: None)


def _bind_pair(resolver: _ZoneResolver, address: str) -> tuple[DNSServer, DNSServer]:
    """UDP and TCP servers on one free port (the resolver uses the same port for both)."""
    for _attempt in range(20):
        udp = DNSServer(
            resolver, address=address, port=0, logger=_quiet_logger(), handler=_TruncatingHandler
        )
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(
                resolver,
                address=address,
                port=port,
                tcp=True,
                logger=_quiet_logger(),
                handler=_TruncatingHandler,
            )
        except OSError:
            udp.server.server_close()
            continue
        return udp, tcp
    raise OSError("could not bind UDP and TCP on one loopback port")


class DnsServer:
    """A zone served on 127.0.0.1 (UDP and TCP, same port); `start()`/`stop()` or `with`."""

    def __init__(self, zone: Zone | None = None, address: str = "127.0.0.1") -> None:
        self.zone = zone if zone is not None else Zone()
        self.address = address
        self._servers: tuple[DNSServer, DNSServer] | None = None

    @property
    def port(self) -> int:
        if self._servers is None:
            raise RuntimeError("DNS server not started")
        port: int = self._servers[0].server.server_address[1]
        return port

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The argument `make_resolver` wants."""
        return [(self.address, self.port)]

    def start(self) -> DnsServer:
        if self._servers is None:
            self._servers = _bind_pair(_ZoneResolver(self.zone), self.address)
            for server in self._servers:
                # A short poll interval: stop() waits for it, and tests stop a server each.
                thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.02}
                )
                thread.daemon = True
                thread.start()
        return self

    def stop(self) -> None:
        if self._servers is None:
            return
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        self._servers = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def running_dns_server() -> Iterator[DnsServer]:
    """A started server with an empty zone, stopped afterwards (for pytest fixtures)."""
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["TTL", "DnsServer", "Zone", "running_dns_server"]
