"""F4: member replies relayed anonymised, and the answers relayed back to the member.

A *thread* is one member x one bulletin, with a pseudonym ("Bewoner K7Q2") and two
addresses: the member writes to ``reactie+<member_token>@`` (the reply address of their
bulletin copy), the agency or coordinator answers ``reactie+<token>@``. Neither side
ever sees the other's address: every message is rebuilt by :func:`anonymise` and sent
with our headers (:mod:`relay_message`).

Everything one reply causes (thread, reply row, relayed copies or the held item, the
member's acknowledgement, the inbound row marked processed) commits in one transaction.
Logs name member, thread and reply ids, never an address or a name.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict

import aiosqlite
import structlog

from .anonymise import Identity, Policy, Report, anonymise
from .config import CurrentConfig, FollowsConfig, MailingList, Pseudonyms
from .models import Bulletin, Inbound, InboundState, Member, ReplyState, ReplyThread
from .notices import Notice, NoticeWriter
from .offload import offload
from .relay_message import RelayHeaders, relay_message
from .reply_build import (
    COORDINATOR,
    Conversation,
    ReplyJob,
    member_notice,
    recipients_phrase,
    relay_for,
    targets,
)
from .reply_pool import ReplyPool
from .reply_review import RATE, REVIEW, hold_reply
from .store import OwnMessage, Store, now
from .tokens import REPLY_PREFIX, new_delivery_token

log = structlog.get_logger("bin_gateway.reply_relay")

# Four characters from an alphabet without look-alikes (no 0/O, 1/I, 2/Z, 5/S, 8/B):
# 26^4 ~ 457,000 names, random, so nothing about the member can be derived from one.
PSEUDONYM_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY34679"
HOUR = 3600.0
OTHER_MEMBER_NOTE = {
    "nl": "[Deze bewoner antwoordde via het antwoordadres van een buurtgenoot op de lijst.]",
    "en": "[This resident replied through the reply address of another member of the list.]",
}


def new_pseudonym() -> str:
    return "".join(secrets.choice(PSEUDONYM_ALPHABET) for _ in range(4))


class ReplyRelay(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, writer: NoticeWriter,
        pool: ReplyPool | None = None,
    ) -> None:
        self._current = current
        self._store = store
        self._writer = writer
        self._pool = pool or ReplyPool(current.config, writer, workers=0)
        self._domain = current.config.gateway.domain

    # -- member -> agency ----------------------------------------------------------------

    async def member_reply(self, item: Inbound) -> None:
        key = item.facts.get("thread")
        assert isinstance(key, dict), "the require_member stage stores the thread key"
        bulletin = await self._store.bulletin(int(key["bulletin_id"]))
        member = await self._store.member(int(key["member_id"]))
        lst = self._config.list_by_id(bulletin.list_id) if bulletin else None
        if bulletin is None or member is None or lst is None:
            await self._finish(item, "bulletin, member or list is gone")
            return
        identity = Identity(
            addresses=_unique(member.email, item.author),
            names=_unique(member.name, str(item.facts.get("author_name", ""))),
        )
        # Someone else of the list used this member's reply address (a partner, a
        # forwarded bulletin): relayed in their own thread, and said so.
        note = OTHER_MEMBER_NOTE.get(lst.language, "") if "for_member" in item.facts else ""
        policy = Policy(redact_contact_details=lst.redact_contact_details,
                        language=lst.language, note=note)
        talk = await self._open_conversation(lst, bulletin, member.id)
        details = {"pseudonym": talk.resident, "recipients": recipients_phrase(talk),
                   "held_because": ""}
        # Anonymised, and the usual outcome (relayed, acknowledged) built and signed, before
        # taking the write lock and off the event loop (reply_pool.py).
        prepared = await self._pool.prepare(
            ReplyJob(item.raw, identity, policy, talk, member, details))
        entity, report = prepared.entity, prepared.report
        async with self._store.transaction() as db:
            state, details["held_because"] = await self._choose(db, talk, member, report)
            reply_id = await Store.add_reply(
                db, inbound_id=item.id, thread_id=talk.thread.id, direction="member",
                state=state, report={**asdict(report), **details},
                relay=entity if state is ReplyState.HELD else None,
            )
            if state is ReplyState.RELAYED:
                await Store.enqueue_messages(db, [
                    OwnMessage(kind, f"{kind}:{item.id}:{to.lower()}", (to,), message)
                    for kind, to, message in prepared.messages
                ])
            else:
                if state is ReplyState.HELD:
                    await hold_reply(
                        db, self._config, self._writer, inbound_id=item.id, lst=lst,
                        subject=bulletin.subject, reply_id=reply_id, details=details,
                        entity=entity,
                    )
                await self._tell_member(db, talk, member, state, report, details, item.id)
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info(f"reply.{state.value}", reply_id=reply_id, thread_id=talk.thread.id,
                 member_id=member.id, bulletin_id=bulletin.id,
                 held_because=details["held_because"],
                 redacted=report.identity_redacted + report.addresses_redacted
                 + report.phones_redacted, images=report.images_kept,
                 dropped=len(report.dropped))

    async def release(self, db: aiosqlite.Connection, reply_id: int) -> bool:
        """A coordinator approved a held reply: relay it now (inside their transaction)."""
        held = await Store.held_reply_in(db, reply_id)
        if held is None:
            return False
        thread_id, entity = held
        thread = await self._store.thread(thread_id)
        bulletin = await self._store.bulletin(thread.bulletin_id) if thread else None
        lst = self._config.list_by_id(bulletin.list_id) if bulletin else None
        if thread is None or bulletin is None or lst is None:
            return False
        talk = Conversation(lst, bulletin, thread)
        await self._queue_relays(db, talk, entity, f"held-{reply_id}")
        await Store.set_reply_state(db, reply_id, ReplyState.RELAYED)
        return True

    async def _open_conversation(
        self, lst: MailingList, bulletin: Bulletin, member_id: int
    ) -> Conversation:
        """The member's thread on this bulletin, opened (committed) on their first reply."""
        thread = await self._store.thread_for(bulletin.id, member_id)
        if thread is None:
            async with self._store.transaction() as db:
                thread = await self._create_thread(db, lst, bulletin, member_id)
        return Conversation(lst, bulletin, thread)

    @staticmethod
    async def _create_thread(
        db: aiosqlite.Connection, lst: MailingList, bulletin: Bulletin, member_id: int
    ) -> ReplyThread:
        member_token = await Store.copy_token_in(db, bulletin.id, member_id)
        name = None
        if lst.pseudonyms is Pseudonyms.PER_LIST:
            name = await Store.list_pseudonym(db, lst.id, member_id)
        expires_at = bulletin.created_at + lst.reply_thread_lifetime.total_seconds()
        for _ in range(50):  # a pseudonym taken in this bulletin's threads: draw again
            thread = await Store.thread_in(db, bulletin.id, member_id)
            if thread is not None:  # opened by a reply processed alongside this one
                return thread
            await Store.create_thread(
                db, bulletin_id=bulletin.id, member_id=member_id, list_id=lst.id,
                pseudonym=name or new_pseudonym(), token=new_delivery_token(),
                member_token=member_token or new_delivery_token(), expires_at=expires_at,
            )
            name = None
        raise RuntimeError("no free pseudonym after fifty draws")

    async def _choose(
        self, db: aiosqlite.Connection, talk: Conversation, member: Member, report: Report
    ) -> tuple[ReplyState, str]:
        if report.encrypted:
            return ReplyState.UNREADABLE, ""
        if not report.own_text:
            return ReplyState.EMPTY, ""
        if talk.lst.review_replies:
            return ReplyState.HELD, REVIEW
        relayed = await Store.replies_relayed_since(db, talk.lst.id, member.id, now() - HOUR)
        if relayed >= talk.lst.replies_per_hour:
            return ReplyState.HELD, RATE
        return ReplyState.RELAYED, ""

    async def _queue_relays(
        self, db: aiosqlite.Connection, talk: Conversation, entity: bytes, key: str
    ) -> None:
        # Signing reads the whole entity (photos of megabytes): in a worker thread when big.
        await Store.enqueue_messages(db, [
            OwnMessage("relay", f"relay:{key}:{target.lower()}", (target,),
                       await offload(len(entity), relay_for, self._writer, talk, entity, target))
            for target in targets(talk)
        ])

    async def _tell_member(
        self, db: aiosqlite.Connection, talk: Conversation, member: Member, state: ReplyState,
        report: Report, details: dict[str, str], inbound_id: int,
    ) -> None:
        notice = member_notice(talk, member, state, report, details)
        if notice is not None:
            await self._writer.queue(db, notice, kind="reply_ack",
                                     source_key=f"reply_ack:{inbound_id}")

    # -- agency -> member ----------------------------------------------------------------

    async def answer(self, item: Inbound) -> None:
        """An agency's or coordinator's answer to a relayed reply, relayed to the member."""
        thread = await self._store.thread(int(item.target))
        member = await self._store.member(thread.member_id) if thread and thread.member_id else None
        bulletin = await self._store.bulletin(thread.bulletin_id) if thread else None
        lst = self._config.list_by_id(bulletin.list_id) if bulletin else None
        if thread is None or member is None or bulletin is None or lst is None:
            await self._finish(item, "thread, member or list is gone")
            return
        talk = Conversation(lst, bulletin, thread)
        # The staff member's own address and full name go the same way a member's do;
        # the agency's public contact details (a station's number) may stay, and so do
        # single words of the name ("Noord" of "Wijkagent Noord" names a neighbourhood).
        identity = Identity(addresses=(item.author,),
                            names=_unique(str(item.facts.get("author_name", ""))))
        policy = Policy(redact_contact_details=False, language=lst.language,
                        whole_names_only=True)
        entity, report = await asyncio.to_thread(anonymise, item.raw, identity, policy)
        state = (ReplyState.UNREADABLE if report.encrypted
                 else ReplyState.RELAYED if report.own_text else ReplyState.EMPTY)
        relay = b""
        if state is ReplyState.RELAYED:  # signed before the transaction, off the loop when big
            relay = await offload(len(entity), self._answer_relay, talk, member, entity, item)
        async with self._store.transaction() as db:
            reply_id = await Store.add_reply(
                db, inbound_id=item.id, thread_id=thread.id, direction="answer", state=state,
                report=asdict(report),
            )
            if state is ReplyState.RELAYED:
                await Store.set_answerer(db, thread.id, item.author)
                await Store.enqueue_message(
                    db, kind="answer", source_key=f"answer-relay:{reply_id}", envelope_from="",
                    recipients=[member.email], message=relay,
                )
            else:
                await self._tell_answerer(db, talk, item, state, reply_id)
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        log.info("reply.answered" if state is ReplyState.RELAYED else f"reply.answer_{state}",
                 reply_id=reply_id, thread_id=thread.id, member_id=member.id,
                 bulletin_id=bulletin.id)

    def _answer_relay(
        self, talk: Conversation, member: Member, entity: bytes, item: Inbound
    ) -> bytes:
        """The signed relay of an answer's anonymised ``entity`` to the member."""
        answer_as = item.facts.get("answer_as", {})
        agency_id = answer_as.get("agency") if isinstance(answer_as, dict) else None
        agency = next((a for a in self._config.agencies if a.id == agency_id), None)
        who = agency.name if agency else COORDINATOR.get(talk.language, COORDINATOR["en"])
        subject = f"Re: {talk.lst.subject_prefix} {talk.bulletin.subject}".replace("  ", " ")
        headers = RelayHeaders(
            from_name=f"{who} via {talk.lst.name}",
            from_local=f"{REPLY_PREFIX}+{talk.thread.member_token}", to=member.email,
            subject=subject, thread_id=talk.thread.id,
        )
        return self._writer.signer.sign_message(relay_message(entity, headers, self._domain))

    async def _tell_answerer(
        self, db: aiosqlite.Connection, talk: Conversation, item: Inbound, state: ReplyState,
        reply_id: int,
    ) -> None:
        """An empty or encrypted answer: the (authenticated) answerer hears why."""
        text = "reply_unreadable" if state is ReplyState.UNREADABLE else "reply_empty"
        notice = Notice(
            to=item.author, text=text, language=talk.language,
            fields={"subject": talk.bulletin.subject, "list_name": talk.lst.name},
            from_name=talk.lst.name, from_local="postmaster",
        )
        await self._writer.queue(db, notice, kind="answer", source_key=f"answer-ack:{reply_id}")

    async def _finish(self, item: Inbound, reason: str) -> None:
        async with self._store.transaction() as db:
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED, reason)
        log.info("reply.dropped", inbound_id=item.id, reason=reason)


def _unique(*values: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))
