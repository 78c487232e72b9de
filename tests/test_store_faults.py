"""The database refusing writes for a while (another program holds its lock past the
busy timeout; a full disk looks the same to the workers): the outbox and the processor
wait and try again instead of dying. Nothing is marked failed, nothing is lost, and the
copies already sent are not sent again.

The lock is real: a second SQLite connection, as an admin's ``sqlite3`` shell or a
careless backup script would hold it, with ``BEGIN EXCLUSIVE``.
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
