"""Queries on the durable outgoing queue: our own notices and per-recipient deliveries."""

from __future__ import annotations

from dataclasses import dataclass, replace

import aiosqlite

from ..models import Delivery, DeliveryState
from ..tokens import new_delivery_token
from .base import StoreBase, now, row_in, rows_in


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt ended in, as the outbox decided it."""

    delivery_id: int
    state: DeliveryState
    code: int
    reply: str
    next_attempt_at: float = 0.0


@dataclass(frozen=True, slots=True)
class OwnMessage:
    """A message the gateway wrote (a notice, a relay), to be queued once per source key."""

    kind: str
    source_key: str
    recipients: tuple[str, ...]
    message: bytes
    envelope_from: str = ""  # the null sender: nothing bounces back to the gateway


_ROWS_A_STATEMENT = 200  # five values a row, far below SQLite's 32,766 variables


def _delivery(row: aiosqlite.Row) -> Delivery:
    return Delivery(
        id=row["id"], bulletin_id=row["bulletin_id"], outbound_id=row["outbound_id"],
        member_id=row["member_id"], recipient=row["recipient"], token=row["token"],
        state=DeliveryState(row["state"]), attempts=row["attempts"],
        created_at=row["created_at"], next_attempt_at=row["next_attempt_at"],
        last_code=row["last_code"], last_reply=row["last_reply"],
    )


class QueueQueries(StoreBase):
    @staticmethod
    async def enqueue_message(
        db: aiosqlite.Connection, *, kind: str, source_key: str, envelope_from: str,
        recipients: list[str], message: bytes,
    ) -> bool:
        """Queue a message we wrote, once per ``source_key``; False if it was queued before."""
        mail = OwnMessage(kind, source_key, tuple(recipients), message, envelope_from)
        return bool(await QueueQueries.enqueue_messages(db, [mail]))

    @staticmethod
    async def enqueue_messages(db: aiosqlite.Connection, mails: list[OwnMessage]) -> set[str]:
        """Queue messages we wrote, each once per source key; the keys queued by this call.

        Two statements for any number of messages (one INSERT of them all, RETURNING the
        new ids, and one for their deliveries): a reply's relays and acknowledgement
        cost two trips to the database thread instead of six.
        """
        first: dict[str, OwnMessage] = {}
        for mail in mails:
            first.setdefault(mail.source_key, mail)  # the batch's later twins are ignored too
        unique = list(first.values())
        at = now()
        queued: set[str] = set()
        for start in range(0, len(unique), _ROWS_A_STATEMENT):
            chunk = unique[start:start + _ROWS_A_STATEMENT]
            placeholders = ",".join(["(?,?,?,?,?)"] * len(chunk))  # markers only, no values
            rows = await rows_in(
                db, "INSERT OR IGNORE INTO outbound"  # noqa: S608
                f" (kind, source_key, envelope_from, message, created_at) VALUES {placeholders}"
                " RETURNING id, source_key",
                [value for mail in chunk for value in
                 (mail.kind, mail.source_key, mail.envelope_from, mail.message, at)],
            )
            ids = {str(row[1]): int(row[0]) for row in rows}  # RETURNING's order is arbitrary
            await db.executemany(
                "INSERT INTO deliveries"
                " (outbound_id, recipient, token, created_at, next_attempt_at) VALUES (?,?,?,?,?)",
                [(ids[mail.source_key], to, new_delivery_token(), at, at)
                 for mail in chunk if mail.source_key in ids for to in mail.recipients],
            )
            queued.update(ids)
        return queued

    async def outbound_message(self, outbound_id: int) -> tuple[str, bytes] | None:
        row = await self.read_one(
            "SELECT envelope_from, message FROM outbound WHERE id = ?", (outbound_id,)
        )
        return (row["envelope_from"], bytes(row["message"])) if row else None

    async def claim_due(self, limit: int) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for sending (state -> sending)."""
        async with self.transaction() as db:
            rows = await rows_in(
                db, "SELECT * FROM deliveries WHERE state = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT ?",
                (DeliveryState.QUEUED.value, now(), limit),
            )
            await db.executemany(
                "UPDATE deliveries SET state = ?, attempts = attempts + 1 WHERE id = ?",
                [(DeliveryState.SENDING.value, row["id"]) for row in rows],
            )
        # As claimed: this attempt counted (the back-off and the give-up text use it).
        return [replace(_delivery(row), state=DeliveryState.SENDING, attempts=row["attempts"] + 1)
                for row in rows]

    async def record_outcomes(self, outcomes: list[DeliveryOutcome]) -> None:
        at = now()
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE deliveries SET state = ?, last_code = ?, last_reply = ?,"
                " next_attempt_at = ?, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
                " WHERE id = ?",
                [
                    (o.state.value, o.code, o.reply[:500], o.next_attempt_at or at,
                     o.state.value, at, o.delivery_id)
                    for o in outcomes
                ],
            )

    async def release_claims(self) -> int:
        """At start-up: deliveries left 'sending' by a crash go back to the queue.

        These are the copies that were in flight; they may be sent a second time, which
        the contract allows (at-least-once), while nobody is skipped.
        """
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE deliveries SET state = ? WHERE state = ?",
                (DeliveryState.QUEUED.value, DeliveryState.SENDING.value),
            )
            return cursor.rowcount

    async def next_due_at(self) -> float | None:
        row = await self.read_one(
            "SELECT min(next_attempt_at) FROM deliveries WHERE state = ?",
            (DeliveryState.QUEUED.value,),
        )
        return float(row[0]) if row and row[0] is not None else None

    async def deliveries(
        self, states: tuple[DeliveryState, ...], limit: int = 1000
    ) -> list[Delivery]:
        marks = ",".join("?" * len(states))
        rows = await self.read(
            f"SELECT * FROM deliveries WHERE state IN ({marks}) ORDER BY id LIMIT ?",  # noqa: S608 (only '?' marks are formatted in)
            (*[s.value for s in states], limit),
        )
        return [_delivery(row) for row in rows]

    async def delivery(self, delivery_id: int) -> Delivery | None:
        row = await self.read_one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return _delivery(row) if row else None

    async def delivery_by_token(self, token: str) -> Delivery | None:
        row = await self.read_one("SELECT * FROM deliveries WHERE token = ?", (token,))
        return _delivery(row) if row else None

    async def delivery_counts(self, bulletin_id: int) -> dict[str, int]:
        rows = await self.read(
            "SELECT state, count(*) FROM deliveries WHERE bulletin_id = ? GROUP BY state",
            (bulletin_id,),
        )
        return {row[0]: int(row[1]) for row in rows}

    async def retryable(self) -> list[int]:
        """The ids of the deliveries ``retry`` would re-queue, oldest first."""
        rows = await self.read(
            "SELECT id FROM deliveries WHERE state IN ('queued','failed') ORDER BY id"
        )
        return [int(row[0]) for row in rows]

    async def retry(self, delivery_ids: list[int] | None) -> int:
        """Make queued (deferred) and failed deliveries due now; all of them when ids is None."""
        async with self.transaction() as db:
            where = "state IN ('queued','failed')"
            params: tuple[object, ...] = (DeliveryState.QUEUED.value, now())
            if delivery_ids is None:
                cursor = await db.execute(
                    f"UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE {where}",  # noqa: S608 (constant text)
                    params,
                )
                return cursor.rowcount
            total = 0
            for delivery_id in delivery_ids:
                cursor = await db.execute(
                    f"UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE {where}"  # noqa: S608 (constant text)
                    " AND id = ?",
                    (*params, delivery_id),
                )
                total += cursor.rowcount
            return total

    @staticmethod
    async def record_bounce(
        db: aiosqlite.Connection, *, delivery_id: int, inbound_id: int | None,
        permanent: bool, detail: str,
    ) -> None:
        await db.execute(
            "INSERT INTO bounces (delivery_id, inbound_id, at, permanent, detail)"
            " VALUES (?,?,?,?,?)",
            (delivery_id, inbound_id, now(), int(permanent), detail[:500]),
        )

    @staticmethod
    async def permanent_bounces_since(
        db: aiosqlite.Connection, member_id: int, since: float
    ) -> int:
        """Distinct copies to this member that bounced permanently after ``since``."""
        row = await row_in(
            db, "SELECT count(DISTINCT b.delivery_id) FROM bounces b"
            " JOIN deliveries d ON d.id = b.delivery_id"
            " WHERE d.member_id = ? AND b.permanent = 1 AND b.at > ?",
            (member_id, since),
        )
        return int(row[0]) if row else 0

    @staticmethod
    async def audit(
        db: aiosqlite.Connection, *, actor: str, action: str, subject: str, detail: str = ""
    ) -> None:
        await db.execute(
            "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?,?,?,?,?)",
            (now(), actor, action, subject, detail),
        )
