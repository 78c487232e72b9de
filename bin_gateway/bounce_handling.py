"""Bounces of our copies, counted against the member (SPEC F5).

A permanent failure is recorded against the delivery the VERP address names; the third
distinct copy to bounce permanently within 30 days disables the member (no further
bulletins) and tells the list's coordinators, with the remote server's last words.
Temporary failures are recorded, never counted: the outbox retries those itself.
Non-bounces (out-of-office replies, people writing to the bounce address) are dropped
without a word: answering them would be backscatter.
"""

from __future__ import annotations

import asyncio

import aiosqlite
import structlog

from .bounces import BounceKind, classify
from .config import CurrentConfig, FollowsConfig
from .models import Inbound, InboundState
from .notices import Notice, NoticeWriter
from .store import Store, now

log = structlog.get_logger("bin_gateway.bounces")

BOUNCES_TO_DISABLE = 3
BOUNCE_WINDOW = 30 * 86400.0


class BounceHandling(FollowsConfig):
    def __init__(self, current: CurrentConfig, store: Store, writer: NoticeWriter) -> None:
        self._current = current
        self._store = store
        self._writer = writer

    async def handle(self, item: Inbound) -> None:
        delivery = await self._store.delivery(int(item.target))
        if delivery is None:
            await self._finish(item, "delivery is gone")
            return
        verdict = await asyncio.to_thread(classify, item.raw, delivery.recipient)
        if verdict.kind is BounceKind.NONE:
            await self._finish(item, "not a bounce")
            log.info("bounce.ignored", delivery_id=delivery.id, inbound_id=item.id)
            return
        permanent = verdict.kind is BounceKind.PERMANENT
        disabled = False
        async with self._store.transaction() as db:
            await Store.record_bounce(db, delivery_id=delivery.id, inbound_id=item.id,
                                      permanent=permanent, detail=verdict.detail)
            member_id = delivery.member_id
            if permanent and member_id is not None:
                count = await Store.permanent_bounces_since(db, member_id, now() - BOUNCE_WINDOW)
                if count >= BOUNCES_TO_DISABLE and await Store.disable_member(db, member_id):
                    disabled = True
                    await self._tell_coordinators(db, member_id, count, verdict.detail, item.id)
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info("bounce.recorded", delivery_id=delivery.id, member_id=delivery.member_id,
                 permanent=permanent)
        if disabled:
            log.info("member.disabled", member_id=delivery.member_id, bounces=BOUNCES_TO_DISABLE)

    async def _tell_coordinators(
        self, db: aiosqlite.Connection, member_id: int, count: int, detail: str, inbound_id: int
    ) -> None:
        member = await self._store.member(member_id)
        lst = self._config.list_by_id(member.list_id) if member else None
        if member is None or lst is None:
            return
        for coordinator in lst.coordinators:
            notice = Notice(
                to=coordinator, text="member_disabled", language=lst.language,
                fields={"address": member.email, "list_name": lst.name, "count": count,
                        "days": round(BOUNCE_WINDOW / 86400), "last_error": detail or "-"},
                from_name=lst.name, from_local="postmaster",
            )
            await self._writer.queue(db, notice, kind="member_disabled",
                                     source_key=f"member-disabled:{member_id}:{inbound_id}")

    async def _finish(self, item: Inbound, reason: str) -> None:
        async with self._store.transaction() as db:
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED, reason)
