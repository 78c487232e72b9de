"""Queries on held submissions and published bulletins.

Methods that take ``db`` run inside the caller's transaction, so one processing step
(decide, publish, queue the notices, mark the inbound row done) commits as a whole.
"""

from __future__ import annotations

import aiosqlite

from ..models import Bulletin, MemberState, Submission, SubmissionState
from ..tokens import new_delivery_token
from .base import StoreBase, now, row_in, rows_in


def _submission(row: aiosqlite.Row) -> Submission:
    return Submission(
        id=row["id"], inbound_id=row["inbound_id"], list_id=row["list_id"],
        agency_id=row["agency_id"], sender=row["sender"], subject=row["subject"],
        state=SubmissionState(row["state"]), created_at=row["created_at"],
        expires_at=row["expires_at"], remind_at=row["remind_at"],
        reminded_at=row["reminded_at"], decided_at=row["decided_at"],
        decided_by=row["decided_by"], reason=row["reason"], note=row["note"],
        reply_id=row["reply_id"], join_id=row["join_id"],
    )


def _bulletin(row: aiosqlite.Row) -> Bulletin:
    return Bulletin(
        id=row["id"], list_id=row["list_id"], inbound_id=row["inbound_id"],
        submission_id=row["submission_id"], sender_name=row["sender_name"],
        origin=row["origin"], note=row["note"], subject=row["subject"],
        created_at=row["created_at"], member_count=row["member_count"],
    )


class ModerationQueries(StoreBase):
    @staticmethod
    async def create_submission(
        db: aiosqlite.Connection, *, inbound_id: int, list_id: str, agency_id: str,
        sender: str, subject: str, token_hash: str, expires_at: float, remind_at: float,
        reply_id: int | None = None, join_id: int | None = None,
    ) -> int | None:
        """Hold one message for one list; None when it was already held (re-run)."""
        cursor = await db.execute(
            "INSERT OR IGNORE INTO submissions (inbound_id, list_id, agency_id, sender, subject,"
            " token_hash, created_at, expires_at, remind_at, reply_id, join_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (inbound_id, list_id, agency_id, sender, subject, token_hash, now(),
             expires_at, remind_at, reply_id, join_id),
        )
        return cursor.lastrowid if cursor.rowcount else None

    async def submission(self, submission_id: int) -> Submission | None:
        row = await self.read_one("SELECT * FROM submissions WHERE id = ?", (submission_id,))
        return _submission(row) if row else None

    @staticmethod
    async def submission_in(db: aiosqlite.Connection, submission_id: int) -> Submission:
        """A row inside the caller's write transaction (it may not be committed yet)."""
        row = await row_in(db, "SELECT * FROM submissions WHERE id = ?", (submission_id,))
        if row is None:
            raise LookupError(f"no submission {submission_id}")
        return _submission(row)

    async def submission_by_token_hash(self, token_hash: str) -> Submission | None:
        row = await self.read_one(
            "SELECT * FROM submissions WHERE token_hash = ? OR id ="
            " (SELECT submission_id FROM moderation_tokens WHERE token_hash = ?)",
            (token_hash, token_hash),
        )
        return _submission(row) if row else None

    @staticmethod
    async def add_token(db: aiosqlite.Connection, submission_id: int, token_hash: str) -> None:
        await db.execute(
            "INSERT INTO moderation_tokens (token_hash, submission_id) VALUES (?, ?)",
            (token_hash, submission_id),
        )

    async def submissions(self, state: SubmissionState | None = None) -> list[Submission]:
        if state is None:
            rows = await self.read("SELECT * FROM submissions ORDER BY id")
        else:
            rows = await self.read(
                "SELECT * FROM submissions WHERE state = ? ORDER BY id", (state.value,)
            )
        return [_submission(row) for row in rows]

    @staticmethod
    async def decide_submission(
        db: aiosqlite.Connection, submission_id: int, state: SubmissionState, *,
        decided_by: str, reason: str = "", note: str = "",
    ) -> bool:
        """Move a held item to its decision; False when another decision came first."""
        cursor = await db.execute(
            "UPDATE submissions SET state = ?, decided_at = ?, decided_by = ?, reason = ?,"
            " note = ? WHERE id = ? AND state = ?",
            (state.value, now(), decided_by, reason, note, submission_id,
             SubmissionState.HELD.value),
        )
        return cursor.rowcount == 1

    @staticmethod
    async def mark_reminded(db: aiosqlite.Connection, submission_id: int) -> bool:
        cursor = await db.execute(
            "UPDATE submissions SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL"
            " AND state = ?",
            (now(), submission_id, SubmissionState.HELD.value),
        )
        return cursor.rowcount == 1

    async def due_reminders(self, at: float) -> list[Submission]:
        rows = await self.read(
            "SELECT * FROM submissions WHERE state = ? AND reminded_at IS NULL"
            " AND remind_at <= ? AND expires_at > ? ORDER BY id",
            (SubmissionState.HELD.value, at, at),
        )
        return [_submission(row) for row in rows]

    async def due_expiries(self, at: float) -> list[Submission]:
        rows = await self.read(
            "SELECT * FROM submissions WHERE state = ? AND expires_at <= ? ORDER BY id",
            (SubmissionState.HELD.value, at),
        )
        return [_submission(row) for row in rows]

    @staticmethod
    async def create_bulletin(
        db: aiosqlite.Connection, *, list_id: str, inbound_id: int,
        submission_id: int | None, sender_name: str, origin: str, note: str, subject: str,
    ) -> tuple[int, int]:
        """Publish: the bulletin and one queued delivery per active member, at once.

        Returns (bulletin id, member count). The deliveries are the durable fan-out: after
        a crash the outbox resumes from them, so nobody is skipped.
        """
        at = now()
        cursor = await db.execute(
            "INSERT INTO bulletins (list_id, inbound_id, submission_id, sender_name, origin,"
            " note, subject, created_at, member_count) VALUES (?,?,?,?,?,?,?,?,0)",
            (list_id, inbound_id, submission_id, sender_name, origin, note, subject, at),
        )
        bulletin_id = cursor.lastrowid
        assert bulletin_id is not None
        members = await rows_in(
            db, "SELECT id, email FROM members WHERE list_id = ? AND state = ? ORDER BY id",
            (list_id, MemberState.ACTIVE.value),
        )
        await db.executemany(
            "INSERT INTO deliveries (bulletin_id, member_id, recipient, token, created_at,"
            " next_attempt_at) VALUES (?,?,?,?,?,?)",
            [(bulletin_id, m["id"], m["email"], new_delivery_token(), at, at) for m in members],
        )
        await db.execute(
            "UPDATE bulletins SET member_count = ? WHERE id = ?", (len(members), bulletin_id)
        )
        return bulletin_id, len(members)

    @staticmethod
    async def bulletin_exists(db: aiosqlite.Connection, inbound_id: int, list_id: str) -> bool:
        row = await row_in(
            db, "SELECT 1 FROM bulletins WHERE inbound_id = ? AND list_id = ?",
            (inbound_id, list_id),
        )
        return row is not None

    async def bulletin(self, bulletin_id: int) -> Bulletin | None:
        row = await self.read_one("SELECT * FROM bulletins WHERE id = ?", (bulletin_id,))
        return _bulletin(row) if row else None

    async def bulletin_for_submission(self, submission_id: int) -> Bulletin | None:
        row = await self.read_one(
            "SELECT * FROM bulletins WHERE submission_id = ?", (submission_id,)
        )
        return _bulletin(row) if row else None
