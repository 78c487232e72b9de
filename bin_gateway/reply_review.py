"""Member replies held for a coordinator's OK (``review_replies``, or over the hourly limit).

A held reply is a submission row with ``reply_id`` set: the same tokens, reminder,
expiry and approval by reply as agency mail. The coordinator is shown the reply as it
would be relayed (the anonymised entity), never the member's original: a coordinator
is a neighbour too, and the promise of anonymity holds towards them as well.
"""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser

import aiosqlite

from .config import Config, MailingList
from .mailtext import best_text
from .models import Submission
from .notices import Notice, NoticeWriter, local_time
from .offload import offload
from .store import Store
from .tokens import MODERATION_PREFIX, new_moderation_token, token_address, token_hash

REVIEW = "review"  # the list has review_replies = true
RATE = "rate"  # the member went over replies_per_hour

# Why the coordinator is asked; why the member waits.
WHY_COORDINATOR = {
    "nl": {
        REVIEW: "Bij deze lijst bekijkt een coördinator elke reactie voordat die wordt"
                " doorgestuurd.",
        RATE: "Dit lid stuurde het afgelopen uur al $limit reacties of meer; verdere reacties"
              " houden we vast tot een coördinator beslist.",
    },
    "en": {
        REVIEW: "On this list a coordinator checks every reply before it is passed on.",
        RATE: "This member sent $limit replies or more in the past hour; further replies are"
              " held until a coordinator decides.",
    },
}
WHY_MEMBER = {
    "nl": {
        REVIEW: "Bij $list_name bekijkt een coördinator elke reactie voordat die wordt"
                " doorgestuurd.",
        RATE: "U heeft het afgelopen uur al veel reacties gestuurd. Daarom bekijkt een"
              " coördinator deze reactie eerst.",
    },
    "en": {
        REVIEW: "On $list_name a coordinator checks every reply before it is passed on.",
        RATE: "You have sent many replies in the past hour, so a coordinator will check this"
              " one first.",
    },
}
_MAX_SHOWN = 20_000  # characters of the reply shown in the request


def why(table: dict[str, dict[str, str]], language: str, reason: str, lst: MailingList) -> str:
    text = table.get(language, table["en"])[reason]
    return text.replace("$limit", str(lst.replies_per_hour)).replace("$list_name", lst.name)


async def hold_reply(
    db: aiosqlite.Connection, config: Config, writer: NoticeWriter, *, inbound_id: int,
    lst: MailingList, subject: str, reply_id: int, details: dict[str, str], entity: bytes,
) -> int | None:
    """Hold the reply and ask the list's coordinators; None if it was held before."""
    token = new_moderation_token()
    moderation = config.moderation
    now = time.time()
    submission_id = await Store.create_submission(
        db, inbound_id=inbound_id, list_id=lst.id, agency_id="", sender="", subject=subject,
        token_hash=token_hash(token), expires_at=now + moderation.expire_after.total_seconds(),
        remind_at=now + moderation.remind_after.total_seconds(), reply_id=reply_id,
    )
    if submission_id is None:
        return None
    held = await Store.submission_in(db, submission_id)
    # The entity may carry photos of megabytes: parsed in a worker thread when big.
    requests = await offload(len(entity), review_notices, config, lst, held, token, details,
                             entity, text="reply_review_request")
    for notice in requests:
        await writer.queue(db, notice, kind="moderation_request",
                           source_key=f"reply-review:{submission_id}")
    return submission_id


def review_notices(
    config: Config, lst: MailingList, held: Submission, token: str, details: dict[str, str],
    entity: bytes, *, text: str,
) -> list[Notice]:
    """The request (or reminder) to each coordinator; ``details`` as stored with the reply:
    ``pseudonym``, ``recipients`` and ``held_because``. CPU in proportion to ``entity``
    (it is parsed): through ``offload``."""
    language = lst.language
    message = BytesParser(policy=policy.default).parsebytes(entity)
    fields: dict[str, object] = {
        "pseudonym": details.get("pseudonym", "?"),
        "recipients": details.get("recipients", "?"),
        "why": why(WHY_COORDINATOR, language, details.get("held_because", REVIEW), lst),
        "subject": held.subject, "list_name": lst.name,
        "expires": local_time(held.expires_at, language),
        "reply_text": best_text(message)[:_MAX_SHOWN],
    }
    return [
        Notice(
            to=coordinator, text=text, language=language, fields=fields,
            from_name=f"{lst.name} moderatie", from_local=f"{MODERATION_PREFIX}+{token}",
            reply_to=(token_address(MODERATION_PREFIX, token, config.gateway.domain),),
        )
        for coordinator in lst.coordinators
    ]
