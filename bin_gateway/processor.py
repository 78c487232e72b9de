"""Phase 2: the worker over accepted messages. Each step commits before the next.

It wakes when the SMTP side stores a message (and every few seconds regardless), takes
the received rows in order and hands each to its route's handler. A crash between two
steps leaves the row 'received', and the handlers are safe to repeat (UNIQUE keys).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from .approval import Approval
from .bounce_handling import BounceHandling
from .config import CurrentConfig, FollowsConfig
from .holding import Holding, subject_in
from .link_tokens import LinkSigner
from .membership import Membership
from .models import Inbound, InboundState, RouteKind
from .notices import Notice, NoticeWriter
from .offload import offload
from .reply_pool import ReplyPool
from .reply_relay import ReplyRelay
from .store import STORE_ERRORS, Store
from .store_retry import StoreBackoff
from .waits import wait_until_set

log = structlog.get_logger("bin_gateway.processor")

IDLE_POLL = 5.0
BATCH = 20  # inbound rows taken at a time; also how many replies are handled at once
# Bytes of mail in the replies handled side by side: each is parsed, rebuilt and signed
# several times over in memory, so twenty of the largest size would take gigabytes.
# Typical replies (5-20 KB) never reach it; with none running, the next is taken whatever
# its size.
IN_FLIGHT_BYTES = 32 * 1024 * 1024
_SIDE_BY_SIDE = (RouteKind.REPLY, RouteKind.ANSWER)


class Processor(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, writer: NoticeWriter,
        wake_outbox: Callable[[], None], pool: ReplyPool | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._current = current
        self._store = store
        self._writer = writer
        self._wake_outbox = wake_outbox
        self.holding = Holding(current, store, writer)
        self.approval = Approval(current, store, writer)
        self.replies = ReplyRelay(current, store, writer, pool)
        self.bounces = BounceHandling(current, store, writer)
        self.membership = Membership(current, store, writer, links)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Work until cancelled."""
        backoff = StoreBackoff("processor")
        while True:
            self._wake.clear()
            try:
                await self.process_pending()
            except STORE_ERRORS as exc:
                await backoff.failed(exc)  # the rows stay 'received': nothing is lost
                continue
            backoff.succeeded()
            await wait_until_set(self._wake, IDLE_POLL)

    async def process_pending(self) -> int:
        """Handle received rows until none is left; returns how many.

        Member replies are independent of each other and mostly CPU in the worker process
        (anonymise, sign): up to ``BATCH`` run side by side, and the next starts as soon as
        one finishes (waiting for a whole batch left the worker idle while the slowest
        reply of each batch finished), as long as they hold at most ``IN_FLIGHT_BYTES``
        of mail together. Everything else keeps arrival order, one at a time (a decision
        after its held item).
        """
        done = 0
        running: dict[int, asyncio.Task[None]] = {}
        sizes: dict[int, int] = {}  # bytes of mail of each running reply
        try:
            while True:
                room = BATCH - len(running)
                budget = IN_FLIGHT_BYTES - sum(sizes.values())
                batch = (await self._store.pending_inbound(
                            limit=room, skip=running, max_bytes=budget)
                         if room and budget > 0 else [])  # fmt: skip
                for item in batch:
                    if item.route in _SIDE_BY_SIDE:
                        running[item.id] = asyncio.create_task(self._process_one(item))
                        sizes[item.id] = len(item.raw)
                    else:
                        await self._process_one(item)
                        done += 1
                if batch:
                    self._wake_outbox()
                    continue
                if not running:
                    return done
                finished, _ = await asyncio.wait(
                    running.values(), return_when=asyncio.FIRST_COMPLETED)
                for item_id in [i for i, task in running.items() if task in finished]:
                    sizes.pop(item_id)
                    running.pop(item_id).result()  # _process_one keeps its failures
                    done += 1
                self._wake_outbox()
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _process_one(self, item: Inbound) -> None:
        handlers: dict[RouteKind, Callable[[Inbound], Awaitable[None]]] = {
            RouteKind.POST: self._post,
            RouteKind.MODERATION: self.approval.handle_reply,
            RouteKind.REPLY: self.replies.member_reply,
            RouteKind.ANSWER: self.replies.answer,
            RouteKind.BOUNCE: self.bounces.handle,
            RouteKind.JOIN: self.membership.join,
            RouteKind.CONFIRM: self.membership.confirm,
            RouteKind.LEAVE: self.membership.leave,
            RouteKind.POSTMASTER: self._postmaster,
        }
        try:
            handler = handlers.get(item.route)
            if handler is None:
                await self._finish(item, InboundState.FAILED, f"no handler for {item.route}")
            else:
                await handler(item)
        except STORE_ERRORS:
            raise  # the database's trouble, not the message's: tried again (run)
        except Exception as exc:
            # Kept, not lost: the row stays in the store, marked, for the admin to see.
            log.exception("inbound.failed", inbound_id=item.id, route=item.route.value)
            await self._finish(item, InboundState.FAILED, repr(exc)[:500])

    async def _post(self, item: Inbound) -> None:
        posts = item.facts.get("posts", {})
        assert isinstance(posts, dict)
        held = [list_id for list_id, role in posts.items() if role == "agency"]
        direct = [list_id for list_id, role in posts.items() if role == "coordinator"]
        if direct:
            await self._publish_direct(item, direct)
        if held:
            await self.holding.hold(item, held)
        else:
            await self._finish(item, InboundState.PROCESSED)

    async def _publish_direct(self, item: Inbound, list_ids: list[str]) -> None:
        """A coordinator's own post: no holding; the coordinator is told it went out."""
        subject = await offload(len(item.raw), subject_in, item.raw)
        name = str(item.facts.get("author_name", "")) or item.author
        async with self._store.transaction() as db:
            for list_id in list_ids:
                lst = self._config.list_by_id(list_id)
                if lst is None or await Store.bulletin_exists(db, item.id, list_id):
                    continue
                bulletin_id, count = await Store.create_bulletin(
                    db, list_id=list_id, inbound_id=item.id, submission_id=None,
                    sender_name=name, origin=item.author, note="", subject=subject,
                )
                notice = Notice(
                    to=item.author, text="post_confirmed",
                    language=lst.language,
                    fields={"subject": subject, "list_name": lst.name, "member_count": count},
                    from_name=lst.name, from_local="postmaster",
                )
                await self._writer.queue(db, notice, kind="confirmation",
                                         source_key=f"post-confirmed:{bulletin_id}")
                log.info("bulletin.published", bulletin_id=bulletin_id, list_id=list_id,
                         members=count, origin="coordinator")

    async def _postmaster(self, item: Inbound) -> None:
        """RFC 2142: postmaster@ and abuse@ reach the admin, the original attached."""
        subject = await offload(len(item.raw), subject_in, item.raw)
        language = self._config.gateway.language
        forward = Notice(
            to=self._config.gateway.admin, text="postmaster_forward", language=language,
            fields={"address": f"{item.target}@{self._config.gateway.domain}",
                    "mail_from": item.mail_from or "<>", "subject": subject},
            from_name="bin-gateway", from_local="postmaster",
            attachment=item.raw,
        )
        # It attaches the original: built before the transaction, off the loop when big.
        [built] = await self._writer.build_ahead([forward])
        async with self._store.transaction() as db:
            await self._writer.queue(db, built, kind="postmaster",
                                     source_key=f"postmaster:{item.id}")
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info("postmaster.forwarded", inbound_id=item.id)

    async def _finish(self, item: Inbound, state: InboundState, error: str = "") -> None:
        async with self._store.transaction() as db:
            await Store.finish_inbound(db, item.id, state, error)
