"""Queries on reply threads (member x bulletin) and the replies that went through them."""

from __future__ import annotations

import json

import aiosqlite

from ..models import Member, ReplyState, ReplyThread
from .base import StoreBase, now, row_in
from .members import _member


def _thread(row: aiosqlite.Row) -> ReplyThread:
    return ReplyThread(
        id=row["id"], bulletin_id=row["bulletin_id"], member_id=row["member_id"],
        list_id=row["list_id"], pseudonym=row["pseudonym"], token=row["token"],
        member_token=row["member_token"], answerer=row["answerer"],
        created_at=row["created_at"], expires_at=row["expires_at"],
    )


class ReplyQueries(StoreBase):
    async def thread(self, thread_id: int) -> ReplyThread | None:
        row = await self.read_one("SELECT * FROM reply_threads WHERE id = ?", (thread_id,))
        return _thread(row) if row else None

    async def thread_by_token(self, token: str) -> ReplyThread | None:
        """The thread whose agency-side address carries ``token``."""
        row = await self.read_one("SELECT * FROM reply_threads WHERE token = ?", (token,))
        return _thread(row) if row else None

    async def thread_by_member_token(self, token: str) -> ReplyThread | None:
        row = await self.read_one("SELECT * FROM reply_threads WHERE member_token = ?", (token,))
        return _thread(row) if row else None

    async def thread_for(self, bulletin_id: int, member_id: int) -> ReplyThread | None:
        row = await self.read_one(
            "SELECT * FROM reply_threads WHERE bulletin_id = ? AND member_id = ?",
            (bulletin_id, member_id),
        )
        return _thread(row) if row else None

    @staticmethod
    async def thread_in(
        db: aiosqlite.Connection, bulletin_id: int, member_id: int
    ) -> ReplyThread | None:
        row = await row_in(
            db, "SELECT * FROM reply_threads WHERE bulletin_id = ? AND member_id = ?",
            (bulletin_id, member_id),
        )
        return _thread(row) if row else None

    @staticmethod
    async def list_pseudonym(db: aiosqlite.Connection, list_id: str, member_id: int) -> str | None:
        """The pseudonym this member already has on this list (``pseudonyms = "per_list"``)."""
        row = await row_in(
            db, "SELECT pseudonym FROM reply_threads WHERE list_id = ? AND member_id = ?"
            " ORDER BY id LIMIT 1",
            (list_id, member_id),
        )
        return str(row[0]) if row else None

    @staticmethod
    async def create_thread(
        db: aiosqlite.Connection, *, bulletin_id: int, member_id: int, list_id: str,
        pseudonym: str, token: str, member_token: str, expires_at: float,
    ) -> bool:
        """False when the pseudonym is taken in this bulletin's threads (pick another)."""
        cursor = await db.execute(
            "INSERT OR IGNORE INTO reply_threads (bulletin_id, member_id, list_id, pseudonym,"
            " token, member_token, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?)",
            (bulletin_id, member_id, list_id, pseudonym, token, member_token, now(), expires_at),
        )
        return bool(cursor.rowcount)

    @staticmethod
    async def set_answerer(db: aiosqlite.Connection, thread_id: int, address: str) -> None:
        await db.execute(
            "UPDATE reply_threads SET answerer = ? WHERE id = ?", (address, thread_id)
        )

    @staticmethod
    async def add_reply(
        db: aiosqlite.Connection, *, inbound_id: int, thread_id: int, direction: str,
        state: ReplyState, report: dict[str, object], relay: bytes | None = None,
    ) -> int:
        cursor = await db.execute(
            "INSERT INTO replies (inbound_id, thread_id, direction, state, created_at, report,"
            " relay) VALUES (?,?,?,?,?,?,?)",
            (inbound_id, thread_id, direction, state.value, now(), json.dumps(report), relay),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    async def set_reply_state(db: aiosqlite.Connection, reply_id: int, state: ReplyState) -> None:
        await db.execute("UPDATE replies SET state = ? WHERE id = ?", (state.value, reply_id))

    @staticmethod
    async def held_reply_in(
        db: aiosqlite.Connection, reply_id: int
    ) -> tuple[int, bytes] | None:
        """(thread id, anonymised entity) of a reply waiting for review."""
        row = await row_in(
            db, "SELECT thread_id, relay FROM replies WHERE id = ? AND state = ?",
            (reply_id, ReplyState.HELD.value),
        )
        return (int(row[0]), bytes(row[1])) if row and row[1] is not None else None

    @staticmethod
    async def replies_relayed_since(
        db: aiosqlite.Connection, list_id: str, member_id: int, since: float
    ) -> int:
        """How many of this member's replies on this list were relayed after ``since``."""
        row = await row_in(
            db, "SELECT count(*) FROM replies r JOIN reply_threads t ON t.id = r.thread_id"
            " WHERE t.list_id = ? AND t.member_id = ? AND r.direction = 'member'"
            " AND r.state = ? AND r.created_at > ?",
            (list_id, member_id, ReplyState.RELAYED.value, since),
        )
        return int(row[0]) if row else 0

    async def member_by_address(self, list_id: str, address: str) -> Member | None:
        """A member of ``list_id`` by address, compared case-insensitively."""
        row = await self.read_one(
            "SELECT * FROM members WHERE list_id = ? AND lower(email) = lower(?)",
            (list_id, address),
        )
        return _member(row) if row else None

    async def reply_record(
        self, reply_id: int
    ) -> tuple[int, ReplyState, dict[str, object], bytes | None] | None:
        """(thread id, state, report, anonymised entity) of one reply."""
        row = await self.read_one(
            "SELECT thread_id, state, report, relay FROM replies WHERE id = ?", (reply_id,)
        )
        if row is None:
            return None
        relay = bytes(row[3]) if row[3] is not None else None
        return int(row[0]), ReplyState(row[1]), json.loads(row[2]), relay

    @staticmethod
    async def copy_token_in(
        db: aiosqlite.Connection, bulletin_id: int, member_id: int
    ) -> str | None:
        """The token of this member's copy of the bulletin (their reply address)."""
        row = await row_in(
            db, "SELECT token FROM deliveries WHERE bulletin_id = ? AND member_id = ?",
            (bulletin_id, member_id),
        )
        return str(row[0]) if row else None
