"""check_spf: pyspf's evaluation, resolving through our Resolver and the test DNS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bin_gateway.auth.dns import Resolver, make_resolver
from bin_gateway.auth.spf_check import SpfOutcome, SpfResult, check_spf
from tests.support.dns_server import DnsServer

POLICE_IP = "192.0.2.10"
ATTACKER_IP = "203.0.113.66"


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        running.zone.add_txt("politie.example", f"v=spf1 ip4:{POLICE_IP} -all")
        running.zone.add_txt("gemeente.example", "v=spf1 ip4:198.51.100.0/24 ~all")
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return make_resolver(server.nameservers, timeout=0.5)


async def test_authorised_ip_passes(resolver: Resolver) -> None:
    """The police IP sending as @politie.example passes, for that domain."""
    result = await check_spf(POLICE_IP, "wijkagent@politie.example", "mx.politie.example", resolver)
    assert (result.result, result.domain) == (SpfOutcome.PASS, "politie.example")


async def test_other_ip_fails(resolver: Resolver) -> None:
    """The attacker's IP sending as @politie.example fails (-all)."""
    result = await check_spf(ATTACKER_IP, "wijkagent@politie.example", "evil.example", resolver)
    assert result.result is SpfOutcome.FAIL


async def test_softfail_is_reported_as_such(resolver: Resolver) -> None:
    """~all gives softfail, which is not a pass."""
    result = await check_spf(ATTACKER_IP, "info@gemeente.example", "evil.example", resolver)
    assert result.result is SpfOutcome.SOFTFAIL


async def test_domain_without_policy_is_none(resolver: Resolver) -> None:
    """A MAIL FROM domain without SPF record gives none."""
    result = await check_spf(ATTACKER_IP, "x@nothing.example", "evil.example", resolver)
    assert result == SpfResult(SpfOutcome.NONE, "nothing.example", result.explanation)


async def test_null_sender_is_checked_as_postmaster_at_helo(
    server: DnsServer, resolver: Resolver
) -> None:
    """MAIL FROM:<> checks postmaster@<helo> (RFC 7208 §2.4)."""
    server.zone.add_txt("mx.politie.example", f"v=spf1 ip4:{POLICE_IP} -all")
    result = await check_spf(POLICE_IP, "<>", "mx.politie.example", resolver)
    assert (result.result, result.domain) == (SpfOutcome.PASS, "mx.politie.example")


async def test_include_a_and_mx_mechanisms_resolve_through_the_resolver(
    server: DnsServer, resolver: Resolver
) -> None:
    """include:, a: and mx mechanisms are looked up in the test zone (TXT, A, MX)."""
    server.zone.add_txt("noord.example", "v=spf1 include:_spf.noord.example mx -all")
    server.zone.add_txt("_spf.noord.example", "v=spf1 a:relay.noord.example -all")
    server.zone.add_a("relay.noord.example", "192.0.2.20")
    server.zone.add_mx("noord.example", "mx.noord.example")
    server.zone.add_a("mx.noord.example", "192.0.2.30")
    for ip in ("192.0.2.20", "192.0.2.30"):
        result = await check_spf(ip, "a@noord.example", "h.noord.example", resolver)
        assert result.result is SpfOutcome.PASS, ip
    result = await check_spf("192.0.2.40", "a@noord.example", "h.noord.example", resolver)
    assert result.result is SpfOutcome.FAIL


async def test_timeout_is_temperror(server: DnsServer, resolver: Resolver) -> None:
    """A policy lookup that times out is temperror (retry), never fail or none."""
    server.zone.timeout("slow.example")
    result = await check_spf(POLICE_IP, "a@slow.example", "h.example", resolver)
    assert result.result is SpfOutcome.TEMPERROR


async def test_servfail_is_temperror(server: DnsServer, resolver: Resolver) -> None:
    """A policy lookup answered SERVFAIL is temperror."""
    server.zone.servfail("broken.example")
    result = await check_spf(POLICE_IP, "a@broken.example", "h.example", resolver)
    assert result.result is SpfOutcome.TEMPERROR


async def test_overall_deadline_gives_temperror(server: DnsServer) -> None:
    """The whole evaluation has one deadline, however many lookups the policy asks for."""
    resolver = make_resolver(server.nameservers, timeout=5.0)
    server.zone.timeout("slow.example")
    result = await check_spf(POLICE_IP, "a@slow.example", "h.example", resolver, timeout=0.3)
    assert result.result is SpfOutcome.TEMPERROR


async def test_void_lookup_limit_is_kept(server: DnsServer, resolver: Resolver) -> None:
    """More than two lookups that find nothing is a permerror (RFC 7208 §4.6.4)."""
    server.zone.add_txt(
        "void.example", "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all"
    )
    result = await check_spf(POLICE_IP, "a@void.example", "h.example", resolver)
    assert result.result is SpfOutcome.PERMERROR


async def test_bad_client_ip_is_a_result_not_a_crash(resolver: Resolver) -> None:
    """A malformed client address gives permerror instead of raising."""
    result = await check_spf("not-an-ip", "a@politie.example", "h.example", resolver)
    assert result.result is SpfOutcome.PERMERROR
