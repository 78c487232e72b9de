"""The DNS boundary: the dnspython resolver against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bin_gateway.auth.dns import Resolver, make_resolver, valid_lookup_name
from bin_gateway.errors import DnsTemporaryError
from tests.support.dns_server import DnsServer


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return make_resolver(server.nameservers, timeout=0.5)


async def test_txt_joins_the_255_byte_strings_of_one_record(
    server: DnsServer, resolver: Resolver
) -> None:
    """A TXT value published as several character-strings comes back as one string."""
    value = "v=DKIM1; k=rsa; p=" + "A" * 400
    server.zone.add_txt("s1._domainkey.politie.example", value)
    assert await resolver.txt("s1._domainkey.politie.example") == [value]


async def test_large_answer_is_fetched_over_tcp(server: DnsServer, resolver: Resolver) -> None:
    """An answer too big for a UDP datagram is truncated and re-asked over TCP, intact."""
    value = "v=DKIM1; k=rsa; p=" + "B" * 1500
    server.zone.add_txt("big._domainkey.politie.example", value)
    assert await resolver.txt("big._domainkey.politie.example") == [value]
    assert server.zone.queried("big._domainkey.politie.example") == 2  # UDP, then TCP


async def test_missing_name_and_missing_type_are_empty(
    server: DnsServer, resolver: Resolver
) -> None:
    """NXDOMAIN and NODATA both answer [] rather than raising."""
    server.zone.add_a("mail.politie.example", "192.0.2.10")
    assert await resolver.txt("nothing.politie.example") == []
    assert await resolver.txt("mail.politie.example") == []


async def test_timeout_raises_temporary_error(server: DnsServer, resolver: Resolver) -> None:
    """A name server that never answers gives DnsTemporaryError, not an empty answer."""
    server.zone.timeout("slow.politie.example")
    with pytest.raises(DnsTemporaryError):
        await resolver.txt("slow.politie.example")


async def test_servfail_raises_temporary_error(server: DnsServer, resolver: Resolver) -> None:
    """SERVFAIL gives DnsTemporaryError, not an empty answer."""
    server.zone.servfail("broken.politie.example")
    with pytest.raises(DnsTemporaryError):
        await resolver.txt("broken.politie.example")


async def test_name_with_nul_is_refused_without_a_query(
    server: DnsServer, resolver: Resolver
) -> None:
    """A name with a NUL is never cut short into another name's lookup: no query at all."""
    server.zone.add_txt("x._domainkey.evil.example", "v=DKIM1; p=EVIL")
    name = "x._domainkey.evil.example\x00.s1._domainkey.politie.example"
    assert await resolver.txt(name) == []
    assert await resolver.txt("x._domainkey.evil.example\x00") == []
    assert server.zone.queries == []


@pytest.mark.parametrize(
    "name", ["a b.example", "a..example", "", ".", "a'b.example", "x" * 64 + ".example"]
)
def test_odd_names_are_not_looked_up(name: str) -> None:
    """Spaces, quotes, empty or over-long labels make a name unfit for lookup."""
    assert valid_lookup_name(name) is None


def test_plain_names_are_normalised() -> None:
    """A usable name is lower-cased and loses its trailing dot."""
    assert valid_lookup_name("S1._DomainKey.Politie-Noord.Example.") == (
        "s1._domainkey.politie-noord.example"
    )


async def test_answers_are_cached(server: DnsServer, resolver: Resolver) -> None:
    """A repeated lookup is answered from the cache, including a negative answer."""
    server.zone.add_txt("politie.example", "v=spf1 -all")
    for _ in range(3):
        assert await resolver.txt("politie.example") == ["v=spf1 -all"]
        assert await resolver.txt("none.politie.example") == []
    assert server.zone.queried("politie.example") == 1
    assert server.zone.queried("none.politie.example") == 1


async def test_a_flood_of_identical_lookups_asks_once(server: DnsServer) -> None:
    """Fifty concurrent lookups of one name with one slot make a single query."""
    resolver = make_resolver(server.nameservers, timeout=0.5, max_concurrency=1)
    server.zone.add_txt("politie.example", "v=spf1 -all")
    answers = await asyncio.gather(*(resolver.txt("politie.example") for _ in range(50)))
    assert answers == [["v=spf1 -all"]] * 50
    assert server.zone.queried("politie.example") == 1


async def test_cache_can_be_switched_off(server: DnsServer) -> None:
    """max_ttl=0 caches nothing, so a changed zone is seen at once."""
    resolver = make_resolver(server.nameservers, timeout=0.5, max_ttl=0)
    assert await resolver.txt("politie.example") == []
    server.zone.add_txt("politie.example", "v=spf1 -all")
    assert await resolver.txt("politie.example") == ["v=spf1 -all"]


async def test_address_mx_and_ptr_lookups(server: DnsServer, resolver: Resolver) -> None:
    """A, AAAA, MX and PTR answers come back in plain Python form."""
    server.zone.add_a("mx.politie.example", "192.0.2.10")
    server.zone.add_aaaa("mx.politie.example", "2001:db8::10")
    server.zone.add_mx("politie.example", "mx.politie.example", 5)
    server.zone.add_ptr("10.2.0.192.in-addr.arpa", "mx.politie.example")
    assert await resolver.a("mx.politie.example") == ["192.0.2.10"]
    assert await resolver.aaaa("mx.politie.example") == ["2001:db8::10"]
    assert await resolver.mx("politie.example") == [(5, "mx.politie.example")]
    assert await resolver.ptr("10.2.0.192.in-addr.arpa") == ["mx.politie.example"]
