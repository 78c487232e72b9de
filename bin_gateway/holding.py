"""F1: agency mail held for approval, one item per list; reminders and expiry.

Everything for one inbound message (the held items, the moderation mails, the inbound
row marked processed) commits in one transaction, so a crash either did all or none.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import structlog

from .auth.author import ADDRESS_IN_NAME, MIXED_SCRIPTS
from .config import CurrentConfig, FollowsConfig, MailingList
from .header_block import header_block
from .mailtext import best_text
from .membership import join_review_notices, own_words
from .models import Inbound, InboundState, ReplyState, Submission, SubmissionState
from .notices import DECISION_WORDS, Built, Notice, NoticeWriter, local_time
from .offload import offload
from .render_headers import one_line
from .reply_review import review_notices
from .store import Store
from .tokens import MODERATION_PREFIX, new_moderation_token, token_address, token_hash

log = structlog.get_logger("bin_gateway.holding")

_MAX_QUOTED_TEXT = 20_000  # characters of the original shown inline; the .eml has it all


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def parse_headers(raw: bytes) -> EmailMessage:
    """The header block only: cheap whatever the body holds (for the Subject and such)."""
    message = BytesParser(policy=policy.default).parsebytes(header_block(raw), headersonly=True)
    assert isinstance(message, EmailMessage)
    return message


def subject_in(raw: bytes) -> str:
    """The Subject of ``raw`` as a moderation mail or notice shows it. CPU in proportion
    to the header block (up to 256 KB, mime_limits): through ``offload``."""
    return subject_of(parse_headers(raw))


def subject_of(message: EmailMessage) -> str:
    try:
        return one_line(str(message.get("Subject", "")))[:200] or "(geen onderwerp)"
    except (ValueError, TypeError, LookupError):
        return "(geen onderwerp)"


@dataclass(frozen=True, slots=True)
class Summary:
    """What a moderation mail shows of the original, read once per inbound message."""

    subject: str
    attachments: str
    original_text: str


def summarise(raw: bytes) -> Summary:
    """CPU work (a 1 MB HTML part or a thousand MIME parts cost seconds): call it through
    ``asyncio.to_thread``, never on the event loop, where it would stall every SMTP
    session while it runs."""
    message = parse(raw)
    return Summary(subject_of(message), attachment_names(message),
                   best_text(message)[:_MAX_QUOTED_TEXT])


def attachment_names(message: EmailMessage) -> str:
    try:
        names = [part.get_filename() or part.get_content_type()
                 for part in message.iter_attachments()]
    except (ValueError, TypeError, LookupError, AttributeError):
        names = []
    return ", ".join(one_line(str(n)) for n in names) or "-"


# Shown above the decision instructions when the sender's name looks like someone else
# (the real address is always shown next to the name; security notes §3).
_SENDER_WARNINGS = {
    ADDRESS_IN_NAME: {
        "nl": "LET OP: de naam van de afzender bevat een ander e-mailadres dan het adres\n"
              "waar het bericht echt vandaan komt ({sender}). Kijk goed of het bericht\n"
              "echt van {agency} is voordat je OK antwoordt.",
        "en": "NOTE: the sender's name holds an e-mail address other than the one the\n"
              "message really comes from ({sender}). Check that it really is from\n"
              "{agency} before you answer OK.",
    },
    MIXED_SCRIPTS: {
        "nl": "LET OP: de naam van de afzender mengt letters uit verschillende schriften\n"
              "(bijvoorbeeld Latijnse en Cyrillische). Zo kan een naam op een andere\n"
              "lijken. Het echte adres is {sender}.",
        "en": "NOTE: the sender's name mixes letters from different scripts (Latin and\n"
              "Cyrillic, say), which can make one name look like another. The real\n"
              "address is {sender}.",
    },
}


def sender_warnings(flags: object, language: str, sender: str, agency: str) -> str:
    """The warnings for a held message's sender, as a paragraph ("" when there are none)."""
    texts = [
        _SENDER_WARNINGS[flag].get(language, _SENDER_WARNINGS[flag]["en"])
        .format(sender=sender, agency=agency)
        for flag in (flags if isinstance(flags, list) else [])
        if flag in _SENDER_WARNINGS
    ]
    return "".join(f"\n{text}\n" for text in texts)


class Holding(FollowsConfig):
    def __init__(self, current: CurrentConfig, store: Store, writer: NoticeWriter) -> None:
        self._current = current
        self._store = store
        self._writer = writer

    async def hold(self, item: Inbound, list_ids: list[str]) -> list[int]:
        """Create the held items and ask each list's coordinators; returns submission ids."""
        summary = await asyncio.to_thread(summarise, item.raw)
        subject = summary.subject
        agency_id = str(item.facts.get("agency", ""))
        moderation = self._config.moderation
        now = time.time()
        expires_at = now + moderation.expire_after.total_seconds()
        counts = {i: await self._store.active_member_count(i) for i in list_ids}
        # Each request attaches the original, up to max_message_size: built and signed
        # before the transaction (notices.py: in a worker thread when it is big).
        planned: list[tuple[str, str, list[Built]]] = []
        for list_id in list_ids:
            lst = self._config.list_by_id(list_id)
            if lst is None:
                continue  # the list left the config since the mail arrived
            token = new_moderation_token()
            requests = self.requests(
                lst, summary, item, counts[list_id], token, agency_id=agency_id,
                sender=item.author, subject=subject, expires_at=expires_at)
            planned.append((list_id, token, await self._writer.build_ahead(requests)))
        created: list[int] = []
        async with self._store.transaction() as db:
            for list_id, token, built in planned:
                submission_id = await Store.create_submission(
                    db, inbound_id=item.id, list_id=list_id, agency_id=agency_id,
                    sender=item.author, subject=subject, token_hash=token_hash(token),
                    expires_at=expires_at,
                    remind_at=now + moderation.remind_after.total_seconds(),
                )
                if submission_id is None:
                    continue
                created.append(submission_id)
                for request in built:
                    await self._writer.queue(
                        db, request, kind="moderation_request",
                        source_key=f"moderation-request:{submission_id}",
                    )
            await Store.finish_inbound(db, item.id, InboundState.PROCESSED)
        for submission_id in created:
            log.info("held.created", submission_id=submission_id, inbound_id=item.id)
        return created

    def requests(
        self, lst: MailingList, summary: Summary, item: Inbound, member_count: int, token: str,
        *, agency_id: str, sender: str, subject: str, expires_at: float,
        text: str = "moderation_request",
    ) -> list[Notice]:
        """The request (or reminder) to each coordinator of ``lst`` about the held item
        (its ``agency_id``, ``sender``, ``subject`` and ``expires_at``)."""
        language = lst.language
        agency = next((a for a in self._config.agencies if a.id == agency_id), None)
        agency_name = agency.name if agency else sender
        fields: dict[str, object] = {
            "agency_name": agency_name, "sender_address": sender,
            "subject": subject, "list_name": lst.name, "member_count": member_count,
            "expires": local_time(expires_at, language),
            "attachments": summary.attachments,
            "original_text": summary.original_text,
            "warnings": sender_warnings(item.facts.get("author_flags"), language,
                                        sender, agency_name),
        }
        return [
            Notice(
                to=coordinator, text=text, language=language, fields=fields,
                from_name=f"{lst.name} moderatie", from_local=f"{MODERATION_PREFIX}+{token}",
                reply_to=(token_address(MODERATION_PREFIX, token, self._config.gateway.domain),),
                attachment=item.raw,
            )
            for coordinator in lst.coordinators
        ]

    async def remind(self, held: Submission) -> None:
        """Send the 24-hour reminder (a fresh token: the request's stays valid too)."""
        lst = self._config.list_by_id(held.list_id)
        item = await self._store.inbound(held.inbound_id)
        if lst is None or item is None:
            return
        token = new_moderation_token()
        if held.reply_id is not None:
            notices = await self._reply_reminders(held, lst, token)
        elif held.join_id is not None:
            words = await asyncio.to_thread(own_words, item.raw)
            notices = join_review_notices(self._config, lst, held, token, words,
                                          text="join_review_reminder")
        else:
            count = await self._store.active_member_count(held.list_id)
            summary = await asyncio.to_thread(summarise, item.raw)
            notices = self.requests(
                lst, summary, item, count, token, agency_id=held.agency_id,
                sender=held.sender, subject=held.subject, expires_at=held.expires_at,
                text="moderation_reminder")
        built = await self._writer.build_ahead(notices)  # they may attach the original
        async with self._store.transaction() as db:
            if not await Store.mark_reminded(db, held.id):
                return
            await Store.add_token(db, held.id, token_hash(token))
            for reminder in built:
                await self._writer.queue(db, reminder, kind="moderation_reminder",
                                         source_key=f"moderation-reminder:{held.id}")
        log.info("held.reminded", submission_id=held.id)

    async def _reply_reminders(
        self, held: Submission, lst: MailingList, token: str
    ) -> list[Notice]:
        assert held.reply_id is not None
        record = await self._store.reply_record(held.reply_id)
        if record is None:
            return []
        _, _, report, entity = record
        if entity is None:
            return []
        details = {k: str(v) for k, v in report.items() if isinstance(v, str)}
        return await offload(len(entity), review_notices, self._config, lst, held, token,
                             details, entity, text="reply_review_reminder")

    async def expire(self, held: Submission) -> None:
        lst = self._config.list_by_id(held.list_id)
        language = lst.language if lst else self._config.gateway.language
        async with self._store.transaction() as db:
            changed = await Store.decide_submission(
                db, held.id, SubmissionState.EXPIRED, decided_by="",
                reason=DECISION_WORDS[language]["expired"],
            )
            if not changed:
                return
            if held.reply_id is not None:
                # A held member reply: nobody to tell but the log; it is simply not relayed.
                await Store.set_reply_state(db, held.reply_id, ReplyState.REJECTED)
                log.info("held.expired", submission_id=held.id, reply_id=held.reply_id)
                return
            if held.join_id is not None:
                # Nobody decided: the person was told it waits; they may ask again.
                log.info("held.expired", submission_id=held.id, join_id=held.join_id)
                return
            days = round(self._config.moderation.expire_after.total_seconds() / 86400, 1)
            notice = Notice(
                to=held.sender, text="outcome_expired", language=language,
                fields={"subject": held.subject, "list_name": lst.name if lst else held.list_id,
                        "days": f"{days:g}"},
                from_name=lst.name if lst else "BIN", from_local="postmaster",
                reply_to=lst.coordinators if lst else (),
            )
            await self._writer.queue(db, notice, kind="outcome",
                                     source_key=f"outcome-expired:{held.id}")
        log.info("held.expired", submission_id=held.id)
