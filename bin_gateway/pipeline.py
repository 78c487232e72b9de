"""The session pipeline: a message's facts, the verdict, and running a route's stages.

A stage looks at the :class:`Session` (the envelope, the parsed message, facts found by
earlier stages), may add a fact, and returns a :class:`Verdict`. ``CONTINUE`` hands on
to the next stage; any other outcome ends the run and becomes the SMTP reply.
Expected outcomes (a spoofer, a loop) are verdicts; faults (a broken disk) raise.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from typing import Any, TypeVar

from .auth.author import Author
from .offload import offload
from .replies import SmtpReply


class Outcome(StrEnum):
    CONTINUE = "continue"
    ACCEPT = "accept"  # store, then 250
    DISCARD = "discard"  # 250, store nothing (loops, auto-replies, replays)
    REJECT = "reject"  # 5xx
    DEFER = "defer"  # 4xx: try again later


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reply: SmtpReply | None = None  # what the peer sees: generic
    reason: str = ""  # what the log sees: specific


PROCEED = Verdict(Outcome.CONTINUE)


def reject(reply: SmtpReply, reason: str) -> Verdict:
    return Verdict(Outcome.REJECT, reply, reason)


def discard(reason: str) -> Verdict:
    return Verdict(Outcome.DISCARD, None, reason)


@dataclass(slots=True)
class Session:
    """One DATA transaction as the stages see it."""

    mail_from: str
    rcpt_tos: list[str]
    targets: list[str]  # the routes' targets (list ids, a submission id, ...)
    client_ip: str
    helo: str
    raw: bytes
    head: bytes  # the header block of raw (header_block.py)
    message: EmailMessage  # head, parsed
    author: Author | None = None
    auth: str = ""  # how the author was authenticated, for the log and the store
    facts: dict[str, object] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)  # names of stages that continued


Stage = Callable[[Session], Awaitable[Verdict]]
_Owner = TypeVar("_Owner")


def reads_headers(
    check: Callable[[_Owner, Session], Verdict],
) -> Callable[[_Owner, Session], Coroutine[Any, Any, Verdict]]:
    """Make a stage of ``check``, a method that only reads the message's headers (no
    store, no DNS): its CPU grows with the header block, so a big block is read in a
    worker thread (offload.py) while the event loop serves the other sessions."""

    @functools.wraps(check)
    async def stage(owner: _Owner, session: Session) -> Verdict:
        return await offload(len(session.head), check, owner, session)

    return stage


async def run_stages(session: Session, stages: Sequence[Stage]) -> Verdict:
    """Run ``stages`` in order until one decides; ACCEPT when all continue."""
    for stage in stages:
        verdict = await stage(session)
        if verdict.outcome is not Outcome.CONTINUE:
            return verdict
        session.passed.append(stage.__name__)
    return Verdict(Outcome.ACCEPT)
