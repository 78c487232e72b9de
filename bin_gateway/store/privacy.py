"""The AVG/GDPR queries: everything about one address, erasing it, and retention.

Erasing keeps counts and removes the person: member rows and join requests go, the
delivery rows stay (they are the statistics) with the recipient replaced, and every
stored message that carries the address (their own mail, our mail to them) is
replaced by a tombstone. A VACUUM afterwards leaves no copy in free pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import aiosqlite

from .base import StoreBase, _run, now, row_in, rows_in
from .members import MemberQueries

FORGOTTEN = "[vergeten]"
_TOMBSTONE = b"[removed on request (AVG/GDPR article 17)]"
_EXPIRED = b"[removed after the retention period]"


@dataclass
class Erased:
    """What ``forget`` removed, for the admin's record (counts only)."""

    memberships: int = 0
    join_requests: int = 0
    deliveries: int = 0
    pending_deliveries: int = 0
    reply_threads: int = 0
    stored_messages: int = 0
    sent_messages: int = 0
    other_mentions: int = 0
    lists: list[str] = field(default_factory=list)


def _needles(address: str) -> tuple[bytes, ...]:
    """The address as stored messages may carry it: plain, and quoted-printable's '=40'."""
    plain = address.lower().encode("utf-8")
    return (plain, plain.replace(b"@", b"=40"))


def _carries(data: bytes | None, needles: tuple[bytes, ...]) -> bool:
    lowered = (data or b"").lower()
    return any(needle in lowered for needle in needles)


class PrivacyQueries(StoreBase):
    async def person(self, address: str) -> dict[str, object]:
        """Everything stored about ``address`` (the right of access), as plain data."""
        key = address.lower()
        members = await self.read(
            "SELECT id, list_id, email, name, state, created_at FROM members"
            " WHERE lower(email) = ?", (key,))
        threads = await self.read(
            "SELECT t.list_id, t.pseudonym, t.created_at, b.subject,"
            " (SELECT count(*) FROM replies r WHERE r.thread_id = t.id) AS messages"
            " FROM reply_threads t JOIN bulletins b ON b.id = t.bulletin_id"
            " WHERE t.member_id IN (SELECT id FROM members WHERE lower(email) = ?)", (key,))
        deliveries = await self.read(
            "SELECT d.state, count(*) AS n FROM deliveries d WHERE lower(d.recipient) = ?"
            " GROUP BY d.state", (key,))
        joins = await self.read(
            "SELECT list_id, state, created_at FROM joins WHERE lower(email) = ?", (key,))
        inbound = await self.read(
            "SELECT received_at, route, target FROM inbound WHERE author = ? OR"
            " lower(mail_from) = ?", (key, key))
        return {
            "address": address,
            "memberships": [dict(row) for row in members],
            "join_requests": [dict(row) for row in joins],
            "deliveries_by_state": {row["state"]: row["n"] for row in deliveries},
            "reply_threads": [dict(row) for row in threads],
            "messages_received_from": [dict(row) for row in inbound],
        }

    async def forget(self, address: str) -> Erased:
        """Erase ``address`` everywhere (one transaction), then VACUUM the file."""
        key = address.lower()
        needles = _needles(key)
        erased = Erased()
        async with self.transaction() as db:
            await self._forget_members(db, key, erased)
            await self._forget_deliveries(db, key, needles, erased)
            erased.stored_messages = await self._tombstone(
                db, "inbound", "raw", needles,
                extra="author = ? OR lower(mail_from) = ?", params=(key, key),
                reset="author = '', mail_from = '', facts = '{}', message_id = ''")
            erased.other_mentions = await self._scrub_mentions(db, key)
        await self.compact()
        return erased

    async def _forget_members(self, db: aiosqlite.Connection, key: str, erased: Erased) -> None:
        rows = await rows_in(db, "SELECT id, list_id FROM members WHERE lower(email) = ?", (key,))
        for row in rows:
            count = await row_in(
                db, "SELECT count(*) FROM reply_threads WHERE member_id = ?", (row[0],)
            )
            erased.reply_threads += int(count[0]) if count else 0
            # The member's reply threads lose the link to them (ON DELETE SET NULL).
            await MemberQueries.remove_member_in(db, int(row[0]))
            erased.lists.append(str(row[1]))
        erased.memberships = len(rows)
        cursor = await db.execute("DELETE FROM joins WHERE lower(email) = ?", (key,))
        erased.join_requests = cursor.rowcount

    async def _forget_deliveries(
        self, db: aiosqlite.Connection, key: str, needles: tuple[bytes, ...], erased: Erased
    ) -> None:
        cursor = await db.execute(
            "DELETE FROM deliveries WHERE lower(recipient) = ? AND state IN ('queued','sending')"
            " AND bulletin_id IS NOT NULL", (key,))
        erased.pending_deliveries = cursor.rowcount
        erased.sent_messages = await self._tombstone(
            db, "outbound", "message", needles,
            extra="id IN (SELECT outbound_id FROM deliveries WHERE lower(recipient) = ?)",
            params=(key,))
        cursor = await db.execute(
            "UPDATE deliveries SET recipient = ?, member_id = NULL, last_reply = ''"
            " WHERE lower(recipient) = ?", (FORGOTTEN, key))
        erased.deliveries = cursor.rowcount

    @staticmethod
    async def _tombstone(
        db: aiosqlite.Connection, table: str, column: str, needles: tuple[bytes, ...], *,
        extra: str, params: tuple[object, ...], reset: str = "",
    ) -> int:
        """Replace every stored message in ``table`` that carries the address."""
        async with db.execute(
            f"SELECT id, ({extra}) AS direct, {column} FROM {table}"  # noqa: S608 (our names)
            f" WHERE {column} != ?", (*params, _TOMBSTONE)
        ) as cursor:
            hit = [int(row[0]) async for row in cursor if row[1] or _carries(row[2], needles)]
        sets = f"{column} = ?" + (f", {reset}" if reset else "")
        for row_id in hit:
            await db.execute(f"UPDATE {table} SET {sets} WHERE id = ?",  # noqa: S608
                             (_TOMBSTONE, row_id))
        return len(hit)

    @staticmethod
    async def _scrub_mentions(db: aiosqlite.Connection, key: str) -> int:
        """The address in other places: held items it sent, decisions, bounces, audit."""
        total = 0
        for sql in (
            "UPDATE submissions SET sender = ? WHERE lower(sender) = ?",
            "UPDATE submissions SET decided_by = ? WHERE lower(decided_by) = ?",
            "UPDATE reply_threads SET answerer = ? WHERE lower(answerer) = ?",
            "UPDATE audit SET actor = ? WHERE lower(actor) = ?",
            "UPDATE bulletins SET origin = ? WHERE lower(origin) = ?",
        ):
            cursor = await db.execute(sql, (FORGOTTEN, key))
            total += cursor.rowcount
        like = f"%{key}%"
        # Our own notices are queued once per (cause, recipient): keep them unique, drop
        # the address from the key.
        cursor = await db.execute(
            "UPDATE outbound SET source_key = 'forgotten:' || id WHERE lower(source_key) LIKE ?",
            (like,))
        total += cursor.rowcount
        for sql in (
            "UPDATE bounces SET detail = ? WHERE lower(detail) LIKE ?",
            "UPDATE audit SET detail = ? WHERE lower(detail) LIKE ?",
            "UPDATE inbound SET error = ? WHERE lower(error) LIKE ?",
        ):
            cursor = await db.execute(sql, (FORGOTTEN, like))
            total += cursor.rowcount
        return total

    async def purge_raw_before(self, before: float) -> int:
        """Retention: stored messages older than ``before`` lose their bytes (rows stay)."""
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE inbound SET raw = ?, facts = '{}' WHERE received_at < ?"
                " AND state != 'received' AND raw NOT IN (?, ?)"
                " AND id NOT IN (SELECT inbound_id FROM submissions WHERE state = 'held')"
                # a bulletin still being delivered is rendered from its original
                " AND id NOT IN (SELECT b.inbound_id FROM bulletins b JOIN deliveries d"
                " ON d.bulletin_id = b.id WHERE d.state IN ('queued', 'sending'))",
                (_EXPIRED, before, _EXPIRED, _TOMBSTONE))
            purged = cursor.rowcount
            cursor = await db.execute(
                "UPDATE outbound SET message = ? WHERE created_at < ? AND message NOT IN (?, ?)"
                " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.outbound_id = outbound.id"
                " AND d.state IN ('queued','sending'))",
                (_EXPIRED, before, _EXPIRED, _TOMBSTONE))
            purged += cursor.rowcount
        return purged

    async def compact(self) -> None:
        """Checkpoint the WAL and VACUUM: erased bytes must not linger in free pages."""
        async with self.exclusive():
            await _run(self._writer, "PRAGMA wal_checkpoint(TRUNCATE)")
            await _run(self._writer, "VACUUM")
            await _run(self._writer, "PRAGMA wal_checkpoint(TRUNCATE)")


def as_json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


__all__ = ["FORGOTTEN", "Erased", "PrivacyQueries", "as_json", "now"]
