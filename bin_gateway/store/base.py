"""The SQLite connection pair, transactions and migrations.

One writer connection, serialised by an asyncio.Lock and ``BEGIN IMMEDIATE``: a shared
aiosqlite connection otherwise interleaves the statements of concurrent coroutines. A
second connection serves reads, so a reader never sees another coroutine's uncommitted
writes (WAL lets it read while the writer writes). Reads run inline, on the event
loop's own thread: they are small indexed lookups that take tens of microseconds in
SQLite, while a trip through aiosqlite's thread cost more than the query (a reply made
about a dozen; queue hand-offs and the interpreter lock ping-pong showed at the top of
the profile). WAL readers do not wait for the writer; in the rare case SQLite says busy
(recovery, a checkpoint restart), the read goes through the aiosqlite reader, which may
wait.

Group commit: with ``synchronous = FULL`` every COMMIT is an fsync (about 1.7 ms here),
and one at a time they were the gateway's ceiling under load (the write lock was held
two thirds of the time, mostly in COMMIT). So when a transaction ends while others wait
for the lock, its work is not committed yet: the next one continues the same SQLite
transaction inside a SAVEPOINT, and the last of the group (or the 64th, or one 50 ms after
the group began) commits for all. Each caller still leaves ``transaction()`` only once its
work is durable, and a failing unit rolls back to its savepoint alone, so to a caller
nothing changes: atomic, isolated, durable on return. The first unit of a group needs no
savepoint: if it fails, the group holds nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 10_000
GROUP_MAX_UNITS = 64  # transactions committed together at most
GROUP_MAX_SECONDS = 0.05  # a group commits this long after it began, waiters or not


class GroupCommitFailed(Exception):
    """The transaction this work was grouped with could not be committed."""


# What the store raises when the database cannot do the work (a full disk, an I/O
# error, a lock held too long by another program): the work is undone, not wrong, and is
# tried again later rather than marked failed. Any other error, an IntegrityError among
# them, is a fault of the item being handled: retrying it would stall everything behind.
STORE_ERRORS = (sqlite3.OperationalError, GroupCommitFailed)


def now() -> float:
    return time.time()


async def rows_in(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
) -> list[aiosqlite.Row]:
    """Every row ``sql`` answers on the writer (inside its transaction).

    One trip to aiosqlite's thread: ``async with db.execute(...)`` and a fetch are three
    (execute, fetch, close), and each trip costs about 70 µs of CPU in queue hand-offs and
    wake-ups, more than the indexed lookups themselves. The statement is drained, so it
    holds no lock afterwards.
    """
    return list(await db.execute_fetchall(sql, params))


async def row_in(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
) -> aiosqlite.Row | None:
    """The first row of :func:`rows_in`, or None."""
    rows = await rows_in(db, sql, params)
    return rows[0] if rows else None


async def _run(db: aiosqlite.Connection, sql: str) -> None:
    # A PRAGMA that answers a row keeps its statement, and with it a lock, open until the
    # cursor is exhausted: always drain (rows_in does, in one trip).
    await rows_in(db, sql)


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await _run(db, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await _run(db, "PRAGMA foreign_keys = ON")
    # FULL: a committed row survives power loss, which is what our 250 promises.
    await _run(db, "PRAGMA synchronous = FULL")
    return db


def _connect_inline(path: Path) -> sqlite3.Connection:
    # busy_timeout 0: this connection runs on the event loop and must never sleep there.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 0").close()
    db.execute("PRAGMA foreign_keys = ON").close()
    return db


def _busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


class _Group:
    """One SQLite transaction shared by consecutive ``transaction()`` callers."""

    def __init__(self) -> None:
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.units = 0
        self.started = time.monotonic()

    def settle(self, error: BaseException | None = None) -> None:
        if self.committed.done():
            return
        if error is None:
            self.committed.set_result(None)
        else:
            failure = GroupCommitFailed(f"group commit failed: {error!r}")
            self.committed.set_exception(failure)
            # The units that await it raise it; nobody may be left to retrieve it.
            self.committed.exception()


class StoreBase:
    """Owns the connections; the query mixins build on :meth:`transaction` and :meth:`read`."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._inline = _connect_inline(path)
        self._lock = asyncio.Lock()
        self._group: _Group | None = None  # open and uncommitted between two units
        self._queued = 0  # transaction() callers waiting for the lock
        self._background: set[asyncio.Future[None]] = set()  # unit ends, group flushes

    @classmethod
    async def open(cls, path: Path) -> Any:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        await _run(writer, "PRAGMA journal_mode = WAL")
        store = cls(path, writer, await _connect(path))
        await store.migrate()
        return store

    async def close(self) -> None:
        async with self.exclusive():
            pass
        self._inline.close()
        await self._reader.close()
        await self._writer.close()

    async def migrate(self) -> int:
        """Apply every migration newer than PRAGMA user_version; return the version."""
        async with self.exclusive():
            row = await row_in(self._writer, "PRAGMA user_version")
            version = int(row[0]) if row else 0
            for number, script in _migrations():
                if number <= version:
                    continue
                # executescript commits on its own; the version bump is inside the script
                # run so a crash mid-migration leaves the old version number behind.
                await self._writer.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
                version = number
            return version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: on a normal exit the work is committed (durably) before
        this returns; on any exception it is rolled back and the exception goes on.

        What follows the caller's work (release, commit or roll back, then free the lock)
        runs as a task of its own, shielded: a caller cancelled half-way (shutdown) must
        leave neither an open transaction nor a group that nobody will commit, on which
        the units before it would wait for ever.
        """
        self._queued += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._queued -= 1
            if self._group is not None and not self._queued and not self._lock.locked():
                # The unit before us left the group open for us: commit it for them.
                self._spawn(self._flush())
            raise
        self._queued -= 1
        try:
            group, savepoint = await self._begin_unit()
        except BaseException as exc:
            await asyncio.shield(self._then_unlock(self._begin_failed(exc)))
            raise
        try:
            yield self._writer
        except BaseException as exc:
            await asyncio.shield(self._then_unlock(self._undo_unit(group, savepoint, exc)))
            raise
        await asyncio.shield(self._then_unlock(self._end_unit(group, savepoint)))
        # Shielded: a caller cancelled here must not cancel the others' future.
        await asyncio.shield(group.committed)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer with no transaction open: for VACUUM, checkpoints, migrations."""
        async with self._lock:
            if self._group is not None:
                await asyncio.shield(self._commit(self._group))
            yield self._writer

    async def _flush(self) -> None:
        async with self.exclusive():
            pass

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _then_unlock(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work
            finally:
                self._lock.release()
        return self._spawn(run())

    async def _begin_unit(self) -> tuple[_Group, bool]:
        """A new group's BEGIN, or a SAVEPOINT in the open group; True for the latter."""
        group = self._group
        if group is None:
            await _run(self._writer, "BEGIN IMMEDIATE")
            group = self._group = _Group()
            group.units = 1
            return group, False
        group.units += 1
        await _run(self._writer, "SAVEPOINT unit")
        return group, True

    async def _begin_failed(self, error: BaseException) -> None:
        # Cancelled while aiosqlite's thread ran the BEGIN or SAVEPOINT, it may have run
        # all the same: nothing may stay open ("cannot start a transaction within a
        # transaction" otherwise). Joining a group, whether the savepoint exists is
        # unknown: the whole group is given up and its units hear so.
        if self._group is not None:
            self._abandon(self._group, error)
        await self._rollback()

    async def _undo_unit(self, group: _Group, savepoint: bool, error: BaseException) -> None:
        """Roll this unit back; never raises (the caller raises its own error)."""
        if not savepoint:
            self._abandon(group, error)  # the group holds this unit's work only
            await self._rollback()
            return
        try:
            await _run(self._writer, "ROLLBACK TO unit")
            await _run(self._writer, "RELEASE unit")
        except BaseException as exc:
            self._abandon(group, exc)
            await self._rollback()
            return
        if not self._writer.in_transaction:
            # SQLite ended the whole transaction itself (SQLITE_FULL, an I/O error).
            self._abandon(group, error)
        elif not self._queued:
            # A failure here is the others' to hear (through the group).
            with contextlib.suppress(Exception):
                await self._commit(group)

    async def _end_unit(self, group: _Group, savepoint: bool) -> None:
        if savepoint:
            try:
                await _run(self._writer, "RELEASE unit")
            except BaseException as exc:
                self._abandon(group, exc)
                await self._rollback()
                raise
        if (not self._queued or group.units >= GROUP_MAX_UNITS
                or time.monotonic() - group.started >= GROUP_MAX_SECONDS):
            await self._commit(group)

    async def _commit(self, group: _Group) -> None:
        self._group = None
        try:
            await _run(self._writer, "COMMIT")
        except BaseException as exc:
            group.settle(exc)
            await self._rollback()
            raise
        group.settle()

    def _abandon(self, group: _Group, error: BaseException) -> None:
        if self._group is group:
            self._group = None
        group.settle(error)

    async def _rollback(self) -> None:
        # Unconditional: a BEGIN still queued in aiosqlite's thread is not yet visible in
        # in_transaction, and this ROLLBACK runs after it. None active is fine.
        with contextlib.suppress(sqlite3.Error, ValueError):
            await _run(self._writer, "ROLLBACK")

    async def read(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        bound = params if isinstance(params, Mapping) else tuple(params)
        try:
            cursor = self._inline.execute(sql, bound)
            try:
                return cursor.fetchall()
            finally:
                cursor.close()  # ends the read snapshot: it would hold back checkpoints
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        async with self._reader.execute(sql, bound) as waiting:
            return list(await waiting.fetchall())

    async def read_one(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> aiosqlite.Row | None:
        rows = await self.read(sql, params)
        return rows[0] if rows else None

    async def pragma(self, name: str) -> Any:
        row = await self.read_one(f"PRAGMA {name}")
        return row[0] if row else None
