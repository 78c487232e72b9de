"""F2: a coordinator's decision (by reply or from the CLI) and what follows from it.

The first valid decision wins: ``decide_submission`` only moves a row that is still
held, inside the same transaction that publishes the bulletin and queues the notices.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiosqlite
import structlog

from .config import CurrentConfig, FollowsConfig, MailingList
from .decision import Decision, DecisionKind, read_decision
from .errors import GatewayError
from .holding import parse
from .membership import Membership
from .models import Inbound, InboundState, ReplyState, Submission, SubmissionState
from .notices import DECISION_WORDS, Notice, NoticeWriter, local_time
from .reply_relay import ReplyRelay
from .services import Services
from .store import Store

log = structlog.get_logger("bin_gateway.approval")


class DecisionRefused(GatewayError):
    """The admin's decision cannot be applied (unknown, expired or already decided item)."""


@dataclass(frozen=True, slots=True)
class Applied:
    decided: bool  # False: another decision came first
    bulletin_id: int | None = None
    member_count: int = 0


class Approval(FollowsConfig):
    def __init__(self, current: CurrentConfig, store: Store, writer: NoticeWriter) -> None:
        self._current = current
        self._store = store
        self._writer = writer
        self._replies = ReplyRelay(current, store, writer)
        self._membership = Membership(current, store, writer)

    async def handle_reply(self, item: Inbound) -> None:
        """A coordinator's authenticated reply to a moderation mail."""
        held = await self._store.submission(int(item.target))
        lst = self._config.list_by_id(held.list_id) if held else None
        if held is None or lst is None:
            await self._finish(item)
            return
        # In a worker thread: parsing and reading an HTML reply is CPU work that would
        # stall every SMTP session if it ran on the event loop.
        decision = await asyncio.to_thread(_decision_of, item.raw)
        coordinator = item.author
        if decision.kind is DecisionKind.UNCLEAR:
            await self._tell(item, lst, coordinator, "decision_unclear",
                             {"subject": held.subject, "list_name": lst.name,
                              "first_line": decision.first_line[:200] or "-"})
            log.info("held.reply_unclear", submission_id=held.id, inbound_id=item.id)
            return
        if held.state is SubmissionState.HELD and held.expires_at > time.time():
            applied = await self.apply(held, lst, decision, actor=coordinator, inbound=item)
            if applied.decided:
                return
            held = await self._store.submission(held.id) or held
        await self._tell(item, lst, coordinator, "already_decided", self._decided_fields(held, lst))

    async def apply(
        self, held: Submission, lst: MailingList, decision: Decision, *, actor: str,
        inbound: Inbound | None = None,
    ) -> Applied:
        """Record the decision, publish or refuse, tell the agency (and the decider)."""
        if held.reply_id is not None or held.join_id is not None:
            return await self._apply_to_held(held, lst, decision, actor=actor, inbound=inbound)
        approve = decision.kind is DecisionKind.APPROVE
        state = SubmissionState.APPROVED if approve else SubmissionState.REJECTED
        applied = Applied(decided=False)
        async with self._store.transaction() as db:
            if not await Store.decide_submission(
                db, held.id, state, decided_by=actor, reason=decision.reason, note=decision.note
            ):
                if inbound is not None:
                    await Store.finish_inbound(db, inbound.id, InboundState.PROCESSED)
                return applied
            await Store.audit(db, actor=actor, action=state.value, subject=f"submission:{held.id}",
                              detail=decision.reason or decision.note)
            if approve:
                bulletin_id, count = await Store.create_bulletin(
                    db, list_id=lst.id, inbound_id=held.inbound_id, submission_id=held.id,
                    sender_name=self._agency_name(held), origin=held.sender,
                    note=decision.note, subject=held.subject,
                )
                applied = Applied(True, bulletin_id, count)
            else:
                applied = Applied(True)
            await self._queue_outcomes(db, held, lst, decision, actor, applied, inbound)
            if inbound is not None:
                await Store.finish_inbound(db, inbound.id, InboundState.PROCESSED)
        log.info(f"held.{state.value}", submission_id=held.id, bulletin_id=applied.bulletin_id,
                 members=applied.member_count, by_cli=inbound is None)
        return applied

    async def _apply_to_held(
        self, held: Submission, lst: MailingList, decision: Decision, *, actor: str,
        inbound: Inbound | None,
    ) -> Applied:
        """A held member reply (relayed or not; nobody else is told: the member knows it
        waits for a check) or join request (the person hears the outcome)."""
        approve = decision.kind is DecisionKind.APPROVE
        state = SubmissionState.APPROVED if approve else SubmissionState.REJECTED
        kind = "reply" if held.reply_id is not None else "join"
        async with self._store.transaction() as db:
            decided = await Store.decide_submission(
                db, held.id, state, decided_by=actor, reason=decision.reason, note=decision.note
            )
            if decided:
                await Store.audit(db, actor=actor, action=f"{kind}_{state.value}",
                                  subject=f"submission:{held.id}", detail=decision.reason)
                if held.reply_id is None:
                    await self._membership.decide(db, held, lst, approve=approve,
                                                  reason=decision.reason)
                elif approve:
                    await self._replies.release(db, held.reply_id)
                else:
                    await Store.set_reply_state(db, held.reply_id, ReplyState.REJECTED)
                if inbound is not None:
                    notice = await self._held_confirmation(held, lst, actor, approve)
                    await self._writer.queue(db, notice, kind="confirmation",
                                             source_key=f"decision-confirmed:{held.id}")
            if inbound is not None:
                await Store.finish_inbound(db, inbound.id, InboundState.PROCESSED)
        if decided:
            log.info(f"held.{state.value}", submission_id=held.id, reply_id=held.reply_id,
                     join_id=held.join_id, by_cli=inbound is None)
        return Applied(decided=decided)

    async def _held_confirmation(
        self, held: Submission, lst: MailingList, actor: str, approve: bool
    ) -> Notice:
        """The decider's "done" for a held reply or join request."""
        decision = DECISION_WORDS[lst.language]["approved" if approve else "rejected"]
        fields: dict[str, object] = {"subject": held.subject, "list_name": lst.name,
                                     "who": held.subject, "decision": decision}
        text = "join_decision_confirmed"
        if held.reply_id is not None:
            record = await self._store.reply_record(held.reply_id)
            details = record[2] if record else {}
            fields |= {"pseudonym": details.get("pseudonym", "?"),
                       "recipients": details.get("recipients", "?")}
            text = "reply_decision_confirmed"
        return Notice(to=actor, text=text, language=lst.language, fields=fields,
                      from_name=f"{lst.name} moderatie", from_local="postmaster")

    async def decide_by_admin(
        self, submission_id: int, *, approve: bool, text: str, actor: str
    ) -> str:
        held = await self._store.submission(submission_id)
        if held is None:
            raise DecisionRefused(f"no held item with id {submission_id}")
        lst = self._config.list_by_id(held.list_id)
        if lst is None:
            raise DecisionRefused(f"list {held.list_id!r} is no longer in the configuration")
        if held.state is not SubmissionState.HELD:
            raise DecisionRefused(f"item {submission_id} was already {held.state.value}"
                                  f" by {held.decided_by or 'expiry'}")
        if held.expires_at <= time.time():
            raise DecisionRefused(f"item {submission_id} has expired")
        kind = DecisionKind.APPROVE if approve else DecisionKind.REJECT
        decision = Decision(kind, note=text if approve else "", reason="" if approve else text,
                            first_line="")
        applied = await self.apply(held, lst, decision, actor=actor)
        if not applied.decided:
            raise DecisionRefused(f"item {submission_id} was decided by someone else just now")
        if held.join_id is not None:
            if approve:
                return f"approved item {submission_id}: the person joined and is welcomed"
            return f"rejected item {submission_id}: the person is told the reason"
        if held.reply_id is not None:
            if approve:
                return f"approved item {submission_id}: the member's reply is passed on"
            return f"rejected item {submission_id}: the member's reply is not passed on"
        if approve:
            return (f"approved item {submission_id}: bulletin {applied.bulletin_id} queued for "
                    f"{applied.member_count} members of {lst.id}")
        return f"rejected item {submission_id}; the agency is told"

    def _agency_name(self, held: Submission) -> str:
        agency = next((a for a in self._config.agencies if a.id == held.agency_id), None)
        return agency.name if agency else held.sender

    async def _queue_outcomes(
        self, db: aiosqlite.Connection, held: Submission, lst: MailingList, decision: Decision,
        actor: str, applied: Applied, inbound: Inbound | None,
    ) -> None:
        language = lst.language
        approve = decision.kind is DecisionKind.APPROVE
        fields: dict[str, object] = {
            "subject": held.subject, "list_name": lst.name, "coordinator": actor,
            "member_count": applied.member_count,
            "reason": decision.reason or "-",
        }
        outcome = Notice(
            to=held.sender, text="outcome_approved" if approve else "outcome_rejected",
            language=language, fields=fields, from_name=lst.name, from_local="postmaster",
            reply_to=lst.coordinators,
        )
        await self._writer.queue(db, outcome, kind="outcome", source_key=f"outcome:{held.id}")
        if inbound is None:
            return
        word = DECISION_WORDS[language]["approved" if approve else "rejected"]
        confirmed = Notice(
            to=actor, text="decision_confirmed", language=language,
            fields={**fields, "decision": word}, from_name=f"{lst.name} moderatie",
            from_local="postmaster",
        )
        await self._writer.queue(db, confirmed, kind="confirmation",
                                 source_key=f"decision-confirmed:{held.id}")

    def _decided_fields(self, held: Submission, lst: MailingList) -> dict[str, object]:
        language = lst.language
        words = DECISION_WORDS[language]
        word = {SubmissionState.APPROVED: words["approved"],
                SubmissionState.REJECTED: words["rejected"]}.get(held.state, words["expired"])
        return {
            "subject": held.subject, "list_name": lst.name,
            "decided_by": held.decided_by or lst.name,
            "decided_at": local_time(held.decided_at or held.expires_at, language),
            "decision": word,
        }

    async def _tell(
        self, item: Inbound, lst: MailingList, to: str, text: str, fields: dict[str, object]
    ) -> None:
        notice = Notice(to=to, text=text, language=lst.language, fields=fields,
                        from_name=f"{lst.name} moderatie", from_local="postmaster")
        async with self._store.transaction() as db:
            await self._writer.queue(db, notice, kind="answer", source_key=f"answer:{item.id}")
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)

    async def _finish(self, item: Inbound) -> None:
        async with self._store.transaction() as db:
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)


async def decide_by_admin(
    services: Services, submission_id: int, *, approve: bool, text: str, actor: str
) -> str:
    """The CLI's entry: ``held approve|reject``; raises DecisionRefused with a reason."""
    writer = NoticeWriter(domain=services.config.gateway.domain, signer=services.signer)
    approval = Approval(CurrentConfig(services.config), services.store, writer)
    return await approval.decide_by_admin(submission_id, approve=approve, text=text, actor=actor)


def _decision_of(raw: bytes) -> Decision:
    return read_decision(parse(raw))
