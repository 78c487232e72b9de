"""DNS lookups for sender authentication: the `Resolver` boundary and its dnspython form.

Everything DKIM and SPF need from DNS goes through one `Resolver`, so tests can point the
production code at a DNS server on loopback and the daemon can bound what a flood of
messages costs: answers are cached (TTL-bounded, size-bounded), a question already on
its way is not asked a second time, and at most `max_concurrency` queries are in flight.

Names are looked up verbatim. A name that is not plain `[A-Za-z0-9_-]` labels (a NUL, a
space, a quote, an empty label) is refused as "no record": a resolver that cut such a name
at the odd byte would fetch a different name's record (espoofer a3: a DKIM selector with a
NUL that makes a truncating resolver fetch the attacker's key).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from bin_gateway.errors import DnsTemporaryError

__all__ = ["CachingResolver", "Resolver", "make_resolver", "valid_lookup_name"]

# Negative answers (NXDOMAIN, NODATA) are remembered briefly: long enough to absorb a
# burst of identical lookups, short enough that a record published a minute ago is seen.
NEGATIVE_TTL = 60.0

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


class Resolver(Protocol):
    """The DNS questions sender authentication asks.

    Every method answers [] when the name does not exist or has no such record, and
    raises `DnsTemporaryError` on a timeout or SERVFAIL (the sender must retry).
    """

    async def txt(self, name: str) -> list[str]:
        """TXT records, each record's strings joined (bytes beyond UTF-8 kept as surrogates)."""
        ...

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses."""
        ...

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses."""
        ...

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; exchange without the trailing dot."""
        ...

    async def ptr(self, name: str) -> list[str]:
        """PTR targets without the trailing dot."""
        ...


def valid_lookup_name(name: str) -> str | None:
    """The lower-cased name without a trailing dot, or None if it must not be looked up."""
    bare = name[:-1] if name.endswith(".") else name
    if not bare or len(bare) > 253:
        return None
    if not all(_LABEL.fullmatch(label) for label in bare.split(".")):
        return None
    return bare.lower()


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    answer: dns.resolver.Answer | None  # None: the name or the record type does not exist


class CachingResolver:
    """A `Resolver` over a dnspython async resolver, with a cache and a concurrency limit."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        timeout: float,
        max_concurrency: int = 32,
        cache_size: int = 4096,
        max_ttl: float = 300.0,
    ) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_concurrency)
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._cache_size = cache_size
        self._max_ttl = max_ttl
        self._pending: dict[tuple[str, str], asyncio.Future[dns.resolver.Answer | None]] = {}

    async def txt(self, name: str) -> list[str]:
        answer = await self._lookup(name, "TXT")
        return [
            b"".join(rdata.strings).decode("utf-8", "surrogateescape") for rdata in answer or ()
        ]

    async def a(self, name: str) -> list[str]:
        return [rdata.address for rdata in await self._lookup(name, "A") or ()]

    async def aaaa(self, name: str) -> list[str]:
        return [rdata.address for rdata in await self._lookup(name, "AAAA") or ()]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        return [
            (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True))
            for rdata in await self._lookup(name, "MX") or ()
        ]

    async def ptr(self, name: str) -> list[str]:
        return [
            rdata.target.to_text(omit_final_dot=True)
            for rdata in await self._lookup(name, "PTR") or ()
        ]

    async def _lookup(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        clean = valid_lookup_name(name)
        if clean is None:
            return None
        key = (clean, rdtype)
        cached = self._cached(key)
        if cached is not None:
            return cached.answer
        pending = self._pending.get(key)
        if pending is not None:
            # The same question is already on its way (a burst of mail from one domain):
            # share its answer or its failure rather than ask again.
            return await asyncio.shield(pending)
        shared: asyncio.Future[dns.resolver.Answer | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[key] = shared
        try:
            answer = await self._fetch(key)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else DnsTemporaryError(
                f"DNS {rdtype} {clean}: lookup abandoned")
            shared.set_exception(failure)
            shared.exception()  # retrieved here: nobody may be waiting for it
            raise
        else:
            shared.set_result(answer)
            return answer
        finally:
            del self._pending[key]

    async def _fetch(self, key: tuple[str, str]) -> dns.resolver.Answer | None:
        clean, rdtype = key
        try:
            # The wait for a free slot counts too: under a flood, waiting longer than a
            # query may take means "try again later", not an unbounded queue.
            async with asyncio.timeout(2 * self._timeout), self._slots:
                cached = self._cached(key)  # filled while we waited for a slot?
                if cached is not None:
                    return cached.answer
                answer = await self._query(clean, rdtype)
        except TimeoutError as exc:
            raise DnsTemporaryError(f"DNS {rdtype} {clean}: timed out") from exc
        self._store(key, answer)
        return answer

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        try:
            return await self._resolver.resolve(
                name + ".", rdtype, search=False, lifetime=self._timeout
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return None
        except dns.exception.Timeout as exc:
            raise DnsTemporaryError(f"DNS {rdtype} {name}: timed out") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporaryError(f"DNS {rdtype} {name}: no server answered (SERVFAIL)") from exc
        except dns.exception.DNSException as exc:
            # Anything else (malformed reply, ...) is not proof that no record exists.
            raise DnsTemporaryError(f"DNS {rdtype} {name}: {type(exc).__name__}") from exc

    def _cached(self, key: tuple[str, str]) -> _Entry | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry

    def _store(self, key: tuple[str, str], answer: dns.resolver.Answer | None) -> None:
        ttl = NEGATIVE_TTL if answer is None or answer.rrset is None else float(answer.rrset.ttl)
        ttl = min(ttl, self._max_ttl)
        if ttl <= 0:
            return
        self._cache[key] = _Entry(time.monotonic() + ttl, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def make_resolver(
    nameservers: Sequence[tuple[str, int]],
    timeout: float = 5.0,
    *,
    max_concurrency: int = 32,
    cache_size: int = 4096,
    max_ttl: float = 300.0,
) -> Resolver:
    """A caching resolver asking `nameservers` ((host, port) pairs); empty = the system's."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
        ]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = min(timeout, 2.0)  # per attempt; `timeout` bounds the whole lookup
    resolver.lifetime = timeout
    return CachingResolver(
        resolver,
        timeout=timeout,
        max_concurrency=max_concurrency,
        cache_size=cache_size,
        max_ttl=max_ttl,
    )
