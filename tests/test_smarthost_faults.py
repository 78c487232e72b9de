"""F3 against a smarthost that fails at random: delivered as retries allow, never spinning.

The gateway (in this process, tests/support/world.py) fans bulletins out through
tests/support/faulty_smarthost.py, which answers 421, 451, 452, cuts connections before
and after accepting, stalls past the gateway's ``delivery.timeout``, refuses connections
for a while, and answers 550 for a few members every time. Then:

* every copy for a deliverable member is 'sent' and was accepted exactly
  ``1 + (acceptances the gateway never heard of)`` times: the only duplicates are
  copies the smarthost accepted on a connection it then cut or stalled;
* every unknown member's copy is 'failed' with the 550, after exactly one 550: the
  failure is recorded once (store, ``queue list``, ``/metrics``, one log event);
* nothing spins: each connection and each RCPT the smarthost saw belongs to an attempt
  the queue counted; between two attempts at one copy the wait at least doubles from
  ``retry_after`` (less 10 % jitter), except the documented immediate second try on a
  fresh connection when a reused one answered 421 at MAIL; and no copy was tried more
  often than that schedule allows in the time the run took.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest
import structlog

from bin_gateway.models import DeliveryState
from tests.support.faulty_smarthost import Event, FaultySmarthost
from tests.support.reliability import SMARTHOST, seeded
from tests.support.world import COORDINATOR, DOMAIN, MakeWorld, World

RETRY_AFTER = 0.3  # seconds: delivery.retry_after for this test
TIMEOUT = 2.0  # seconds: delivery.timeout for this test
JITTER = 0.9  # the outbox waits 0.9-1.1 times the back-off


@pytest.fixture
async def smarthost() -> AsyncIterator[FaultySmarthost]:
    rng = seeded("smarthost faults")
    unknown = frozenset(f"onbekend{n}@bewoners.example" for n in range(SMARTHOST.unknown_members))
    host = await FaultySmarthost(rng, unknown).start()
    try:
        yield host
    finally:
        await host.stop()


async def post(world: World, n: int) -> None:
    mail = world.coordinator_mail(f"Buurtbericht {n}: de straat gaat dicht.\r\n",
                                  to=f"buurt-noord@{DOMAIN}", subject=f"Buurtbericht {n}",
                                  author=f"Coby Coördinator <{COORDINATOR}>")
    sent = await world.send(mail, f"buurt-noord@{DOMAIN}", mail_from=COORDINATOR)
    assert sent.accepted, sent


async def settled(world: World, timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        rows = await world.store.read(
            "SELECT state, count(*), max(attempts), min(next_attempt_at) FROM deliveries"
            " WHERE state IN ('queued', 'sending') GROUP BY state")
        if not rows:
            return
        if time.monotonic() > deadline:
            left = [tuple(r) for r in rows]
            raise AssertionError(f"not settled in {timeout} s: {left} (now {time.time():.1f})")
        await asyncio.sleep(0.1)


async def test_random_smarthost_faults_deliver_once_and_never_spin(
    make_world: MakeWorld, smarthost: FaultySmarthost
) -> None:
    """F3: 4xx, cut connections, stalls and refusals are retried with back-off until
    delivered; 550 fails once; the only duplicates are acceptances the gateway never
    heard of."""
    world = await make_world(sink_port=str(smarthost.port), retry_after=f"{RETRY_AFTER}s",
                             delivery_timeout=f"{TIMEOUT}s", give_up_after="1h")
    members = await world.add_members("buurt-noord", SMARTHOST.members)
    await world.store.add_members("buurt-noord", [(a, "") for a in smarthost.unknown])
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        for n in range(SMARTHOST.bulletins):
            await post(world, n)
        for _ in range(SMARTHOST.refusal_windows):
            await asyncio.sleep(smarthost.rng.uniform(0.5, 2.0))
            await smarthost.refuse_for(smarthost.rng.uniform(1.0, 3.0))
        await settled(world, timeout=900 if SMARTHOST.members > 500 else 120)
        await asyncio.sleep(TIMEOUT + 0.5)  # a stray retry would show now
    took = time.monotonic() - started

    rows = await world.store.read(
        "SELECT id, recipient, token, state, attempts, last_code FROM deliveries")
    by_sender = {f"bounce+{r['token']}@{DOMAIN}": r for r in rows}
    assert set(smarthost.accepted) <= set(by_sender), "accepted a copy of no queue row"
    assert {r["recipient"] for r in rows} >= set(members) | smarthost.unknown

    # Delivered exactly as retries allow.
    wrong: list[str] = []
    for sender, row in by_sender.items():
        if row["recipient"] in smarthost.unknown:
            continue
        expected = 1 + smarthost.cut_after_accept[sender]
        if row["state"] != DeliveryState.SENT.value or smarthost.accepted[sender] != expected:
            wrong.append(f"{row['recipient']}: {row['state']}, accepted"
                         f" {smarthost.accepted[sender]} times, expected {expected}")
    assert not wrong, "\n".join(wrong[:20])

    # Permanent failures, recorded once.
    failed = [r for r in rows if r["state"] == DeliveryState.FAILED.value]
    assert {r["recipient"] for r in failed} == smarthost.unknown
    assert all(r["last_code"] == 550 for r in failed)
    refusals = Counter(e.address for e in smarthost.events if e.code == 550)
    per_copy = Counter(r["recipient"] for r in failed)  # one copy per bulletin
    assert refusals == per_copy, "a 550 was retried"
    failure_events = [e for e in logs if e["event"] == "delivery.failed"]
    assert sorted(e["delivery_id"] for e in failure_events) == sorted(r["id"] for r in failed)
    metrics = (await world.gateway.metrics.render(world.store, world.config)).decode()
    assert f'bin_gateway_deliveries{{state="failed"}} {float(len(failed))}' in metrics
    listing = queue_list_failed(world)
    assert all(listing.count(address) == per_copy[address] for address in per_copy), listing

    # Nothing spins.
    attempts = sum(r["attempts"] for r in rows)
    rcpts = [e for e in smarthost.events if e.command == "RCPT"]
    assert smarthost.connections_total <= attempts
    assert len(rcpts) <= attempts
    most = max(r["attempts"] for r in rows)
    allowed = 1 + math.log2(took / (JITTER * RETRY_AFTER) + 1)
    assert most <= allowed, f"a copy was tried {most} times in {took:.1f} s"
    gaps = check_back_off(smarthost.events)

    deferred = sum(e["event"] == "delivery.deferred" for e in logs)
    per_second = Counter(int(e.at - smarthost.events[0].at) for e in rcpts)
    print(
        f"faults injected: {sum(smarthost.injected.values())} ({dict(smarthost.injected)};"
        f" {smarthost.refused_seconds:.1f} s refusing connections)\n"
        f"deliveries: {len(rows) - len(failed)} delivered, {len(failed)} permanent failures"
        f" (550, each copy refused once); retries: {attempts - len(rows)} ({deferred} deferrals);"
        f" duplicates: {sum(smarthost.cut_after_accept.values())}, each an acceptance the"
        f" gateway never heard of\n"
        f"rate: {smarthost.connections_total} connections and {len(rcpts)} RCPTs for"
        f" {attempts} attempts in {took:.1f} s ({len(rcpts) / took * 60:.0f} RCPT/min,"
        f" busiest second {max(per_second.values())}); at most {most} attempts a copy"
        f" (schedule allows {allowed:.1f}); {gaps} retry gaps checked against the back-off"
    )


def check_back_off(events: list[Event]) -> int:
    """Between two attempts at one copy (by its envelope sender) the wait grows as the
    schedule says. Returns the number of gaps checked."""
    by_copy: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.command == "MAIL":
            by_copy[event.address].append(event)
    checked = 0
    for sender, tries in by_copy.items():
        visible = 0  # attempts seen so far (some fail before MAIL: the real count is higher)
        for before, after in itertools.pairwise(tries):
            gap = after.at - before.at
            if before.code == 421 and not before.first and after.first and gap < RETRY_AFTER:
                continue  # the reused connection was stale: the same attempt, once more
            visible += 1
            least = JITTER * RETRY_AFTER * 2 ** (visible - 1)
            assert gap >= least - 0.01, (
                f"{sender}: attempt {visible + 1} only {gap:.3f} s after the one before"
                f" (the back-off says at least {least:.3f} s)")
            checked += 1
    return checked


def queue_list_failed(world: World) -> str:
    """`bin-gateway queue list --state failed`, as the admin runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "bin_gateway", "queue", "list", "--state", "failed",
         "--config", str(world.config.source)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_each_retry_waits_twice_as_long_as_the_one_before(make_world: MakeWorld) -> None:
    """retry_after after the first attempt, then 2x, 4x (±10 % jitter): the second retry
    used to wait as long as the first (the claimed row's attempt count was one behind)."""
    first = 0.25
    host = await FaultySmarthost(random.Random(1), frozenset(), faults={"451-rcpt": 1.0}).start()
    try:
        world = await make_world(sink_port=str(host.port), retry_after=f"{first}s")
        await world.add_members("buurt-noord", 1)
        await post(world, 0)
        async with asyncio.timeout(30):
            while len(tries := member_rcpts(host)) < 4:  # noqa: ASYNC110 (the sink has no event)
                await asyncio.sleep(0.02)
    finally:
        await host.stop()
    gaps = [b - a for a, b in itertools.pairwise(tries[:4])]
    for n, gap in enumerate(gaps):
        expected = first * 2**n
        assert JITTER * expected - 0.01 <= gap <= 1.1 * expected + 0.5, (n, gaps)


def member_rcpts(host: FaultySmarthost) -> list[float]:
    return [e.at for e in host.events if e.command == "RCPT" and e.address.startswith("lid0@")]


async def test_a_dead_smarthost_is_paused_for_not_tried_copy_by_copy(
    make_world: MakeWorld,
) -> None:
    """Nobody listening at the smarthost: the outbox pauses (1 s, doubling) instead of
    trying each of 60 copies in turn, and delivers every copy once it is back."""
    host = FaultySmarthost(random.Random(1), frozenset(), faults={})
    await host.start()
    try:
        world = await make_world(sink_port=str(host.port), retry_after=f"{RETRY_AFTER}s",
                                 give_up_after="1h")
        members = await world.add_members("buurt-noord", 60)
        await host.stop()  # the smarthost goes down
        with structlog.testing.capture_logs() as logs:
            await post(world, 1)
            await asyncio.sleep(4.0)
            host.port = int(world.config.delivery.smarthost.port)
            await host.start()  # and comes back on the same port
            await settled(world, timeout=90)
        tries_while_down = [e for e in logs if e["event"] == "delivery.deferred"]
        pauses = [e["pause_seconds"] for e in logs if e["event"] == "smarthost.unreachable"]
        assert pauses[:3] == [1.0, 2.0, 4.0][:len(pauses[:3])] and len(pauses) >= 2, pauses
        # Without the pause: every copy tried every retry_after (0.3 s) for 4 s, hundreds.
        connections = world.config.delivery.connections
        assert len(tries_while_down) <= connections * (len(pauses) + 1), len(tries_while_down)
        assert any(e["event"] == "smarthost.reachable" for e in logs)
        # every copy once (and the coordinator's confirmation that it went out)
        assert set(host.accepted.values()) == {1} and len(host.accepted) == len(members) + 1
    finally:
        await host.stop()
