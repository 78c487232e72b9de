"""Recipient address -> Route, decided at RCPT time.

Everything that is not plainly ``local@<our domain>`` is refused as relaying
(``550 5.7.1``): source routes, ``%`` and ``!`` hacks, quoted local parts and several
``@``. Local parts are compared case-insensitively. Token addresses are looked up so
an unknown, altered or expired token is refused before the sender sends any data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import replies
from .config import CurrentConfig, FollowsConfig
from .models import JoinState, RouteKind, SubmissionState
from .replies import SmtpReply
from .store import Store
from .tokens import (
    BOUNCE_PREFIX,
    JOIN_PREFIX,
    JOIN_WORDS,
    LEAVE_WORDS,
    MODERATION_PREFIX,
    REPLY_PREFIX,
    is_delivery_token,
    is_moderation_token,
    token_hash,
)

POSTMASTER_NAMES = ("postmaster", "abuse")


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    target: str  # POST: a list id, or "" for the intake; MODERATION: submission id; ...

    def joins(self, other: Route) -> bool:
        """Whether ``other`` may share one SMTP transaction with this route."""
        if self.kind is RouteKind.POST:
            return other.kind is RouteKind.POST
        return other == self


def split_local_address(address: str, domain: str) -> str | SmtpReply:
    """The lower-cased local part of an address in ``domain``, or the refusal."""
    if address in ("", "<>"):
        return replies.UNKNOWN_RECIPIENT
    if address.startswith(("@", '"')) or address.count("@") != 1:
        return replies.RELAY_DENIED  # source route, quoted local part, several '@'
    local, _, host = address.rpartition("@")
    if host.lower().rstrip(".") != domain or "%" in local or "!" in local:
        return replies.RELAY_DENIED
    if not local or any(c.isspace() or ord(c) < 0x21 for c in local):
        return replies.UNKNOWN_RECIPIENT
    return local.lower()


class Router(FollowsConfig):
    def __init__(self, current: CurrentConfig, store: Store) -> None:
        self._current = current
        self._store = store

    async def route(self, address: str) -> Route | SmtpReply:
        """Where mail for ``address`` goes, or the reply refusing it."""
        local = split_local_address(address, self._config.gateway.domain)
        if isinstance(local, SmtpReply):
            return local
        if local in POSTMASTER_NAMES:
            return Route(RouteKind.POSTMASTER, local)
        if local == self._config.gateway.intake:
            return Route(RouteKind.POST, "")
        if self._config.list_by_id(local) is not None:
            return Route(RouteKind.POST, local)
        prefix, plus, token = local.partition("+")
        if not plus:
            return replies.UNKNOWN_RECIPIENT
        if self._config.list_by_id(prefix) is not None:
            if token in JOIN_WORDS:
                return Route(RouteKind.JOIN, prefix)
            if token in LEAVE_WORDS:
                return Route(RouteKind.LEAVE, prefix)
            return replies.UNKNOWN_RECIPIENT
        if prefix == JOIN_PREFIX:
            return await self._confirmation(token)
        if prefix == MODERATION_PREFIX:
            return await self._moderation(token)
        if prefix in (REPLY_PREFIX, BOUNCE_PREFIX):
            return await self._delivery(prefix, token)
        return replies.UNKNOWN_RECIPIENT

    async def _moderation(self, token: str) -> Route | SmtpReply:
        if not is_moderation_token(token):
            return replies.UNKNOWN_RECIPIENT
        held = await self._store.submission_by_token_hash(token_hash(token))
        if held is None:
            return replies.UNKNOWN_RECIPIENT
        expired = held.state is SubmissionState.EXPIRED or (
            held.state is SubmissionState.HELD and held.expires_at <= time.time()
        )
        if expired:
            return replies.EXPIRED_TOKEN
        # Decided items still route: the coordinator is told "already decided by ...".
        return Route(RouteKind.MODERATION, str(held.id))

    async def _confirmation(self, token: str) -> Route | SmtpReply:
        if not is_moderation_token(token):  # the same kind of secret: 120 random bits
            return replies.UNKNOWN_RECIPIENT
        join = await self._store.join_by_token_hash(token_hash(token))
        if join is None:
            return replies.UNKNOWN_RECIPIENT
        if join.state is JoinState.PENDING and join.expires_at <= time.time():
            return replies.EXPIRED_TOKEN
        # A second "yes" still routes: it is answered "you are already a member".
        return Route(RouteKind.CONFIRM, str(join.id))

    async def _delivery(self, prefix: str, token: str) -> Route | SmtpReply:
        if not is_delivery_token(token):
            return replies.UNKNOWN_RECIPIENT
        if prefix == REPLY_PREFIX:
            return await self._reply(token)
        delivery = await self._store.delivery_by_token(token)
        if delivery is None:
            return replies.UNKNOWN_RECIPIENT
        return Route(RouteKind.BOUNCE, str(delivery.id))

    async def _reply(self, token: str) -> Route | SmtpReply:
        """``reactie+<token>@``: a member writing into a thread, or the agency answering.

        The member side is the token of their bulletin copy (the thread's ``member_token``
        once the thread exists); the agency side is the thread's own token. Both stop
        working ``reply_thread_lifetime`` after the bulletin.
        """
        now = time.time()
        thread = await self._store.thread_by_token(token)
        if thread is not None:
            if thread.member_id is None:
                return replies.UNKNOWN_RECIPIENT  # the member has left the list
            if thread.expires_at <= now:
                return replies.EXPIRED_TOKEN
            return Route(RouteKind.ANSWER, str(thread.id))
        thread = await self._store.thread_by_member_token(token)
        if thread is not None:
            if thread.member_id is None:
                return replies.UNKNOWN_RECIPIENT
            if thread.expires_at <= now:
                return replies.EXPIRED_TOKEN
            return Route(RouteKind.REPLY, f"{thread.bulletin_id}:{thread.member_id}")
        delivery = await self._store.delivery_by_token(token)
        if delivery is None or delivery.bulletin_id is None or delivery.member_id is None:
            return replies.UNKNOWN_RECIPIENT  # our notices carry no reply address
        bulletin = await self._store.bulletin(delivery.bulletin_id)
        lst = self._config.list_by_id(bulletin.list_id) if bulletin else None
        if bulletin is None or lst is None:
            return replies.UNKNOWN_RECIPIENT
        if bulletin.created_at + lst.reply_thread_lifetime.total_seconds() <= now:
            return replies.EXPIRED_TOKEN
        return Route(RouteKind.REPLY, f"{bulletin.id}:{delivery.member_id}")
