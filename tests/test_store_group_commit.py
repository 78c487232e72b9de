"""Group commit in the store: concurrent transactions share one COMMIT (one fsync), while
each caller keeps what a transaction promises: atomic, isolated, durable on return.

Real SQLite files on disk; the COMMITs are counted with SQLite's own trace callback.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bin_gateway.store import Store, open_store


class Boom(Exception):
    pass


async def make_store(tmp_path: Path) -> tuple[Store, list[str]]:
    store = await open_store(tmp_path / "gateway.sqlite3")
    async with store.exclusive() as db:
        await db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    statements: list[str] = []
    await store._writer.set_trace_callback(statements.append)
    return store, statements


def committed_rows(tmp_path: Path) -> set[int]:
    """What another process would read now: a connection of its own."""
    with sqlite3.connect(tmp_path / "gateway.sqlite3") as other:
        return {row[0] for row in other.execute("SELECT n FROM t")}


async def insert(store: Store, n: int, fail: bool = False) -> None:
    async with store.transaction() as db:
        await db.execute("INSERT INTO t (n) VALUES (?)", (n,))
        if fail:
            raise Boom(n)


async def hold_open(store: Store) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A transaction that has inserted 1 and stays open until the event is set."""
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as db:
            await db.execute("INSERT INTO t (n) VALUES (1)")
            inside.set()
            await leave.wait()

    holder = asyncio.create_task(first())
    await inside.wait()
    return holder, leave


async def test_concurrent_transactions_share_commits_and_each_is_durable_on_return(
    tmp_path: Path,
) -> None:
    store, statements = await make_store(tmp_path)
    seen_on_return: dict[int, bool] = {}

    async def one(n: int) -> None:
        await insert(store, n)
        seen_on_return[n] = n in committed_rows(tmp_path)

    await asyncio.gather(*(one(n) for n in range(200)))
    commits = sum(1 for s in statements if s.strip().upper() == "COMMIT")
    await store.close()
    assert committed_rows(tmp_path) == set(range(200))
    assert all(seen_on_return.values()) and len(seen_on_return) == 200
    # 200 transactions, far fewer fsyncs; at most 64 units share one COMMIT.
    assert 200 / 64 <= commits < 100, commits


async def test_a_failing_unit_rolls_back_alone(tmp_path: Path) -> None:
    store, _ = await make_store(tmp_path)
    results = await asyncio.gather(
        *(insert(store, n, fail=n % 3 == 1) for n in range(30)), return_exceptions=True
    )
    await store.close()
    failed = {n for n, r in enumerate(results) if isinstance(r, Boom)}
    assert failed == {n for n in range(30) if n % 3 == 1}
    assert all(r is None for n, r in enumerate(results) if n not in failed)
    assert committed_rows(tmp_path) == set(range(30)) - failed


async def test_the_first_unit_of_a_group_failing_leaves_the_next_ones_whole(
    tmp_path: Path,
) -> None:
    store, _ = await make_store(tmp_path)
    results = await asyncio.gather(
        insert(store, 1, fail=True), insert(store, 2), insert(store, 3),
        return_exceptions=True,
    )
    await store.close()
    assert isinstance(results[0], Boom) and results[1:] == [None, None]
    assert committed_rows(tmp_path) == {2, 3}


async def test_a_waiter_cancelled_before_its_turn_does_not_strand_the_group(
    tmp_path: Path,
) -> None:
    """The unit before it left the group open for it; somebody must still commit."""
    store, _ = await make_store(tmp_path)

    holder, leave = await hold_open(store)
    waiter = asyncio.create_task(insert(store, 2))
    await asyncio.sleep(0.01)  # the waiter is queued for the lock
    leave.set()
    await asyncio.sleep(0)  # the holder runs on towards its exit...
    waiter.cancel()  # ...and the one it would leave the group to is gone
    await asyncio.wait_for(holder, 5)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await store.close()
    assert 1 in committed_rows(tmp_path)


async def test_exclusive_commits_an_open_group_first(tmp_path: Path) -> None:
    """VACUUM cannot run inside a transaction: exclusive() closes the group before it."""
    store, _ = await make_store(tmp_path)
    await asyncio.gather(*(insert(store, n) for n in range(20)), store.compact())
    await store.close()
    assert committed_rows(tmp_path) == set(range(20))


async def test_a_unit_cancelled_as_it_ends_still_ends_the_group(tmp_path: Path) -> None:
    """Shutdown may cancel a caller just after its work, while its unit is released: the
    rest (release, commit, unlock) still happens, or the units before it would wait for
    ever on a group nobody commits."""
    store, _ = await make_store(tmp_path)

    async def second() -> None:
        async with store.transaction() as db:
            await db.execute("INSERT INTO t (n) VALUES (2)")
            asyncio.get_running_loop().call_soon(me.cancel)  # lands as the unit ends

    holder, leave = await hold_open(store)
    me = asyncio.create_task(second())
    await asyncio.sleep(0.01)  # queued behind the holder: the holder leaves the group open
    leave.set()
    await asyncio.wait_for(holder, 5)
    with pytest.raises(asyncio.CancelledError):
        await me
    async with store.transaction() as db:  # and the store takes work as before
        await db.execute("INSERT INTO t (n) VALUES (3)")
    await store.close()
    assert {1, 3} <= committed_rows(tmp_path)
