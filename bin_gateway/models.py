"""The values the store hands out: states as StrEnums, rows as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RouteKind(StrEnum):
    """What a recipient address is for (decided at RCPT by the router)."""

    POST = "post"  # a list address or the intake address
    MODERATION = "moderation"  # moderatie+<token>@: a coordinator's decision
    REPLY = "reply"  # reactie+<member token>@: a member's reply to a bulletin or an answer
    ANSWER = "answer"  # reactie+<thread token>@: an agency's answer to a relayed reply
    BOUNCE = "bounce"  # bounce+<token>@: VERP return path of a delivery
    JOIN = "join"  # <list>+aanmelden@: someone asks to join
    LEAVE = "leave"  # <list>+afmelden@ (and the List-Unsubscribe mailto): a member leaves
    CONFIRM = "confirm"  # aanmelding+<token>@: the answer confirming a join
    POSTMASTER = "postmaster"  # postmaster@, abuse@ (RFC 2142)


class InboundState(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class MemberState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class JoinState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


class SubmissionState(StrEnum):
    HELD = "held"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ReplyState(StrEnum):
    RELAYED = "relayed"  # queued to its recipients
    HELD = "held"  # waiting for a coordinator (review_replies, or over the hourly limit)
    REJECTED = "rejected"  # a coordinator said no, or the review expired
    EMPTY = "empty"  # nothing of the writer's own (only quoted text): not relayed
    UNREADABLE = "unreadable"  # encrypted: returned to the writer, not relayed


class DeliveryState(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt
    SENDING = "sending"  # claimed by the outbox; reset to queued at start-up
    SENT = "sent"
    FAILED = "failed"  # permanent failure or gave up


@dataclass(frozen=True, slots=True)
class Inbound:
    id: int
    received_at: float
    route: RouteKind
    target: str
    mail_from: str
    author: str
    auth: str
    facts: dict[str, object]
    raw: bytes


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    list_id: str
    email: str
    name: str
    state: MemberState


@dataclass(frozen=True, slots=True)
class Join:
    id: int
    list_id: str
    email: str
    name: str
    state: JoinState
    created_at: float
    expires_at: float
    kind: str = "join"  # "join" | "leave": what the person confirms


@dataclass(frozen=True, slots=True)
class Submission:
    id: int
    inbound_id: int
    list_id: str
    agency_id: str
    sender: str
    subject: str
    state: SubmissionState
    created_at: float
    expires_at: float
    remind_at: float
    reminded_at: float | None
    decided_at: float | None
    decided_by: str
    reason: str
    note: str
    reply_id: int | None = None  # a member reply under review, not agency mail
    join_id: int | None = None  # a join request on an "approval" list


@dataclass(frozen=True, slots=True)
class ReplyThread:
    id: int
    bulletin_id: int
    member_id: int | None
    list_id: str
    pseudonym: str
    token: str
    member_token: str
    answerer: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Bulletin:
    id: int
    list_id: str
    inbound_id: int
    submission_id: int | None
    sender_name: str
    origin: str
    note: str
    subject: str
    created_at: float
    member_count: int


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    bulletin_id: int | None
    outbound_id: int | None
    member_id: int | None
    recipient: str
    token: str
    state: DeliveryState
    attempts: int
    created_at: float
    next_attempt_at: float
    last_code: int
    last_reply: str
