"""F5: joining and leaving a list by mail.

* ``<list>+aanmelden@`` (or ``+subscribe``): on an open list the person gets one mail
  asking them to confirm by replying (double opt-in: a forged From can only make the
  real owner of the address receive that one question); a closed list answers how to
  reach the coordinator; an existing member is told so. At most a few questions per
  address per day, so the join address cannot be used to flood someone.
* ``aanmelding+<token>@``: the reply confirming a join, from the same address; the
  person becomes an active member and is welcomed, once.
* ``<list>+afmelden@`` (or ``+unsubscribe``, the List-Unsubscribe mailto): when the
  From is verified (aligned DKIM or SPF) the member is removed at once and told so,
  once. Otherwise anyone could remove anyone: the member is asked first, the way a
  join is (reply to ``aanmelding+<token>@``, or the one-click link when [http] is on),
  and stays a member without an answer. Someone who is not a member changes nothing
  and hears nothing.

``subscription = "approval"``: the request is a held item for the list's coordinators
instead (the same tokens, reminder, expiry and OK/NEE by reply as agency mail); the
person hears that it was received, and then the outcome.
"""

from __future__ import annotations

import asyncio
import time
from email import message_from_bytes
from email import policy as email_policy

import aiosqlite
import structlog

from .config import Config, CurrentConfig, FollowsConfig, MailingList, Subscription
from .link_tokens import LinkSigner
from .mailtext import best_text, split_own_text
from .models import Inbound, InboundState, Join, JoinState, Submission
from .notices import Notice, NoticeWriter, local_time
from .store import Store
from .tokens import (
    JOIN_PREFIX,
    MODERATION_PREFIX,
    is_moderation_token,
    new_moderation_token,
    token_address,
    token_hash,
)

log = structlog.get_logger("bin_gateway.membership")

JOIN_VALID = 7 * 86400.0  # how long a confirmation question can be answered
MAX_QUESTIONS_PER_DAY = 3  # per address and list: the join address is no mail cannon
LINK_LINE = {
    "nl": "Of open deze link en klik op de knop:\n{url}\n",
    "en": "Or open this link and press the button:\n{url}\n",
}
LEAVE_LINK_VALID = 30 * 86400  # the one-click link in a leave question


class Membership(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, writer: NoticeWriter,
        links: LinkSigner | None = None,
    ) -> None:
        self._current = current
        self._store = store
        self._writer = writer
        self._links = links  # for the one-click link in a leave question
        self._domain = current.config.gateway.domain

    async def join(self, item: Inbound) -> None:
        lst = self._config.list_by_id(item.target)
        if lst is None:
            await self._finish(item)
            return
        name = str(item.facts.get("author_name", ""))[:200]
        # Read before the transaction and off the event loop: a big HTML body costs
        # seconds of CPU, and anyone may write to the join address.
        words = "-"
        if lst.subscription is Subscription.APPROVAL:
            words = await asyncio.to_thread(own_words, item.raw)
        async with self._store.transaction() as db:
            outcome = await self._join_in(db, item, lst, name, words)
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info(f"join.{outcome}", list_id=lst.id, inbound_id=item.id)

    async def _join_in(
        self, db: aiosqlite.Connection, item: Inbound, lst: MailingList, name: str, words: str
    ) -> str:
        address = item.author
        fields: dict[str, object] = {"list_name": lst.name, "address": address,
                                     "coordinator": lst.coordinators[0]}
        if await Store.member_in(db, lst.id, address) is not None:
            await self._tell(db, lst, address, "join_already", fields, f"join-already:{item.id}")
            return "already_member"
        if lst.subscription is Subscription.CLOSED:
            await self._tell(db, lst, address, "join_closed", fields, f"join-closed:{item.id}")
            return "closed"
        asked = await Store.pending_joins_since(db, lst.id, address, time.time() - 86400)
        if asked >= MAX_QUESTIONS_PER_DAY:
            return "too_many"
        token = new_moderation_token()
        expires_at = time.time() + JOIN_VALID
        join_id = await Store.create_join(db, list_id=lst.id, email=address, name=name,
                                          token_hash=token_hash(token), expires_at=expires_at)
        if lst.subscription is Subscription.APPROVAL:
            await self._hold_join(db, item, lst, join_id, name, words)
            await self._tell(db, lst, address, "join_pending", fields, f"join-pending:{item.id}")
            return "held"
        reply_to = token_address(JOIN_PREFIX, token, self._domain)
        link = ""
        if self._config.http is not None:
            link = LINK_LINE.get(lst.language, LINK_LINE["en"]).format(
                url=f"{self._config.http.public_url}/j/{token}")
        notice = Notice(
            to=address, text="join_question", language=lst.language,
            fields={**fields, "expires": local_time(expires_at, lst.language), "link": link},
            from_name=lst.name, from_local=f"{JOIN_PREFIX}+{token}", reply_to=(reply_to,),
        )
        await self._writer.queue(db, notice, kind="join", source_key=f"join-question:{item.id}")
        return "asked"

    async def _hold_join(
        self, db: aiosqlite.Connection, item: Inbound, lst: MailingList, join_id: int, name: str,
        words: str,
    ) -> None:
        token = new_moderation_token()
        moderation = self._config.moderation
        now = time.time()
        submission_id = await Store.create_submission(
            db, inbound_id=item.id, list_id=lst.id, agency_id="", sender=item.author,
            subject=name or item.author, token_hash=token_hash(token),
            expires_at=now + moderation.expire_after.total_seconds(),
            remind_at=now + moderation.remind_after.total_seconds(), join_id=join_id,
        )
        if submission_id is None:
            return
        held = await Store.submission_in(db, submission_id)
        for notice in join_review_notices(self._config, lst, held, token, words,
                                          text="join_review_request"):
            await self._writer.queue(db, notice, kind="moderation_request",
                                     source_key=f"join-review:{submission_id}")

    async def decide(
        self, db: aiosqlite.Connection, held: Submission, lst: MailingList, *, approve: bool,
        reason: str,
    ) -> None:
        """A coordinator's decision on a held join (inside the approval's transaction)."""
        assert held.join_id is not None
        join = await self._store.join(held.join_id)
        if join is None:
            return
        fields: dict[str, object] = {"list_name": lst.name, "address": join.email,
                                     "coordinator": lst.coordinators[0], "reason": reason or "-"}
        if not approve:
            await self._tell(db, lst, join.email, "join_refused", fields,
                             f"join-refused:{join.id}")
            return
        if await Store.confirm_join(db, join.id) and (
                await Store.member_in(db, lst.id, join.email) is None):
            await Store.add_member_in(db, lst.id, join.email, join.name)
            await self._tell(db, lst, join.email, "join_welcome", fields,
                             f"join-welcome:{join.id}")

    async def confirm(self, item: Inbound) -> None:
        join = await self._store.join(int(item.target))
        if join is None:
            await self._finish(item)
            return
        await self._confirm(join, finish=item.id)

    async def confirm_by_link(self, token: str) -> str:
        """The confirmation link ([http]): "confirmed", "repeated" or "invalid"."""
        if not is_moderation_token(token):
            return "invalid"
        join = await self._store.join_by_token_hash(token_hash(token))
        if join is None or (join.state is JoinState.PENDING and join.expires_at < time.time()):
            return "invalid"
        if join.kind != "join":
            return "invalid"  # a leave question links to /u/, never here
        return await self._confirm(join, finish=None)

    async def _confirm(self, join: Join, *, finish: int | None) -> str:
        """Make the person a member and welcome them, once; later "yes"es change nothing.
        A confirmed leave question removes the member instead."""
        if join.kind == "leave":
            return await self._confirm_leave(join, finish=finish)
        lst = self._config.list_by_id(join.list_id)
        fields: dict[str, object] = {"list_name": lst.name if lst else join.list_id,
                                     "address": join.email,
                                     "coordinator": lst.coordinators[0] if lst else ""}
        outcome = "repeated"
        async with self._store.transaction() as db:
            confirmed = join.state is JoinState.PENDING and await Store.confirm_join(db, join.id)
            if (lst is not None and confirmed
                    and await Store.member_in(db, lst.id, join.email) is None):
                await Store.add_member_in(db, lst.id, join.email, join.name)
                await self._tell(db, lst, join.email, "join_welcome", fields,
                                 f"join-welcome:{join.id}")
                outcome = "confirmed"
            if finish is not None:
                await Store.finish_inbound(db, finish, InboundState.PROCESSED)
        log.info(f"join.{outcome}", list_id=join.list_id, join_id=join.id)
        return outcome

    async def leave(self, item: Inbound) -> None:
        lst = self._config.list_by_id(item.target)
        if lst is None:
            await self._finish(item)
            return
        # Stored before this key existed: such a leave was trusted then, and still is.
        verified = bool(item.facts.get("verified", True))
        async with self._store.transaction() as db:
            member_id = await Store.member_in(db, lst.id, item.author)
            if member_id is None:
                outcome = "not_a_member"
            elif verified:
                await Store.remove_member_in(db, member_id)
                await self._tell(db, lst, item.author, "leave_confirmed",
                                 self._leave_fields(lst, item.author), f"leave:{item.id}")
                outcome = "left"
            else:
                outcome = await self._ask_leave(db, item, lst, member_id)
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info("member.left" if outcome == "left" else f"leave.{outcome}",
                 list_id=lst.id, member_id=member_id)

    async def _ask_leave(
        self, db: aiosqlite.Connection, item: Inbound, lst: MailingList, member_id: int
    ) -> str:
        """An unverified leave: one question to the member's own address."""
        address = item.author
        asked = await Store.pending_joins_since(db, lst.id, address, time.time() - 86400)
        if asked >= MAX_QUESTIONS_PER_DAY:
            return "too_many"
        token = new_moderation_token()
        expires_at = time.time() + JOIN_VALID
        await Store.create_join(db, list_id=lst.id, email=address, name="",
                                token_hash=token_hash(token), expires_at=expires_at,
                                kind="leave")
        link = ""
        http = self._config.http
        if http is not None and self._links is not None:
            url = self._links.unsubscribe_url(http.public_url, member_id, lst.id,
                                              int(time.time()) + LEAVE_LINK_VALID)
            link = LINK_LINE.get(lst.language, LINK_LINE["en"]).format(url=url)
        notice = Notice(
            to=address, text="leave_question", language=lst.language,
            fields={"list_name": lst.name, "address": address, "link": link,
                    "expires": local_time(expires_at, lst.language)},
            from_name=lst.name, from_local=f"{JOIN_PREFIX}+{token}",
            reply_to=(token_address(JOIN_PREFIX, token, self._domain),),
        )
        await self._writer.queue(db, notice, kind="membership",
                                 source_key=f"leave-question:{item.id}")
        return "asked"

    def _leave_fields(self, lst: MailingList, address: str) -> dict[str, object]:
        return {"list_name": lst.name, "address": address,
                "join_address": f"{lst.id}+aanmelden@{self._domain}"}

    async def unsubscribe(self, member_id: int, list_id: str) -> bool:
        """One click (RFC 8058): remove the member, confirm by mail; False if already gone."""
        lst = self._config.list_by_id(list_id)
        member = await self._store.member(member_id)
        if lst is None or member is None or member.list_id != list_id:
            return False
        async with self._store.transaction() as db:
            if await Store.member_in(db, lst.id, member.email) != member_id:
                return False
            await Store.remove_member_in(db, member_id)
            await self._tell(db, lst, member.email, "leave_confirmed",
                             self._leave_fields(lst, member.email), f"leave-click:{member_id}")
        log.info("member.left", list_id=lst.id, member_id=member_id, by="one-click")
        return True

    async def _tell(
        self, db: aiosqlite.Connection, lst: MailingList, to: str, text: str,
        fields: dict[str, object], key: str,
    ) -> None:
        notice = Notice(to=to, text=text, language=lst.language, fields=fields,
                        from_name=lst.name, from_local="postmaster")
        await self._writer.queue(db, notice, kind="membership", source_key=key)

    async def _finish(self, item: Inbound) -> None:
        async with self._store.transaction() as db:
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED, "list is gone")


    async def _confirm_leave(self, join: Join, *, finish: int | None) -> str:
        lst = self._config.list_by_id(join.list_id)
        outcome = "repeated"
        async with self._store.transaction() as db:
            confirmed = join.state is JoinState.PENDING and await Store.confirm_join(db, join.id)
            member_id = await Store.member_in(db, join.list_id, join.email)
            if lst is not None and confirmed and member_id is not None:
                await Store.remove_member_in(db, member_id)
                await self._tell(db, lst, join.email, "leave_confirmed",
                                 self._leave_fields(lst, join.email), f"leave-confirmed:{join.id}")
                outcome = "left"
            if finish is not None:
                await Store.finish_inbound(db, finish, InboundState.PROCESSED)
        log.info("member.left" if outcome == "left" else f"leave.{outcome}",
                 list_id=join.list_id, join_id=join.id, by="confirmation")
        return outcome


def own_words(raw: bytes) -> str:
    """What the person wrote with their request, for the coordinator (quotes cut)."""
    try:
        text = split_own_text(best_text(message_from_bytes(raw, policy=email_policy.compat32)))
    except Exception:  # a request is never lost over an unreadable body
        return "-"
    return text.own[:2000] or "-"


def join_review_notices(
    config: Config, lst: MailingList, held: Submission, token: str, message: str, *, text: str
) -> list[Notice]:
    """The request (or reminder) to each coordinator to let someone join."""
    fields: dict[str, object] = {
        "who": held.subject, "address": held.sender, "list_name": lst.name,
        "expires": local_time(held.expires_at, lst.language), "message": message,
    }
    return [
        Notice(
            to=coordinator, text=text, language=lst.language, fields=fields,
            from_name=f"{lst.name} moderatie", from_local=f"{MODERATION_PREFIX}+{token}",
            reply_to=(token_address(MODERATION_PREFIX, token, config.gateway.domain),),
        )
        for coordinator in lst.coordinators
    ]
