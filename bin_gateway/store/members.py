"""Queries on list members."""

from __future__ import annotations

import aiosqlite

from ..models import Member, MemberState
from .base import StoreBase, now


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
                # Pending deliveries to a removed member are dropped with the member.
                await db.execute(
                    "DELETE FROM deliveries WHERE state IN ('queued','sending') AND member_id IN"
                    " (SELECT id FROM members WHERE list_id = ? AND email = ?)",
                    (list_id, email),
                )
                await db.execute(
                    "UPDATE deliveries SET member_id = NULL WHERE member_id IN"
                    " (SELECT id FROM members WHERE list_id = ? AND email = ?)",
                    (list_id, email),
                )
                cursor = await db.execute(
                    "DELETE FROM members WHERE list_id = ? AND email = ?", (list_id, email)
                )
                removed += cursor.rowcount
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
