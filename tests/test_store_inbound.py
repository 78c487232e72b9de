"""Which received messages the processor takes next: the oldest first, those being handled
left out, and with a byte budget only as many as fit in it, though never none when
nothing is being handled (a message larger than the budget must still be processed).

A real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from bin_gateway.models import RouteKind
from bin_gateway.store import NewInbound, Store, open_store

KB = 1024


async def received(store: Store, sizes: list[int]) -> list[int]:
    return [await store.add_inbound(NewInbound(
        route=RouteKind.REPLY, target="1:1", mail_from="m@x.nl", rcpt_tos=["r@bin.nl"],
        client_ip="192.0.2.1", helo="x.nl", raw=b"x" * size,
    )) for size in sizes]


async def ids(
    store: Store, limit: int = 20, skip: list[int] | None = None, max_bytes: int | None = None
) -> list[int]:
    pending = await store.pending_inbound(limit=limit, skip=skip or [], max_bytes=max_bytes)
    return [item.id for item in pending]


async def test_a_byte_budget_takes_the_oldest_that_fit_together(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    try:
        a, b, c, d = await received(store, [10 * KB, 20 * KB, 40 * KB, 5 * KB])
        assert await ids(store) == [a, b, c, d]
        assert await ids(store, limit=2) == [a, b]
        assert await ids(store, max_bytes=30 * KB) == [a, b]  # c would pass the budget
        assert await ids(store, max_bytes=100 * KB) == [a, b, c, d]
        # Order is kept: d fits, but not past c, which does not.
        assert await ids(store, skip=[a], max_bytes=30 * KB) == [b]
        assert await ids(store, skip=[a, b], max_bytes=30 * KB) == []
    finally:
        await store.close()


async def test_with_nothing_being_handled_the_oldest_is_taken_whatever_its_size(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    try:
        big, small = await received(store, [64 * KB, 1 * KB])
        assert await ids(store, max_bytes=16 * KB) == [big]
        assert await ids(store, skip=[big], max_bytes=16 * KB) == [small]
    finally:
        await store.close()
