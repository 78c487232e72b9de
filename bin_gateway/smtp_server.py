"""The SMTP side: aiosmtpd hooks that route at RCPT and judge at DATA.

Nothing gets ``250`` before the message is committed to the store. A rejected
message is refused inside the transaction, so the sender's own MTA tells the sender
and we never send backscatter.
"""

from __future__ import annotations

import asyncio
import email.errors
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import SMTP, syntax

from . import replies
from .config import CurrentConfig, FollowsConfig
from .header_block import header_block
from .metrics import Metrics
from .mime_limits import header_refusal, structure_refusal
from .models import RouteKind
from .offload import offload
from .pipeline import Outcome, Session, Verdict, run_stages
from .replies import SmtpReply
from .router import Route, Router
from .server_tls import ServerTls
from .stages import SessionStages, message_id_of
from .store import NewInbound, Store

log = structlog.get_logger("bin_gateway.smtp")

MAX_RECIPIENTS = 50
# Seconds without a complete command line before aiosmtpd drops a client. Bytes trickled
# without a line end do not reset it, and a whole DATA transfer must fit in it.
SESSION_TIMEOUT = 300.0
# Concurrent SMTP sessions; the next one is told 421 and closed. Bounded further by the
# descriptor limit, keeping _FD_RESERVE for SQLite, the smarthost pool, DNS and HTTP:
# idle connections must not leave the gateway unable to open its own files and sockets.
MAX_CONNECTIONS = 2_000
_FD_RESERVE = 200
# Sessions from one client address at once (Postfix's smtpd_client_connection_count_limit
# is 50 too): one host must not take every session from the others. Not for the local
# MTA (127.0.0.1, ::1), which, in front of the gateway, brings everybody's mail.
MAX_PER_CLIENT = 50
_LOCAL_MTA = frozenset({"127.0.0.1", "::1"})
STAGES_TIMEOUT = 120.0  # all checks of one message, DNS included
# Faults of the message itself (not ours): the answer is 554, not 451.
_MESSAGE_FAULTS = (
    email.errors.MessageError, ValueError, TypeError, LookupError, UnicodeError, IndexError
)
_EVENTS = {
    Outcome.ACCEPT: "message.accepted",
    Outcome.DISCARD: "message.discarded",
    Outcome.REJECT: "message.rejected",
    Outcome.DEFER: "message.deferred",
    Outcome.CONTINUE: "message.accepted",  # not reachable: run_stages never returns it
}
# aiosmtpd's own size replies carry no enhanced status code; ours do (RFC 3463).
_REWRITES = {
    "552 Error: Too much mail data": str(replies.MESSAGE_TOO_BIG),
}


def connection_limit() -> int:
    """MAX_CONNECTIONS, or fewer when the process may not open that many descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - _FD_RESERVE))


@dataclass(slots=True)
class Connections:
    """The open SMTP sessions of all listeners, and how many may be open at once."""

    limit: int
    active: int = 0
    per_client: Counter[str] = field(default_factory=Counter)

    def open(self, client: str) -> replies.SmtpReply | None:
        """Count a new session; the refusal to give it, if it is one too many."""
        self.active += 1
        self.per_client[client] += 1
        if self.active > self.limit:
            return replies.TOO_MANY_CONNECTIONS
        if client not in _LOCAL_MTA and self.per_client[client] > MAX_PER_CLIENT:
            return replies.TOO_MANY_FROM_CLIENT
        return None

    def close(self, client: str) -> None:
        self.active -= 1
        self.per_client[client] -= 1
        if not self.per_client[client]:
            del self.per_client[client]


class GatewaySMTP(SMTP):
    connections: Connections | None = None  # set by the factory
    server_tls: ServerTls | None = None  # set by the factory when [tls] is configured
    _counted = ""  # the client address the session is counted under
    _refused: replies.SmtpReply | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again for the TLS transport after STARTTLS: count the session once.
        if self.connections is not None and not self._counted:
            peer = transport.get_extra_info("peername")
            self._counted = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            self._refused = self.connections.open(self._counted)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.connections is not None and self._counted:
            self.connections.close(self._counted)
            self._counted = ""
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refused is not None:
            log.warning("smtp.too_many_connections", peer=_peer(self.session),
                        reply=self._refused.code, status=self._refused.status)
            await self.push(str(self._refused))
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # The certificate in use when the client asks, not when it connected: a reload
        # in between must not hand out the one it replaced.
        if self.server_tls is not None:
            self.tls_context = self.server_tls.context
        await super().smtp_STARTTLS(arg)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            if status.startswith("552 Error: message size exceeds"):
                status = str(replies.MESSAGE_TOO_BIG)
            status = _REWRITES.get(status, status)
        await super().push(status)


class GatewayHandler(FollowsConfig):
    """aiosmtpd handler: ``handle_RCPT`` routes, ``handle_DATA`` runs the stages."""

    def __init__(
        self, current: CurrentConfig, store: Store, router: Router, stages: SessionStages,
        on_accepted: Callable[[], None], metrics: Metrics | None = None,
    ) -> None:
        self._current = current
        self._store = store
        self._router = router
        self._stages = stages
        self._on_accepted = on_accepted
        self._metrics = metrics
        self.in_flight = 0  # DATA commands being judged or stored (drained at shutdown)
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        routes: list[Route] = getattr(envelope, "routes", [])
        if len(routes) >= MAX_RECIPIENTS:
            return str(replies.TOO_MANY_RECIPIENTS)
        found = await self._router.route(address)
        if isinstance(found, SmtpReply):
            log.info("recipient.refused", reply=found.code, peer=_peer(session))
            return str(found)
        if routes and not routes[0].joins(found):
            return str(replies.OTHER_ROUTE)
        envelope.routes = [*routes, found]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(replies.OK_RECIPIENT)

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.in_flight += 1
        self._idle.clear()
        try:
            return await self._judge_and_store(session, envelope)
        except Exception as exc:
            # Answered here rather than left to aiosmtpd: it ends the transaction only when
            # the DATA hook returns, so a raised error would leave the envelope open and the
            # sender's retry on this session would get "503 nested MAIL command".
            return await self.handle_exception(exc)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def drained(self) -> None:
        """Return once no DATA command is being judged or stored."""
        await self._idle.wait()

    async def handle_exception(self, error: Exception) -> str:
        # Never aiosmtpd's "500 Error: (Class) text": it leaks internals and makes
        # senders give up on mail we could take a minute later.
        log.error("smtp.failed", error=repr(error), exc_info=error)
        return str(replies.LOCAL_ERROR)

    async def _judge_and_store(self, session: Any, envelope: Any) -> str:
        started = time.monotonic()
        routes: list[Route] = envelope.routes
        kind = routes[0].kind
        raw: bytes = envelope.original_content
        fields: dict[str, object] = {
            "route": kind.value, "targets": [r.target for r in routes],
            "peer": _peer(session), "size": len(raw),
        }
        try:
            # Read in a worker thread when the message is big: the scans and the parse
            # cost time in proportion to it, and would stall every other session.
            reading = await offload(len(raw), _read, raw)
            if isinstance(reading, Verdict):
                verdict = reading  # refused before any stage: later parses would cost minutes
            else:
                head, message = reading
                facts = Session(
                    mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
                    targets=_unique(r.target for r in routes), client_ip=_peer(session),
                    helo=session.host_name or "", raw=raw, head=head, message=message,
                )
                async with asyncio.timeout(STAGES_TIMEOUT):
                    verdict = await run_stages(facts, self._stages.for_route(kind))
        except TimeoutError:
            verdict = Verdict(Outcome.DEFER, replies.DNS_TEMPFAIL, "checks timed out")
        except _MESSAGE_FAULTS as exc:
            verdict = Verdict(Outcome.REJECT, replies.MALFORMED, f"unparseable: {exc!r}")
        fields |= {"outcome": verdict.outcome.value, "reason": verdict.reason}
        if verdict.outcome is Outcome.ACCEPT:
            inbound_id = await self._store_message(kind, facts)
            fields["inbound_id"] = inbound_id
            self._on_accepted()
        if verdict.outcome in (Outcome.ACCEPT, Outcome.DISCARD):
            fields |= {"stages": facts.passed, "auth": facts.auth}
        fields["ms"] = round((time.monotonic() - started) * 1000, 1)
        log.info(_EVENTS[verdict.outcome], **fields)
        if self._metrics is not None:
            reply = verdict.reply or replies.OK_QUEUED
            self._metrics.smtp_outcome(verdict.outcome.value, f"{reply.code} {reply.status}")
        if verdict.reply is not None:
            return str(verdict.reply)
        return str(replies.OK_QUEUED)

    async def _store_message(self, kind: RouteKind, facts: Session) -> int:
        author = facts.author.address.lower() if facts.author is not None else ""
        return await self._store.add_inbound(NewInbound(
            route=kind, target=",".join(facts.targets), mail_from=facts.mail_from,
            rcpt_tos=facts.rcpt_tos, client_ip=facts.client_ip, helo=facts.helo,
            raw=facts.raw, author=author, auth=facts.auth,
            message_id=message_id_of(facts) if facts.author is not None else "",
            facts={**facts.facts,
                   "author_name": facts.author.display_name if facts.author else "",
                   "author_flags": facts.author.flags if facts.author else []},
        ))


def make_smtp_factory(
    current: CurrentConfig, handler: GatewayHandler, tls: ServerTls | None
) -> Callable[[], GatewaySMTP]:
    connections = Connections(connection_limit())

    def factory() -> GatewaySMTP:
        config = current.config  # per connection: a reloaded size limit applies to new ones
        smtp = GatewaySMTP(
            handler,
            hostname=config.gateway.hostname,
            ident="bin-gateway",
            data_size_limit=config.gateway.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls.context if tls is not None else None,
            require_starttls=False,
            timeout=SESSION_TIMEOUT,
            command_call_limit=100,
        )
        smtp.connections = connections
        smtp.server_tls = tls
        return smtp
    return factory


def _read(raw: bytes) -> Verdict | tuple[bytes, EmailMessage]:
    """The header block and its parse, or the refusal of a message too big or too
    complex to read further. Every session check reads headers (DKIM reads the raw
    bytes), and only the header block is parsed: a parse of the body cost more CPU than
    all the checks together."""
    head = header_block(raw)
    if too_big := header_refusal(head):
        return Verdict(Outcome.REJECT, replies.HEADER_TOO_BIG, too_big)
    if too_complex := structure_refusal(raw):
        return Verdict(Outcome.REJECT, replies.TOO_COMPLEX, too_complex)
    message = BytesParser(policy=policy.default).parsebytes(head, headersonly=True)
    assert isinstance(message, EmailMessage)
    return head, message


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))
