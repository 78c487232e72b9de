"""SPF (RFC 7208) of the MAIL FROM domain, evaluated by pyspf through our `Resolver`.

pyspf is synchronous and resolves through the module-global `spf.DNSLookup`. Rather than
monkeypatching that global (shared by every check in the process), `_Query` subclasses
`spf.query` and overrides its one DNS entry point, `dns()`, to ask the configured
`Resolver` on the event loop from pyspf's worker thread. The whole check has one
deadline; pyspf's own limits (10 DNS mechanisms, 2 void lookups) stay in force.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import spf

from bin_gateway.auth.dns import Resolver
from bin_gateway.errors import DnsTemporaryError

__all__ = ["SpfOutcome", "SpfResult", "check_spf"]


class SpfOutcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an SPF result, not a password
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"  # retry later (451), never a fail


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: SpfOutcome
    domain: str  # the domain whose policy was evaluated (MAIL FROM's, or HELO's for <>)
    explanation: str = ""


class _Query(spf.query):  # type: ignore[misc]
    """`spf.query` whose lookups go through a `Resolver` running on `loop`."""

    def __init__(
        self,
        *args: Any,
        resolver: Resolver,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._resolver = resolver
        self._loop = loop
        self._deadline = deadline

    def dns(
        self, name: str, qtype: str, cnames: object = None, ignore_void: bool = False
    ) -> list[Any]:
        """pyspf's contract: a list of values; TXT values are sequences of byte strings."""
        if not name:
            return []
        key = (str(name).rstrip(".").lower(), qtype)
        if key in self.cache:
            result: list[Any] = self.cache[key]
            return result
        result = self._ask(key[0], qtype)
        self.cache[key] = result
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def _ask(self, name: str, qtype: str) -> list[Any]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise spf.TempError("DNS: SPF evaluation ran out of time")
        future = asyncio.run_coroutine_threadsafe(_lookup(self._resolver, name, qtype), self._loop)
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise spf.TempError(f"DNS {qtype} {name}: timed out") from exc
        except DnsTemporaryError as exc:
            raise spf.TempError(str(exc)) from exc


async def _lookup(resolver: Resolver, name: str, qtype: str) -> list[Any]:
    if qtype == "TXT":
        return [(text.encode("utf-8", "surrogateescape"),) for text in await resolver.txt(name)]
    if qtype == "A":
        return list(await resolver.a(name))
    if qtype == "AAAA":
        return list(await resolver.aaaa(name))
    if qtype == "MX":
        return list(await resolver.mx(name))
    if qtype == "PTR":
        return list(await resolver.ptr(name))
    return []  # type 99 (SPF) is obsolete; pyspf asks for it only in "harsh" mode


def _mail_from(mail_from: str) -> str:
    """The reverse-path without brackets; "" for the null sender (aiosmtpd gives "<>")."""
    bare = mail_from.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1]
    return bare


async def check_spf(
    client_ip: str,
    mail_from: str,
    helo: str,
    resolver: Resolver,
    timeout: float = 20.0,  # noqa: ASYNC109 - a deadline inside the worker thread, which a caller scope cannot enforce
) -> SpfResult:
    """The SPF result for this connection; a null MAIL FROM is checked as postmaster@<helo>."""
    sender = _mail_from(mail_from)
    if not sender and not helo:
        return SpfResult(SpfOutcome.NONE, "", "no sender identity")
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout

    def run() -> SpfResult:
        try:
            query = _Query(
                i=client_ip, s=sender, h=helo, resolver=resolver, loop=loop, deadline=deadline
            )
            result, _code, explanation = query.check()
            return SpfResult(SpfOutcome(result), query.o.lower(), str(explanation))
        except Exception as exc:
            # bad input must give a result, not a crash
            return SpfResult(SpfOutcome.PERMERROR, "", f"{type(exc).__name__}: {exc}")

    # The worker stops by itself at the deadline (every lookup checks it); the extra
    # second only covers pyspf's own CPU time after its last lookup.
    try:
        async with asyncio.timeout(timeout + 1.0):
            return await asyncio.to_thread(run)
    except TimeoutError:
        return SpfResult(SpfOutcome.TEMPERROR, "", "SPF evaluation timed out")
