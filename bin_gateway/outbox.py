"""Phase 3: the delivery worker. Claims due copies, builds and signs them, sends them.

The feeder claims a batch (state 'sending'), renders each member's copy from the
bulletin's template (built once per bulletin) and signs it in a worker thread, then
hands the copies to ``connections`` senders. Outcomes are written back in batches.
A crash leaves claimed rows 'sending'; at start they are queued again, so nobody is
skipped and only copies in flight at the crash can go out twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import structlog

from .config import CurrentConfig, FollowsConfig, MailingList
from .link_tokens import LinkSigner
from .models import Bulletin, Delivery, DeliveryState
from .render import BulletinSource, BulletinTemplate
from .signing import Signer
from .store import STORE_ERRORS, DeliveryOutcome, Store
from .store_retry import StoreBackoff
from .tokens import BOUNCE_PREFIX, REPLY_PREFIX, token_address
from .transport import SendResult, SendStatus, Transport
from .waits import wait_until_set

# A smarthost's reply often names the recipient ("550 5.1.1 <jan@...>: unknown"); the log
# keeps the delivery id instead, so a member's address never reaches it (SPEC §8).
_NO_ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")

UNSUBSCRIBE_VALID = 365 * 86400  # seconds a bulletin's one-click link keeps working

log = structlog.get_logger("bin_gateway.outbox")

BATCH = 200
# A copy the smarthost accepted but whose outcome is not yet written goes out again after
# a crash, so the time between outcome writes is what a crash can double (at 0.2 s it was
# 30-100 copies per kill mid fan-out). Writing each outcome at once cost the fan-out a
# quarter more CPU; 50 ms cost little.
FLUSH_GAP = 0.05  # seconds at least between two outcome writes while sending
FLUSH_EVERY = 1.0  # and at the latest, should a wake-up be missed
MAX_RETRY_WAIT = 7200.0
# A smarthost nobody answers at is paused for, not tried copy after copy (as Postfix
# suspends a dead destination): 1 s, doubling while it stays down, at most a minute.
FIRST_PAUSE = 1.0
MAX_PAUSE = 60.0
IDLE_POLL = 30.0
_TEMPLATES_KEPT = 8
_REPLY_TARGET_WORDS = {
    "nl": {"coordinators": "de coördinator", "and": " en "},
    "en": {"coordinators": "the coordinator", "and": " and "},
}


@dataclass(frozen=True, slots=True)
class Copy:
    delivery: Delivery
    envelope_from: str
    message: bytes


@dataclass(slots=True)
class _Prepared:
    template: BulletinTemplate
    body_hash: str
    bulletin: Bulletin


class Outbox(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, signer: Signer, transport: Transport,
        links: LinkSigner | None = None,
    ) -> None:
        self._current = current
        self._store = store
        self._signer = signer
        self._links = links
        self._transport = transport
        self._domain = current.config.gateway.domain
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._outcomes: list[DeliveryOutcome] = []
        self._reachable = asyncio.Event()  # cleared while paused for a dead smarthost
        self._reachable.set()
        self._pause = 0.0
        self._templates: OrderedDict[int, _Prepared | None] = OrderedDict()
        delivery = current.config.delivery  # the transport's settings: a restart changes them
        self._connections = delivery.connections if delivery.mode.value == "smtp" else 4

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; outcomes already known are written before exiting."""
        released = await self._store.release_claims()
        if released:
            log.info("delivery.resumed", copies=released)
        queue: asyncio.Queue[Copy] = asyncio.Queue(maxsize=BATCH)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._connections):
                    group.create_task(self._sender(queue))
                group.create_task(self._flusher())
                await self._feeder(queue)
        finally:
            await asyncio.shield(self._write_outcomes())

    async def _feeder(self, queue: asyncio.Queue[Copy]) -> None:
        backoff = StoreBackoff("outbox")
        while True:
            self._wake.clear()
            try:
                claimed = await self._store.claim_due(BATCH)
                copies = await self._prepare(claimed) if claimed else []
            except STORE_ERRORS as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            if not claimed:
                await self._idle()
                continue
            for copy in copies:
                await queue.put(copy)

    async def _idle(self) -> None:
        due = await self._store.next_due_at()
        wait = IDLE_POLL if due is None else min(IDLE_POLL, max(0.05, due - time.time()))
        await wait_until_set(self._wake, wait)

    async def _sender(self, queue: asyncio.Queue[Copy]) -> None:
        while True:
            copy = await queue.get()
            await self._reachable.wait()
            result = await self._transport.send(
                copy.envelope_from, copy.delivery.recipient, copy.message
            )
            self._note_reachability(result)
            self._outcomes.append(self._judge(copy.delivery, result))
            self._flush.set()
            _honour_cancellation()

    async def _flusher(self) -> None:
        backoff = StoreBackoff("outbox")
        while True:
            await wait_until_set(self._flush, FLUSH_EVERY)
            self._flush.clear()
            started = time.monotonic()
            try:
                await self._write_outcomes()  # kept in memory if the write fails
            except STORE_ERRORS as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            _honour_cancellation()
            await asyncio.sleep(max(0.0, FLUSH_GAP - (time.monotonic() - started)))

    async def _write_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        try:
            await self._store.record_outcomes(outcomes)
        except BaseException:
            # Cancelled (shutdown) or failed mid-write: keep them for the final write in
            # run(); recording an outcome twice is harmless, losing one resends a copy.
            self._outcomes[:0] = outcomes
            raise
        if any(o.state is DeliveryState.QUEUED for o in outcomes):
            self._wake.set()  # the feeder may be idling without knowing a retry is due
        for o in outcomes:
            event = {DeliveryState.SENT: "delivery.sent", DeliveryState.QUEUED:
                     "delivery.deferred"}.get(o.state, "delivery.failed")
            log.info(event, delivery_id=o.delivery_id, code=o.code,
                     reply=_NO_ADDRESS.sub("[address]", o.reply[:200]))

    def _note_reachability(self, result: SendResult) -> None:
        """Pause every sender while the smarthost takes no connections; the copies that
        wait were claimed and stay so (a restart releases them), with no attempt lost."""
        if not result.unreachable:
            if self._pause:
                log.info("smarthost.reachable")
                self._pause = 0.0
            return
        if not self._reachable.is_set():
            return  # another sender found it down first; already paused
        self._pause = min(MAX_PAUSE, self._pause * 2) if self._pause else FIRST_PAUSE
        self._reachable.clear()
        asyncio.get_running_loop().call_later(self._pause, self._reachable.set)
        log.warning("smarthost.unreachable", pause_seconds=self._pause, error=result.text)

    def _judge(self, delivery: Delivery, result: SendResult) -> DeliveryOutcome:
        if result.status is SendStatus.SENT:
            return DeliveryOutcome(delivery.id, DeliveryState.SENT, result.code, result.text)
        if result.status is SendStatus.PERMANENT:
            return DeliveryOutcome(delivery.id, DeliveryState.FAILED, result.code, result.text)
        now = time.time()
        give_up = self._config.delivery.give_up_after.total_seconds()
        if now - delivery.created_at >= give_up:
            text = f"gave up after {delivery.attempts} attempts: {result.text}"
            return DeliveryOutcome(delivery.id, DeliveryState.FAILED, result.code, text)
        first = self._config.delivery.retry_after.total_seconds()
        # attempts counts this one: retry_after after the first, then twice as long each time.
        wait = min(MAX_RETRY_WAIT, first * 2 ** max(0, delivery.attempts - 1))
        wait *= random.uniform(0.9, 1.1)  # spread retries of a whole list over time
        return DeliveryOutcome(delivery.id, DeliveryState.QUEUED, result.code, result.text,
                               next_attempt_at=now + wait)

    # --- building the copies ---------------------------------------------------------

    async def _prepare(self, claimed: list[Delivery]) -> list[Copy]:
        copies: list[Copy] = []
        to_build: list[tuple[Delivery, _Prepared]] = []
        for delivery in claimed:
            if delivery.outbound_id is not None:
                stored = await self._store.outbound_message(delivery.outbound_id)
                if stored is not None:
                    copies.append(Copy(delivery, self._bounce_address(delivery), stored[1]))
                    continue
            elif delivery.bulletin_id is not None:
                prepared = await self._template(delivery.bulletin_id)
                if prepared is not None:
                    to_build.append((delivery, prepared))
                    continue
            self._outcomes.append(DeliveryOutcome(
                delivery.id, DeliveryState.FAILED, 0, "its message is gone from the store"))
        if to_build:
            built, refused = await asyncio.to_thread(self._build_copies, to_build)
            copies += built
            self._outcomes += refused
        return copies

    def _build_copies(
        self, items: list[tuple[Delivery, _Prepared]]
    ) -> tuple[list[Copy], list[DeliveryOutcome]]:
        """CPU work, in a thread: fill the template and sign, per member."""
        copies: list[Copy] = []
        refused: list[DeliveryOutcome] = []
        for delivery, prepared in items:
            try:
                copies.append(self._build_copy(delivery, prepared))
            except ValueError as exc:  # an address unsafe to put in a header
                refused.append(DeliveryOutcome(delivery.id, DeliveryState.FAILED, 0, str(exc)))
        return copies, refused

    def _build_copy(self, delivery: Delivery, prepared: _Prepared) -> Copy:
        headers = prepared.template.headers_for(
            to=delivery.recipient,
            reply_to=token_address(REPLY_PREFIX, delivery.token, self._domain),
            message_id=f"<bulletin-{prepared.bulletin.id}-{delivery.id}@{self._domain}>",
            date=format_datetime(datetime.fromtimestamp(prepared.bulletin.created_at, UTC)),
            one_click_url=self._one_click_url(delivery, prepared.bulletin),
        )
        name, value = self._signer.sign(
            headers, prepared.body_hash, timestamp=int(prepared.bulletin.created_at)
        )
        head = f"{name}: {value}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
        message = head.encode("utf-8") + b"\r\n" + prepared.template.body
        return Copy(delivery, self._bounce_address(delivery), message)

    def _one_click_url(self, delivery: Delivery, bulletin: Bulletin) -> str | None:
        """RFC 8058 link, when [http] is on: signed, valid as long as the bulletin's thread
        (derived from the bulletin, so a re-rendered copy is byte-identical)."""
        http = self._config.http
        if http is None or self._links is None or delivery.member_id is None:
            return None
        expires = int(bulletin.created_at) + UNSUBSCRIBE_VALID
        return self._links.unsubscribe_url(http.public_url, delivery.member_id,
                                           bulletin.list_id, expires)

    def _bounce_address(self, delivery: Delivery) -> str:
        return token_address(BOUNCE_PREFIX, delivery.token, self._domain)

    async def _template(self, bulletin_id: int) -> _Prepared | None:
        if bulletin_id in self._templates:
            self._templates.move_to_end(bulletin_id)
            return self._templates[bulletin_id]
        prepared = await self._build_template(bulletin_id)
        self._templates[bulletin_id] = prepared
        while len(self._templates) > _TEMPLATES_KEPT:
            self._templates.popitem(last=False)
        return prepared

    async def _build_template(self, bulletin_id: int) -> _Prepared | None:
        bulletin = await self._store.bulletin(bulletin_id)
        item = await self._store.inbound(bulletin.inbound_id) if bulletin else None
        lst = self._config.list_by_id(bulletin.list_id) if bulletin else None
        if bulletin is None or item is None or lst is None:
            return None
        language = lst.language
        source = BulletinSource(
            original=item.raw, sender_name=bulletin.sender_name, list_id=lst.id,
            list_name=lst.name, domain=self._domain, subject_prefix=lst.subject_prefix,
            note=bulletin.note, language=language,
            replies_go_to=replies_go_to(lst, bulletin.sender_name, language),
        )
        template = await asyncio.to_thread(BulletinTemplate.build, source)
        body_hash = await asyncio.to_thread(self._signer.body_hash, template.body)
        return _Prepared(template, body_hash, bulletin)


def _honour_cancellation() -> None:
    """Re-raise a cancellation that an await swallowed.

    Python 3.11's ``asyncio.wait_for`` (used inside aiosmtplib) can lose a cancel that
    arrives as the awaited operation completes; the task then runs on, "cancelling", and
    its TaskGroup waits for it forever: a SIGTERM that never exits (seen in
    tests/test_crash.py). Checked once per loop turn, so shutdown always ends.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def replies_go_to(lst: MailingList, sender_name: str, language: str) -> str:
    words = _REPLY_TARGET_WORDS.get(language, _REPLY_TARGET_WORDS["en"])
    parts = [sender_name if t == "origin" else words["coordinators"] for t in lst.replies_to]
    return words["and"].join(dict.fromkeys(parts)) or words["coordinators"]
