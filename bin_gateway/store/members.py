"""Queries on list members."""

from __future__ import annotations

import aiosqlite

from ..models import Member, MemberState
from .base import StoreBase, now, row_in


def _member(row: aiosqlite.Row) -> Member:
    return Member(
        id=row["id"], list_id=row["list_id"], email=row["email"], name=row["name"],
        state=MemberState(row["state"]),
    )


class MemberQueries(StoreBase):
    async def add_members(self, list_id: str, people: list[tuple[str, str]]) -> int:
        """Add (email, name) pairs; existing members are left as they are. Returns added."""
        added = 0
        async with self.transaction() as db:
            for email, name in people:
                cursor = await db.execute(
                    "INSERT OR IGNORE INTO members (list_id, email, name, state, created_at)"
                    " VALUES (?,?,?,?,?)",
                    (list_id, email, name, MemberState.ACTIVE.value, now()),
                )
                added += cursor.rowcount
        return added

    async def remove_members(self, list_id: str, emails: list[str]) -> int:
        removed = 0
        async with self.transaction() as db:
            for email in emails:
                member_id = await self.member_in(db, list_id, email)
                if member_id is not None:
                    await self.remove_member_in(db, member_id)
                    removed += 1
        return removed

    async def members(self, list_id: str) -> list[Member]:
        rows = await self.read(
            "SELECT * FROM members WHERE list_id = ? ORDER BY email", (list_id,)
        )
        return [_member(row) for row in rows]

    async def member(self, member_id: int) -> Member | None:
        row = await self.read_one("SELECT * FROM members WHERE id = ?", (member_id,))
        return _member(row) if row else None

    async def active_member_count(self, list_id: str) -> int:
        row = await self.read_one(
            "SELECT count(*) FROM members WHERE list_id = ? AND state = ?",
            (list_id, MemberState.ACTIVE.value),
        )
        return int(row[0]) if row else 0

    @staticmethod
    async def disable_member(db: aiosqlite.Connection, member_id: int) -> bool:
        """Active -> disabled; False when the member was not active (already done)."""
        cursor = await db.execute(
            "UPDATE members SET state = ? WHERE id = ? AND state = ?",
            (MemberState.DISABLED.value, member_id, MemberState.ACTIVE.value),
        )
        return bool(cursor.rowcount)

    async def enable_members(self, member_ids: list[int]) -> int:
        """Disabled -> active again (the admin's word after bounces); returns how many."""
        changed = 0
        async with self.transaction() as db:
            for member_id in member_ids:
                cursor = await db.execute(
                    "UPDATE members SET state = ? WHERE id = ? AND state = ?",
                    (MemberState.ACTIVE.value, member_id, MemberState.DISABLED.value),
                )
                changed += cursor.rowcount
        return changed

    @staticmethod
    async def member_in(db: aiosqlite.Connection, list_id: str, email: str) -> int | None:
        """The id of the member with this address (any letter case), inside a transaction."""
        row = await row_in(
            db, "SELECT id FROM members WHERE list_id = ? AND lower(email) = lower(?)",
            (list_id, email),
        )
        return int(row[0]) if row else None

    @staticmethod
    async def add_member_in(
        db: aiosqlite.Connection, list_id: str, email: str, name: str
    ) -> None:
        await db.execute(
            "INSERT OR IGNORE INTO members (list_id, email, name, state, created_at)"
            " VALUES (?,?,?,'active',?)",
            (list_id, email, name, now()),
        )

    @staticmethod
    async def remove_member_in(db: aiosqlite.Connection, member_id: int) -> None:
        """Leave: pending copies dropped, sent ones kept without the link, the row gone."""
        await db.execute(
            "DELETE FROM deliveries WHERE state IN ('queued','sending') AND member_id = ?",
            (member_id,),
        )
        await db.execute("UPDATE deliveries SET member_id = NULL WHERE member_id = ?",
                         (member_id,))
        await db.execute("DELETE FROM members WHERE id = ?", (member_id,))
