"""The database refusing writes for a while (another program holds its lock past the
busy timeout; a full disk looks the same to the workers): the outbox and the processor
wait and try again instead of dying. Nothing is marked failed, nothing is lost, and the
copies already sent are not sent again.

The faults are real SQLite ones: a second connection holding ``BEGIN EXCLUSIVE`` (as an
admin's ``sqlite3`` shell or a careless backup script would), and a trigger that reads a
table not yet there (the OperationalError a full disk also raises), at the one write the
test aims at.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import structlog

from bin_gateway.services import DATABASE_NAME
from tests.support.world import COORDINATOR, DOMAIN, World

HELD_FOR = 12.0  # seconds: past the store's 10 s busy timeout


async def test_a_locked_database_is_waited_out_by_the_workers(world: World) -> None:
    members = await world.add_members("buurt-noord", 40)
    world.sink.stall_in_data(0.05, times=1_000_000)  # the fan-out takes a few seconds
    post = world.coordinator_mail("De straat gaat dicht.\r\n", to=f"buurt-noord@{DOMAIN}",
                                  subject="Werk aan de weg")
    with structlog.testing.capture_logs() as logs:
        assert (await world.send(post, f"buurt-noord@{DOMAIN}", mail_from=COORDINATOR)).accepted
        await world.delivered(3)  # the fan-out is under way
        other = sqlite3.connect(world.config.gateway.data_dir / DATABASE_NAME,
                                isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            await asyncio.sleep(HELD_FOR)
        finally:
            other.execute("COMMIT")
            other.close()
        for _ in range(300):
            rows = await world.store.read(
                "SELECT state, count(*) FROM deliveries WHERE state <> 'sent' GROUP BY state")
            if not rows:
                break
            await asyncio.sleep(0.1)
    assert world.gateway.failed_task() is None, "a worker died"
    assert not rows, [tuple(r) for r in rows]
    copies = Counter(rcpt for r in world.sink.messages for rcpt in r.rcpt_tos)
    assert all(copies[m] == 1 for m in members), {m: copies[m] for m in members}
    events = [e["event"] for e in logs]
    assert "outbox.store_failed" in events and "outbox.store_recovered" in events


async def test_the_processor_waits_out_a_failing_write_and_loses_nothing(world: World) -> None:
    """A write the database cannot do (here: a trigger reading a table that does not
    exist yet, an OperationalError as a full disk gives) leaves the agency's message
    'received' and is tried again, not marked failed; once the write works the
    coordinators are asked as usual."""
    async with world.store.exclusive() as db:
        await db.execute("CREATE TRIGGER fault BEFORE INSERT ON submissions"
                         " BEGIN SELECT * FROM fault_gate; END")
    with structlog.testing.capture_logs() as logs:
        assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
        for _ in range(100):
            if any(e["event"] == "processor.store_failed" for e in logs):
                break
            await asyncio.sleep(0.05)
        rows = await world.store.read("SELECT state FROM inbound")
        assert [r["state"] for r in rows] == ["received"]
        assert world.messages_to(COORDINATOR) == []
        async with world.store.exclusive() as db:
            await db.execute("CREATE TABLE fault_gate (x)")
        request = (await world.wait_for_mail_to(COORDINATOR, timeout=20))[0]
    assert "Inbraken in Noord" in str(request["Subject"])
    assert world.gateway.failed_task() is None, "a worker died"
    rows = await world.store.read("SELECT state FROM inbound")
    assert [r["state"] for r in rows] == ["processed"]
    assert "processor.store_recovered" in [e["event"] for e in logs]
