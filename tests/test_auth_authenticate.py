"""authenticate(): SPEC §5 decisions end to end against the test DNS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bin_gateway.auth.authenticate import AuthResult, Requirement, authenticate
from bin_gateway.auth.dns import Resolver, make_resolver
from bin_gateway.errors import DnsTemporaryError
from tests.support.dkim_keys import plain_message, publish, rsa_key, sign
from tests.support.dns_server import DnsServer

POLICE = "politie.example"
POLICE_IP = "192.0.2.10"
ATTACKER_IP = "203.0.113.66"


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        zone = running.zone
        publish(zone, POLICE, "s1", rsa_key(1024))
        zone.add_txt(POLICE, f"v=spf1 ip4:{POLICE_IP} -all")
        zone.add_txt("evil.example", f"v=spf1 ip4:{ATTACKER_IP} -all")
        zone.add_txt("gemeente.example", "v=spf1 ip4:198.51.100.0/24 ~all")
        publish(zone, "evil.example", "e1", rsa_key(2048))
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return make_resolver(server.nameservers, timeout=0.5)


async def judge(
    raw: bytes,
    resolver: Resolver,
    *,
    author_domain: str = POLICE,
    mail_from: str = "bounces@evil.example",
    client_ip: str = ATTACKER_IP,
    helo: str = "mx.evil.example",
    requirement: Requirement = Requirement.ALIGNED,
    trusted: tuple[str, ...] = (),
) -> AuthResult:
    return await authenticate(
        raw,
        author_domain=author_domain,
        mail_from=mail_from,
        client_ip=client_ip,
        helo=helo,
        requirement=requirement,
        resolver=resolver,
        trusted_authserv_ids=trusted,
    )


def police_signed(**options: object) -> bytes:
    return sign(plain_message(), rsa_key(1024), domain=POLICE, **options)  # type: ignore[arg-type]


async def test_genuine_aligned_dkim_passes(resolver: Resolver) -> None:
    """Aligned valid DKIM passes even from a foreign IP with a foreign MAIL FROM."""
    result = await judge(police_signed(), resolver)
    assert (result.passed, result.method, result.domain) == (True, "dkim", POLICE)
    assert "dkim=pass d=politie.example s=s1" in result.detail


async def test_foreign_dkim_on_police_from_fails(resolver: Resolver) -> None:
    """A valid d=evil.example signature does not authenticate a police From."""
    raw = sign(plain_message(), rsa_key(2048), domain="evil.example", selector="e1")
    result = await judge(raw, resolver)
    assert (result.passed, result.method) == (False, "")
    assert "dkim=pass d=evil.example s=e1 (unaligned)" in result.detail


async def test_unaligned_spf_pass_fails(resolver: Resolver) -> None:
    """SPF passing for the attacker's own MAIL FROM domain does not help a police From."""
    result = await judge(plain_message(), resolver, mail_from="x@evil.example")
    assert not result.passed
    assert "unaligned" in result.detail


async def test_unaligned_mail_from_is_not_even_looked_up(
    server: DnsServer, resolver: Resolver
) -> None:
    """SPF of an unaligned MAIL FROM domain cannot help, so it is not queried."""
    await judge(plain_message(), resolver, mail_from="x@evil.example")
    assert server.zone.queried("evil.example") == 0


async def test_aligned_spf_pass_without_dkim_passes(resolver: Resolver) -> None:
    """An SPF pass for an aligned MAIL FROM authenticates an unsigned message."""
    result = await judge(
        plain_message(), resolver, mail_from="wijkagent@politie.example", client_ip=POLICE_IP
    )
    assert (result.passed, result.method) == (True, "spf")


async def test_require_dkim_ignores_spf(resolver: Resolver) -> None:
    """With require = "dkim" an aligned SPF pass alone is not enough."""
    result = await judge(
        plain_message(),
        resolver,
        mail_from="wijkagent@politie.example",
        client_ip=POLICE_IP,
        requirement=Requirement.DKIM,
    )
    assert not result.passed


async def test_softfail_fails(resolver: Resolver) -> None:
    """SPF softfail (~all) for the gemeente domain without DKIM is not a pass."""
    result = await judge(
        plain_message("info@gemeente.example"),
        resolver,
        author_domain="gemeente.example",
        mail_from="info@gemeente.example",
    )
    assert not result.passed
    assert "spf=softfail" in result.detail


async def test_foreign_signature_first_aligned_second_passes(resolver: Resolver) -> None:
    """Two valid signatures, d=evil.example on top and d=politie.example below: pass."""
    raw = sign(police_signed(), rsa_key(2048), domain="evil.example", selector="e1")
    result = await judge(raw, resolver)
    assert (result.passed, result.method) == (True, "dkim")


@pytest.mark.parametrize(
    "options",
    [
        {"length": True},
        {"include_headers": ["subject", "to", "date"]},
        {"algorithm": b"rsa-sha1"},
    ],
    ids=["l=", "from-not-in-h", "rsa-sha1"],
)
async def test_weak_aligned_signatures_fail(options: dict[str, object], resolver: Resolver) -> None:
    """An aligned signature with l=, without From in h=, or rsa-sha1 does not pass."""
    result = await judge(police_signed(**options), resolver)
    assert not result.passed


async def test_512_bit_key_fails(server: DnsServer, resolver: Resolver) -> None:
    """An aligned signature by a 512-bit key does not pass."""
    publish(server.zone, POLICE, "weak", rsa_key(512))
    raw = sign(plain_message(), rsa_key(512), domain=POLICE, selector="weak")
    assert not (await judge(raw, resolver)).passed


async def test_key_split_into_two_strings_passes(server: DnsServer, resolver: Resolver) -> None:
    """A 2048-bit key published as two TXT strings authenticates."""
    publish(server.zone, POLICE, "big", rsa_key(2048))
    raw = sign(plain_message(), rsa_key(2048), domain=POLICE, selector="big")
    assert (await judge(raw, resolver)).passed


async def test_key_timeout_raises(server: DnsServer, resolver: Resolver) -> None:
    """A key lookup timeout with no other pass is DnsTemporaryError (451), not a fail."""
    server.zone.timeout("s1._domainkey.politie.example")
    with pytest.raises(DnsTemporaryError):
        await judge(police_signed(), resolver)


async def test_key_servfail_raises(server: DnsServer, resolver: Resolver) -> None:
    """A key lookup SERVFAIL with no other pass is DnsTemporaryError."""
    server.zone.servfail("s1._domainkey.politie.example")
    with pytest.raises(DnsTemporaryError):
        await judge(police_signed(), resolver)


async def test_spf_timeout_raises(server: DnsServer, resolver: Resolver) -> None:
    """An aligned MAIL FROM whose SPF lookup times out is DnsTemporaryError."""
    server.zone.timeout(POLICE)
    with pytest.raises(DnsTemporaryError):
        await judge(plain_message(), resolver, mail_from="w@politie.example", client_ip=POLICE_IP)


async def test_timeout_elsewhere_does_not_block_an_aligned_pass(
    server: DnsServer, resolver: Resolver
) -> None:
    """A foreign signature's key timing out does not stop an aligned valid signature."""
    server.zone.timeout("slow._domainkey.evil.example")
    raw = sign(police_signed(), rsa_key(2048), domain="evil.example", selector="slow")
    result = await judge(raw, resolver)
    assert (result.passed, result.method) == (True, "dkim")


async def test_hyphenated_domain_passes(server: DnsServer, resolver: Resolver) -> None:
    """politie-noord.example signing its own mail passes (no [a-z0-9.] domain regex)."""
    publish(server.zone, "politie-noord.example", "s1", rsa_key(1024))
    raw = sign(
        plain_message("w@politie-noord.example"), rsa_key(1024), domain="politie-noord.example"
    )
    result = await judge(raw, resolver, author_domain="politie-noord.example")
    assert (result.passed, result.domain) == (True, "politie-noord.example")


async def test_hyphenated_lookalike_does_not_align(server: DnsServer, resolver: Resolver) -> None:
    """A politie-noord.example signature does not authenticate politie.example."""
    publish(server.zone, "politie-noord.example", "s1", rsa_key(1024))
    raw = sign(plain_message(), rsa_key(1024), domain="politie-noord.example")
    assert not (await judge(raw, resolver)).passed


async def test_subdomain_signature_aligns(server: DnsServer, resolver: Resolver) -> None:
    """mail.politie.example signing a politie.example From passes (relaxed alignment)."""
    publish(server.zone, "mail.politie.example", "s1", rsa_key(1024))
    raw = sign(plain_message(), rsa_key(1024), domain="mail.politie.example")
    assert (await judge(raw, resolver)).passed


async def test_mixed_case_author_domain_passes(resolver: Resolver) -> None:
    """The author domain is compared case-insensitively."""
    result = await judge(police_signed(), resolver, author_domain="Politie.EXAMPLE")
    assert (result.passed, result.domain) == (True, POLICE)


AR_DMARC = (
    b"Authentication-Results: mx.buurtnet.example; dmarc=pass header.from=politie.example\r\n"
)


async def test_trusted_authentication_results_pass(resolver: Resolver) -> None:
    """dmarc=pass in the A-R of a trusted authserv-id authenticates an unsigned message."""
    raw = AR_DMARC + plain_message()
    result = await judge(raw, resolver, trusted=("mx.buurtnet.example",))
    assert (result.passed, result.method) == (True, "authres")


async def test_untrusted_authentication_results_are_ignored(resolver: Resolver) -> None:
    """The same header under an id not in the list (or with no list) counts for nothing."""
    raw = AR_DMARC + plain_message()
    assert not (await judge(raw, resolver, trusted=("relay.buurtnet.example",))).passed
    assert not (await judge(raw, resolver)).passed


async def test_only_topmost_trusted_header_is_read(resolver: Resolver) -> None:
    """A forged trusted A-R below the MTA's own (topmost) one is not read."""
    raw = (
        b"Authentication-Results: mx.buurtnet.example; dmarc=fail header.from=politie.example\r\n"
        + AR_DMARC
        + plain_message()
    )
    assert not (await judge(raw, resolver, trusted=("mx.buurtnet.example",))).passed


async def test_trusted_dkim_pass_must_align(resolver: Resolver) -> None:
    """A trusted dkim=pass counts only when header.d= aligns with the author domain."""
    header = (
        "Authentication-Results: mx.buurtnet.example (comment; x);\r\n dkim=pass header.d={}\r\n"
    )
    trusted = ("mx.buurtnet.example",)
    good = header.format("mail.politie.example").encode() + plain_message()
    bad = header.format("evil.example").encode() + plain_message()
    assert (await judge(good, resolver, trusted=trusted)).method == "authres"
    assert not (await judge(bad, resolver, trusted=trusted)).passed


async def test_trusted_dmarc_pass_for_another_from_is_ignored(resolver: Resolver) -> None:
    """dmarc=pass for a different header.from does not vouch for the author domain."""
    raw = AR_DMARC.replace(b"politie.example", b"evil.example") + plain_message()
    assert not (await judge(raw, resolver, trusted=("mx.buurtnet.example",))).passed


async def test_requirement_none_passes_everything(resolver: Resolver) -> None:
    """require = "none" passes an unsigned spoof, with method "none"."""
    result = await judge(plain_message(), resolver, requirement=Requirement.NONE)
    assert (result.passed, result.method) == (True, "none")
