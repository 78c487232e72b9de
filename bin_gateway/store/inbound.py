"""Queries on accepted SMTP transactions."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

import aiosqlite

from ..models import Inbound, InboundState, RouteKind
from .base import StoreBase, now


@dataclass(frozen=True, slots=True)
class NewInbound:
    route: RouteKind
    target: str
    mail_from: str
    rcpt_tos: list[str]
    client_ip: str
    helo: str
    raw: bytes
    author: str = ""
    auth: str = ""
    message_id: str = ""
    facts: dict[str, object] = field(default_factory=dict)


def _inbound(row: aiosqlite.Row) -> Inbound:
    return Inbound(
        id=row["id"],
        received_at=row["received_at"],
        route=RouteKind(row["route"]),
        target=row["target"],
        mail_from=row["mail_from"],
        author=row["author"],
        auth=row["auth"],
        facts=json.loads(row["facts"]),
        raw=bytes(row["raw"]),
    )


class InboundQueries(StoreBase):
    async def add_inbound(self, item: NewInbound) -> int:
        """Commit an accepted message; only after this returns may the SMTP side say 250."""
        async with self.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO inbound (received_at, route, target, mail_from, rcpt_tos,"
                " client_ip, helo, author, auth, message_id, facts, raw)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    now(), item.route.value, item.target, item.mail_from,
                    json.dumps(item.rcpt_tos), item.client_ip, item.helo, item.author,
                    item.auth, item.message_id, json.dumps(item.facts), item.raw,
                ),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    async def pending_inbound(
        self, limit: int = 20, skip: Collection[int] = (), max_bytes: int | None = None
    ) -> list[Inbound]:
        """The oldest received rows, leaving out ``skip`` (those being handled now).

        With ``max_bytes``, only the first rows that hold at most that many bytes of mail
        together, though always the first row when ``skip`` is empty: a message larger
        than the budget must still be handled. (``length()`` of a blob reads no content.)
        """
        rows = await self.read(
            "SELECT * FROM inbound WHERE id IN ("
            " SELECT id FROM ("
            "  SELECT id, size, sum(size) OVER (ORDER BY id) AS upto FROM ("
            "   SELECT id, length(raw) AS size FROM inbound WHERE state = ?"
            "   AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?))"
            " WHERE ? IS NULL OR upto <= ? OR (upto = size AND ?)) ORDER BY id",
            (InboundState.RECEIVED.value, json.dumps(list(skip)), limit,
             max_bytes, max_bytes, not skip),
        )
        return [_inbound(row) for row in rows]

    async def inbound(self, inbound_id: int) -> Inbound | None:
        row = await self.read_one("SELECT * FROM inbound WHERE id = ?", (inbound_id,))
        return _inbound(row) if row else None

    async def seen_message(
        self, route: RouteKind, author: str, message_id: str, target: str | None = None
    ) -> bool:
        """Whether this author's Message-ID was already accepted on this route (replay);
        with ``target``, only on that target (one reply sent to two threads is two)."""
        if not message_id:
            return False
        row = await self.read_one(
            "SELECT 1 FROM inbound WHERE author = ? AND message_id = ? AND route = ?"
            " AND (? IS NULL OR target = ?) LIMIT 1",
            (author, message_id, route.value, target, target),
        )
        return row is not None

    @staticmethod
    async def finish_inbound(
        db: aiosqlite.Connection, inbound_id: int, state: InboundState, error: str = ""
    ) -> None:
        """Mark processing done, inside the caller's transaction (so it commits with the work)."""
        await db.execute(
            "UPDATE inbound SET state = ?, error = ? WHERE id = ?",
            (state.value, error, inbound_id),
        )
