"""The SQLite connection pair, transactions and migrations.

One writer connection, serialised by an asyncio.Lock and ``BEGIN IMMEDIATE``: a shared
aiosqlite connection otherwise interleaves the statements of concurrent coroutines. A
second connection serves reads, so a reader never sees another coroutine's uncommitted
writes (WAL lets it read while the writer writes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 10_000


def now() -> float:
    return time.time()


async def _run(db: aiosqlite.Connection, sql: str) -> None:
    # A PRAGMA that answers a row keeps its statement, and with it a lock, open until the
    # cursor is exhausted: always drain and close.
    async with db.execute(sql) as cursor:
        await cursor.fetchall()


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await _run(db, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await _run(db, "PRAGMA foreign_keys = ON")
    # FULL: a committed row survives power loss, which is what our 250 promises.
    await _run(db, "PRAGMA synchronous = FULL")
    return db


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


class StoreBase:
    """Owns the connections; the query mixins build on :meth:`transaction` and :meth:`read`."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Any:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        await _run(writer, "PRAGMA journal_mode = WAL")
        store = cls(path, writer, await _connect(path))
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def migrate(self) -> int:
        """Apply every migration newer than PRAGMA user_version; return the version."""
        async with self._lock:
            async with self._writer.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
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
        """A write transaction; commits on success, rolls back on any exception."""
        async with self._lock:
            try:
                await _run(self._writer, "BEGIN IMMEDIATE")
            except BaseException:
                # Cancelled while aiosqlite's thread ran the BEGIN: it may have begun all
                # the same, and the next transaction would then fail ("cannot start a
                # transaction within a transaction"). Shutdown cancels at any point.
                await asyncio.shield(self._rollback_if_open())
                raise
            try:
                yield self._writer
            except BaseException:
                await _run(self._writer, "ROLLBACK")
                raise
            await _run(self._writer, "COMMIT")

    async def _rollback_if_open(self) -> None:
        if self._writer.in_transaction:
            await _run(self._writer, "ROLLBACK")

    async def read(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        bound = params if isinstance(params, Mapping) else tuple(params)
        async with self._reader.execute(sql, bound) as cursor:
            return list(await cursor.fetchall())

    async def read_one(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> aiosqlite.Row | None:
        rows = await self.read(sql, params)
        return rows[0] if rows else None

    async def pragma(self, name: str) -> Any:
        row = await self.read_one(f"PRAGMA {name}")
        return row[0] if row else None
