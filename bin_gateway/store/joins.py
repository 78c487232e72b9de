"""Queries on join requests waiting for the person's confirmation."""

from __future__ import annotations

import aiosqlite

from ..models import Join, JoinState
from .base import StoreBase, now, row_in


def _join(row: aiosqlite.Row) -> Join:
    return Join(
        id=row["id"], list_id=row["list_id"], email=row["email"], name=row["name"],
        state=JoinState(row["state"]), created_at=row["created_at"],
        expires_at=row["expires_at"], kind=row["kind"],
    )


class JoinQueries(StoreBase):
    async def join(self, join_id: int) -> Join | None:
        row = await self.read_one("SELECT * FROM joins WHERE id = ?", (join_id,))
        return _join(row) if row else None

    async def join_by_token_hash(self, token_hash: str) -> Join | None:
        row = await self.read_one("SELECT * FROM joins WHERE token_hash = ?", (token_hash,))
        return _join(row) if row else None

    @staticmethod
    async def pending_joins_since(
        db: aiosqlite.Connection, list_id: str, email: str, since: float
    ) -> int:
        row = await row_in(
            db, "SELECT count(*) FROM joins WHERE list_id = ? AND lower(email) = lower(?)"
            " AND state = ? AND created_at > ?",
            (list_id, email, JoinState.PENDING.value, since),
        )
        return int(row[0]) if row else 0

    @staticmethod
    async def create_join(
        db: aiosqlite.Connection, *, list_id: str, email: str, name: str, token_hash: str,
        expires_at: float, kind: str = "join",
    ) -> int:
        cursor = await db.execute(
            "INSERT INTO joins (list_id, email, name, token_hash, created_at, expires_at, kind)"
            " VALUES (?,?,?,?,?,?,?)",
            (list_id, email, name, token_hash, now(), expires_at, kind),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    async def confirm_join(db: aiosqlite.Connection, join_id: int) -> bool:
        """Pending -> confirmed; False when it was confirmed before (first answer wins)."""
        cursor = await db.execute(
            "UPDATE joins SET state = ? WHERE id = ? AND state = ?",
            (JoinState.CONFIRMED.value, join_id, JoinState.PENDING.value),
        )
        return bool(cursor.rowcount)
