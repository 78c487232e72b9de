"""The reply flow's outgoing mail, built without the store: pure, so it can run in a
worker process (reply_pool.py) while the gateway's event loop serves SMTP.

A :class:`ReplyJob` carries everything needed (the raw reply, whom to hide, the thread);
:func:`prepare` anonymises it and builds and signs the usual outcome: one relay per
target and the member's acknowledgement. The caller decides in its transaction whether
that outcome stands (it may hold the reply instead) and queues it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anonymise import Identity, Policy, Report, anonymise
from .config import MailingList
from .config.values import address_key
from .models import Bulletin, Member, ReplyState, ReplyThread
from .notices import Notice, NoticeWriter
from .relay_message import RelayHeaders, relay_message
from .reply_review import REVIEW, WHY_MEMBER, why
from .reply_texts import coordinators_phrase, removed_summary
from .tokens import REPLY_PREFIX

RESIDENT = {"nl": "Bewoner", "en": "Resident"}
COORDINATOR = {"nl": "Coördinator", "en": "Coordinator"}
SUBJECT = {"nl": "Reactie van {who} op: {subject}", "en": "Reply from {who} to: {subject}"}

@dataclass(frozen=True, slots=True)
class Conversation:
    """A thread with what it belongs to."""

    lst: MailingList
    bulletin: Bulletin
    thread: ReplyThread

    @property
    def language(self) -> str:
        return self.lst.language

    @property
    def resident(self) -> str:
        return f"{RESIDENT.get(self.language, RESIDENT['en'])} {self.thread.pseudonym}"


def targets(talk: Conversation) -> list[str]:
    """Who gets the member's reply: the list's replies_to, and whoever answered last."""
    found: list[str] = []
    if "origin" in talk.lst.replies_to and talk.bulletin.origin:
        found.append(talk.bulletin.origin)
    if "coordinators" in talk.lst.replies_to:
        found.extend(talk.lst.coordinators)
    if talk.thread.answerer:
        found.append(talk.thread.answerer)
    seen: set[str] = set()
    unique = []
    for address in found:
        key = address_key(address) or address.lower()
        if key not in seen:
            seen.add(key)
            unique.append(address)
    return unique


def recipients_phrase(talk: Conversation) -> str:
    """Who the reply goes to, as the member reads it."""
    parts: list[str] = []
    if "origin" in talk.lst.replies_to and talk.bulletin.origin:
        parts.append(talk.bulletin.sender_name)
    if "coordinators" in talk.lst.replies_to:
        parts.append(coordinators_phrase(talk.language, talk.lst))
    joiner = " en " if talk.language == "nl" else " and "
    return joiner.join(parts)


def relay_for(writer: NoticeWriter, talk: Conversation, entity: bytes, target: str) -> bytes:
    """The signed relay of ``entity`` to ``target``, from the thread's agency side."""
    template = SUBJECT.get(talk.language, SUBJECT["en"])
    headers = RelayHeaders(
        from_name=f"{talk.resident} ({talk.lst.name})",
        from_local=f"{REPLY_PREFIX}+{talk.thread.token}", to=target,
        subject=template.format(who=talk.resident, subject=talk.bulletin.subject),
        thread_id=talk.thread.id,
    )
    return writer.signer.sign_message(relay_message(entity, headers, writer.domain))


def member_notice(
    talk: Conversation, member: Member, state: ReplyState, report: Report,
    details: dict[str, str],
) -> Notice | None:
    """The acknowledgement; a reply that went nowhere is always explained."""
    told = state in (ReplyState.EMPTY, ReplyState.UNREADABLE) or talk.lst.acknowledge_replies
    if not told:
        return None
    text = {ReplyState.RELAYED: "reply_relayed", ReplyState.HELD: "reply_held",
            ReplyState.EMPTY: "reply_empty", ReplyState.UNREADABLE: "reply_unreadable"}[state]
    language = talk.language
    fields: dict[str, object] = {
        "subject": talk.bulletin.subject, "list_name": talk.lst.name,
        "recipients": details["recipients"], "pseudonym": talk.resident,
        "removed": removed_summary(report, language),
        "why": why(WHY_MEMBER, language, details["held_because"] or REVIEW, talk.lst),
    }
    return Notice(to=member.email, text=text, language=language, fields=fields,
                  from_name=talk.lst.name, from_local="postmaster")


@dataclass(frozen=True, slots=True)
class ReplyJob:
    raw: bytes
    identity: Identity
    policy: Policy
    talk: Conversation
    member: Member
    details: dict[str, str]  # pseudonym, recipients, held_because (for the texts)


@dataclass(frozen=True, slots=True)
class Prepared:
    entity: bytes  # the anonymised reply (MIME entity)
    report: Report
    messages: tuple[tuple[str, str, bytes], ...]  # (queue kind, recipient, signed message)


def prepare(job: ReplyJob, writer: NoticeWriter) -> Prepared:
    """Anonymise; if there is something to pass on, build and sign the relays and the ack."""
    entity, report = anonymise(job.raw, job.identity, job.policy)
    if not report.own_text or report.encrypted:
        return Prepared(entity, report, ())
    built = [("relay", target, relay_for(writer, job.talk, entity, target))
             for target in targets(job.talk)]
    notice = member_notice(job.talk, job.member, ReplyState.RELAYED, report, job.details)
    if notice is not None:
        built.append(("reply_ack", job.member.email, writer.build(notice)))
    return Prepared(entity, report, tuple(built))
