"""DNS faults during sender authentication, and what a flood of lookups costs.

A timeout or SERVFAIL on any record the decision needs (the DKIM key, the SPF policy),
for the agency's mail and for a coordinator's decision, gives ``451 4.7.0`` at DATA:
never a pass, never a 5xx, nothing stored. The gateway reads no DMARC record (SPEC §5:
aligned DKIM or SPF, whatever the policy), so a broken ``_dmarc`` zone changes nothing.

A flood is bounded twice (bin_gateway/auth/dns.py): answers are cached (TTL-bounded),
so 200 messages from one domain cost a query or two; and at most ``max_concurrency``
queries are in flight, however many lookups wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bin_gateway.auth.dns import make_resolver
from bin_gateway.errors import DnsTemporaryError
from tests.support.dkim_keys import plain_message
from tests.support.dns_server import DnsServer, Zone
from tests.support.hostile import moderation_for
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    COORDINATOR_DOMAIN,
    DOMAIN,
    SELECTOR,
    MakeWorld,
    World,
)

FAULTS: dict[str, Callable[[Zone, str], None]] = {
    "timeout": Zone.timeout,
    "servfail": Zone.servfail,
}


@pytest.fixture
async def quick_world(make_world: MakeWorld) -> World:
    """A world whose resolver gives up after 400 ms (so a timeout costs little)."""
    return await make_world(dns_timeout="400ms")


async def stored(world: World) -> int:
    return len(await world.store.read("SELECT id FROM inbound"))


async def message_from(world: World, sender: str, *, signed: bool) -> tuple[bytes, str, str]:
    """(message, RCPT, MAIL FROM): agency mail to the intake, or a coordinator's OK to a
    real held item; DKIM-signed by the sender's domain or not."""
    if sender == "agency":
        raw = world.agency_mail() if signed else plain_message()
        return raw, f"agency@{DOMAIN}", AGENCY
    await world.send(world.agency_mail(subject="Wacht op besluit"), f"buurt-noord@{DOMAIN}")
    address = await moderation_for(world, "Wacht op besluit")
    raw = world.coordinator_mail("OK\r\n", to=address)
    if not signed:
        raw = raw[raw.index(b"From:"):]  # the DKIM-Signature field goes
    return raw, address, COORDINATOR


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("record", ["dkim-key", "spf"])
@pytest.mark.parametrize("sender", ["agency", "coordinator"])
async def test_dns_fault_during_authentication_is_451_never_pass_nor_5xx(
    quick_world: World, fault: str, record: str, sender: str
) -> None:
    """Timeout or SERVFAIL on the DKIM key (signed mail) or the SPF policy (unsigned mail
    whose SPF could still pass), for agency intake and a coordinator's OK: 451 4.7.0."""
    world = quick_world
    domain = AGENCY_DOMAIN if sender == "agency" else COORDINATOR_DOMAIN
    signed = record == "dkim-key"
    raw, rcpt, mail_from = await message_from(world, sender, signed=signed)
    await world.settle()
    before, sent_before = await stored(world), len(world.sink.messages)
    name = f"{SELECTOR}._domainkey.{domain}" if signed else domain
    FAULTS[fault](world.dns.zone, name)
    answer = await world.send(raw, rcpt, mail_from=mail_from)
    assert answer.data is not None
    assert (answer.data.code, answer.data.text[:5]) == (451, "4.7.0"), answer
    assert await stored(world) == before
    await world.settle()
    assert len(world.sink.messages) == sent_before  # nothing published, nobody told

    world.dns.zone.remove(name)  # the fault clears; the record is published again
    if signed:
        key = world.agency_key if sender == "agency" else world.coordinator_key
        world.dns.zone.add_txt(name, key.record())
    else:
        world.dns.zone.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all")  # and now SPF passes
    again = await world.send(raw, rcpt, mail_from=mail_from)
    assert again.accepted, again


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_broken_dmarc_zone_changes_nothing(quick_world: World, fault: str) -> None:
    """The gateway never asks for _dmarc records: a dead _dmarc zone, genuine mail, 250."""
    world = quick_world
    FAULTS[fault](world.dns.zone, f"_dmarc.{AGENCY_DOMAIN}")
    assert (await world.send(world.agency_mail(), f"agency@{DOMAIN}")).accepted
    assert world.dns.zone.queried(f"_dmarc.{AGENCY_DOMAIN}") == 0


async def test_two_hundred_messages_from_one_domain_make_a_few_queries(world: World) -> None:
    """200 agency messages (100 DKIM-signed, 100 unsigned needing SPF), ten clients at a
    time: the key and the SPF policy are each fetched once or twice, not 100 times."""
    await world.add_members("buurt-noord", 1)
    world.dns.zone.queries.clear()
    signed = [world.agency_mail(subject=f"Vloed {n}").replace(
        b"<melding-1@", f"<vloed-{n}@".encode()) for n in range(100)]
    unsigned = [plain_message(subject=f"Los {n}").replace(
        b"<melding-1@", f"<los-{n}@".encode()) for n in range(100)]
    messages = [m for pair in zip(signed, unsigned, strict=True) for m in pair]
    answers: list[int] = []

    async def client(batch: list[bytes]) -> None:
        for raw in batch:
            sent = await world.send(raw, f"agency@{DOMAIN}")
            answers.append(sent.data.code if sent.data else sent.rcpt[0].code)

    started = time.monotonic()
    await asyncio.gather(*(client(messages[i::10]) for i in range(10)))
    elapsed = time.monotonic() - started
    key_queries = world.dns.zone.queried(f"{SELECTOR}._domainkey.{AGENCY_DOMAIN}")
    spf_queries = world.dns.zone.queried(AGENCY_DOMAIN)
    total = len(world.dns.zone.queries)
    print(f"200 messages in {elapsed:.1f} s: {total} DNS queries "
          f"(DKIM key {key_queries}, SPF {spf_queries})")
    assert sorted(set(answers)) == [250, 550]  # signed held, unsigned refused (spf -all)
    assert answers.count(250) == 100
    assert 1 <= key_queries <= 2
    assert 1 <= spf_queries <= 2
    assert total <= 10


async def test_slow_lookups_never_exceed_the_concurrency_limit() -> None:
    """40 different names, each answered after 0.3 s, asked at once through a resolver
    allowing 4 in flight: the name server never sees more than 4 at a time, and all 40
    are answered."""
    with DnsServer() as server:
        names = [f"s{n}._domainkey.langzaam.example" for n in range(40)]
        for name in names:
            server.zone.add_txt(name, "v=DKIM1; p=")
            server.zone.delay(name, 0.3)
        resolver = make_resolver(server.nameservers, timeout=3.0, max_concurrency=4)
        started = time.monotonic()
        answers = await asyncio.gather(*(resolver.txt(name) for name in names))
        elapsed = time.monotonic() - started
    print(f"40 slow lookups, limit 4: most in flight {server.zone.most_in_flight}, "
          f"{elapsed:.1f} s")
    assert answers == [["v=DKIM1; p="]] * 40
    assert server.zone.most_in_flight == 4
    assert elapsed >= 40 / 4 * 0.3 * 0.9


async def test_a_flood_beyond_what_the_limit_can_serve_in_time_is_a_temporary_error() -> None:
    """When the queue for a slot would outlast the lookup budget, the waiting lookups fail
    as temporary (the sender gets 451 and retries) instead of queueing without end."""
    with DnsServer() as server:
        names = [f"n{n}.traag.example" for n in range(20)]
        for name in names:
            server.zone.add_txt(name, "v=spf1 -all")
            server.zone.delay(name, 0.5)
        resolver = make_resolver(server.nameservers, timeout=0.6, max_concurrency=2)
        results = await asyncio.gather(*(resolver.txt(n) for n in names), return_exceptions=True)
    failed = [r for r in results if isinstance(r, DnsTemporaryError)]
    answered = [r for r in results if r == ["v=spf1 -all"]]
    print(f"20 lookups of 0.5 s, limit 2, budget 1.2 s: {len(answered)} answered, "
          f"{len(failed)} temporary errors, most in flight {server.zone.most_in_flight}")
    assert len(failed) + len(answered) == 20
    assert failed and answered
    assert server.zone.most_in_flight <= 2


@pytest.mark.parametrize("fault", ["none", "servfail"])
async def test_identical_lookups_in_flight_share_one_query(fault: str) -> None:
    """50 simultaneous lookups of one name with 32 free slots: one query reaches the
    server, and all 50 get its answer, or its failure as a temporary error (before, every
    lookup that found no cached answer asked for itself)."""
    with DnsServer() as server:
        name = "s1._domainkey.politie.example"
        server.zone.add_txt(name, "v=DKIM1; p=")
        server.zone.delay(name, 0.2)
        if fault == "servfail":
            server.zone.servfail(name)
        resolver = make_resolver(server.nameservers, timeout=2.0, max_concurrency=32)
        results = await asyncio.gather(*(resolver.txt(name) for _ in range(50)),
                                       return_exceptions=True)
        assert server.zone.queried(name) == 1
    if fault == "none":
        assert results == [["v=DKIM1; p="]] * 50
    else:
        assert all(isinstance(r, DnsTemporaryError) for r in results), results
