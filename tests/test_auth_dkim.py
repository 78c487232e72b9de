"""verify_dkim: every signature judged, stricter than dkimpy, keys from a real DNS server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dkim
import pytest

from bin_gateway.auth.dkim_verify import MAX_SIGNATURES, DkimTemporaryError, verify_dkim
from bin_gateway.auth.dns import Resolver, make_resolver
from bin_gateway.errors import DnsTemporaryError
from tests.support.dkim_keys import ed25519_key, plain_message, publish, rsa_key, sign
from tests.support.dns_server import DnsServer

POLICE = "politie.example"


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        publish(running.zone, POLICE, "s1", rsa_key(1024))
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return make_resolver(server.nameservers, timeout=0.5)


async def test_genuine_signature_is_valid(resolver: Resolver) -> None:
    """A signature by the published key over the message verifies."""
    [result] = await verify_dkim(sign(plain_message(), rsa_key(1024), domain=POLICE), resolver)
    assert (result.domain, result.selector, result.valid, result.reason) == (
        POLICE,
        "s1",
        True,
        "pass",
    )


async def test_rsa_2048_and_ed25519_signatures_are_valid(
    server: DnsServer, resolver: Resolver
) -> None:
    """RSA-2048 (two TXT strings) and Ed25519 keys both verify."""
    publish(server.zone, POLICE, "big", rsa_key(2048))
    publish(server.zone, POLICE, "ed", ed25519_key())
    raw = sign(plain_message(), rsa_key(2048), domain=POLICE, selector="big")
    raw = sign(raw, ed25519_key(), domain=POLICE, selector="ed")
    results = await verify_dkim(raw, resolver)
    assert [(r.selector, r.valid) for r in results] == [("ed", True), ("big", True)]


async def test_key_split_into_two_strings_is_assembled(
    server: DnsServer, resolver: Resolver
) -> None:
    """A key TXT record published as two strings is joined before use."""
    record = rsa_key(1024).record().encode()
    server.zone.add_txt_strings("split._domainkey.politie.example", [record[:100], record[100:]])
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, selector="split")
    [result] = await verify_dkim(raw, resolver)
    assert result.valid


async def test_altered_body_fails(resolver: Resolver) -> None:
    """Changing the signed body breaks the signature."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE)
    [result] = await verify_dkim(raw.replace(b"twee keer", b"drie keer"), resolver)
    assert not result.valid
    assert "body hash" in result.reason


async def test_every_signature_is_checked(server: DnsServer, resolver: Resolver) -> None:
    """Two valid signatures, foreign on top and police below: both are judged valid."""
    publish(server.zone, "evil.example", "e1", rsa_key(2048))
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE)
    raw = sign(raw, rsa_key(2048), domain="evil.example", selector="e1")
    results = await verify_dkim(raw, resolver)
    assert [(r.domain, r.valid) for r in results] == [("evil.example", True), (POLICE, True)]


async def test_length_tag_is_not_valid(resolver: Resolver) -> None:
    """A signature with l= fails, even though dkimpy accepts appended text."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, length=True)
    [result] = await verify_dkim(raw + b"Klik hier: https://evil.example/\r\n", resolver)
    assert not result.valid
    assert "l=" in result.reason


async def test_from_missing_from_h_is_not_valid(resolver: Resolver) -> None:
    """A signature whose h= does not cover From fails, though dkimpy accepts it."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, include_headers=["subject", "to"])
    records = {b"s1._domainkey.politie.example.": rsa_key(1024).record().encode()}
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: records.get(name))
    [result] = await verify_dkim(raw, resolver)
    assert not result.valid
    assert "From" in result.reason


async def test_512_bit_key_is_not_valid(server: DnsServer, resolver: Resolver) -> None:
    """A signature by a 512-bit key fails (dkimpy raises KeyFormatError; caught)."""
    publish(server.zone, POLICE, "weak", rsa_key(512))
    [result] = await verify_dkim(
        sign(plain_message(), rsa_key(512), domain=POLICE, selector="weak"), resolver
    )
    assert not result.valid
    assert "too small" in result.reason


async def test_rsa_sha1_is_not_valid(resolver: Resolver) -> None:
    """An a=rsa-sha1 signature fails (RFC 8301)."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, algorithm=b"rsa-sha1")
    [result] = await verify_dkim(raw, resolver)
    assert not result.valid
    assert "rsa-sha1" in result.reason


async def test_expired_signature_is_not_valid(resolver: Resolver) -> None:
    """x= a minute in the past fails (dkimpy allows ten hours of slack)."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, expires=int(time.time()) - 60)
    [result] = await verify_dkim(raw, resolver)
    assert not result.valid
    assert "x=" in result.reason


async def test_unexpired_signature_is_valid(resolver: Resolver) -> None:
    """x= in the future still verifies (the expiry helper itself signs correctly)."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, expires=int(time.time()) + 3600)
    [result] = await verify_dkim(raw, resolver)
    assert result.valid


async def test_quote_in_domain_is_not_valid_and_not_looked_up(
    server: DnsServer, resolver: Resolver
) -> None:
    """d=politie.example'a.evil.example (espoofer a4) fails before any lookup."""
    raw = sign(plain_message(), rsa_key(1024), domain="politie.example'a.evil.example")
    [result] = await verify_dkim(raw, resolver)
    assert not result.valid
    assert result.reason == "d= is not a domain name"
    assert server.zone.queries == []


async def test_nul_in_selector_never_fetches_the_attackers_key(
    server: DnsServer, resolver: Resolver
) -> None:
    """A selector with a NUL (espoofer a3) fails and no lookup is made for it."""
    publish(server.zone, "evil.example", "x", rsa_key(2048))
    selector = "x._domainkey.evil.example.\x00.any"
    raw = sign(plain_message(), rsa_key(2048), domain=POLICE, selector=selector)
    [result] = await verify_dkim(raw, resolver)
    assert not result.valid
    assert server.zone.queries == []


async def test_unpublished_key_fails(resolver: Resolver) -> None:
    """A signature whose selector has no key record fails with that reason."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, selector="gone")
    [result] = await verify_dkim(raw, resolver)
    assert (result.valid, result.reason) == (False, "no key published")


async def test_key_lookup_timeout_raises_with_results(
    server: DnsServer, resolver: Resolver
) -> None:
    """A key lookup that times out raises DnsTemporaryError carrying every verdict."""
    server.zone.timeout("slow._domainkey.politie.example")
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE, selector="slow")
    raw = sign(raw, rsa_key(1024), domain=POLICE)
    with pytest.raises(DnsTemporaryError) as caught:
        await verify_dkim(raw, resolver)
    assert isinstance(caught.value, DkimTemporaryError)
    assert [(r.selector, r.valid, r.temporary) for r in caught.value.results] == [
        ("s1", True, False),
        ("slow", False, True),
    ]


async def test_key_lookup_servfail_raises(server: DnsServer, resolver: Resolver) -> None:
    """A key lookup answered SERVFAIL raises DnsTemporaryError too."""
    server.zone.servfail("s1._domainkey.politie.example")
    with pytest.raises(DnsTemporaryError):
        await verify_dkim(sign(plain_message(), rsa_key(1024), domain=POLICE), resolver)


async def test_unsigned_message_has_no_results(resolver: Resolver) -> None:
    """No DKIM-Signature, no results."""
    assert await verify_dkim(plain_message(), resolver) == []


@pytest.mark.parametrize(
    "raw",
    [
        b" From: a@evil.example\r\nDKIM-Signature: v=1; d=politie.example\r\n\r\nx\r\n",
        b"From\r\n : a@evil.example\r\nDKIM-Signature: v=1\r\n\r\nx\r\n",
        b"From: a@evil.example\r\nDKIM-Signature: garbage without tags\r\n\r\nx\r\n",
        b"From: a@evil.example\r\nDKIM-Signature: v=1; d=politie.example; d=evil.example\r\n\r\n",
        b"From: a@evil.example\r\nDKIM-Signature: v=1; a=rsa-sha256; d=politie.example; "
        b"s=s1; h=from; bh=!!; b=!!\r\n\r\nx\r\n",
        b"From: a@evil.example\r\nDKIM-Signature: v=1; a=rsa-sha256; d=politie.example; "
        b"s=s1; h=from; c=odd/odd; bh=AAAA; b=AAAA\r\n\r\nx\r\n",
    ],
    ids=["leading-space", "folded-name", "no-tags", "duplicate-tag", "bad-base64", "bad-c"],
)
async def test_malformed_input_fails_without_crashing(raw: bytes, resolver: Resolver) -> None:
    """Odd messages and odd signatures give failed results, never an exception."""
    results = await verify_dkim(raw, resolver)
    assert results
    assert not any(r.valid for r in results)


async def test_signature_count_is_bounded(server: DnsServer, resolver: Resolver) -> None:
    """Past MAX_SIGNATURES, further signatures are reported unchecked, not verified."""
    raw = sign(plain_message(), rsa_key(1024), domain=POLICE)
    for i in range(MAX_SIGNATURES):
        publish(server.zone, POLICE, f"k{i}", rsa_key(1024))
        raw = sign(raw, rsa_key(1024), domain=POLICE, selector=f"k{i}")
    results = await verify_dkim(raw, resolver)
    assert len(results) == MAX_SIGNATURES + 1
    assert all(r.valid for r in results[:MAX_SIGNATURES])
    assert not results[-1].valid
    assert "not checked" in results[-1].reason
