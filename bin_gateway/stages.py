"""The session stages: the checks run on a message before we answer DATA.

Cheap and decisive first (loops, From, roles), DNS last. Each stage is a verb phrase;
the route tables at the bottom read top to bottom as the policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from . import replies
from .auth.authenticate import Requirement, authenticate
from .auth.author import Author, Refusal, parse_author
from .auth.dns import Resolver
from .config import CurrentConfig, FollowsConfig
from .config.values import address_key
from .errors import DnsTemporaryError
from .models import MemberState, RouteKind
from .pipeline import (
    PROCEED,
    Outcome,
    Session,
    Stage,
    Verdict,
    discard,
    reads_headers,
    reject,
)
from .store import Store

# Every mail the gateway sends carries X-Loop: <something>@<domain>; seeing one come
# back in is a loop (a member forwarding rule, an auto-responder, a misrouted MX).
LOOP_HEADER = "X-Loop"
_AUTO_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
# Out-of-office subjects of clients that set none of the headers above (checked at the
# start only: "Re: afwezig op maandag" is a person writing).
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatisch antwoord|automatische? (?:antwoord|reply|response)|afwezig(?:heid)?"
    r"|afwezigheidsmelding|out of (?:the )?office|autoreply|auto-reply|automatic reply"
    r"|abwesenheitsnotiz|r[ée]ponse automatique)\b",
    re.IGNORECASE,
)


_MESSAGE_ID_LINE = re.compile(rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_FOLD = re.compile(rb"\r?\n[ \t]+")

# The checks below that read only headers are plain methods made stages by
# ``reads_headers``: a big header block is read in a worker thread, off the event loop.


class SessionStages(FollowsConfig):
    def __init__(self, current: CurrentConfig, store: Store, resolver: Resolver) -> None:
        self._current = current
        self._store = store
        self._resolver = resolver
        self._domain = current.config.gateway.domain  # needs a restart to change

    def for_route(self, kind: RouteKind) -> Sequence[Stage]:
        if kind is RouteKind.POST:
            return (
                self.drop_loops, self.read_author, self.choose_post_role,
                self.authenticate_author, self.drop_replays,
            )
        if kind is RouteKind.MODERATION:
            return (
                self.drop_loops, self.drop_auto_replies, self.read_author,
                self.require_coordinator, self.authenticate_author, self.drop_replays,
            )
        if kind is RouteKind.REPLY:
            # Members are known by the token address and their own From (SPEC §5), not
            # by DKIM: many members' providers sign nothing.
            return (
                self.drop_loops, self.drop_auto_replies, self.read_author,
                self.require_member, self.drop_replays,
            )
        if kind is RouteKind.ANSWER:
            return (
                self.drop_loops, self.drop_auto_replies, self.read_author,
                self.require_thread_party, self.authenticate_author, self.drop_replays,
            )
        if kind is RouteKind.JOIN:
            # The person is the From address; what they ask is confirmed to that address
            # (double opt-in), so a forged From changes nothing unseen.
            return (self.drop_loops, self.drop_auto_replies, self.read_author)
        if kind is RouteKind.LEAVE:
            return (self.drop_loops, self.drop_auto_replies, self.read_author,
                    self.check_leaver)
        if kind is RouteKind.CONFIRM:
            return (self.drop_loops, self.drop_auto_replies, self.read_author,
                    self.require_joiner)
        if kind is RouteKind.POSTMASTER:
            return (self.drop_loops,)
        return ()  # BOUNCE: anything a remote MTA says about our copy is worth reading

    @reads_headers
    def drop_loops(self, session: Session) -> Verdict:
        for value in session.message.get_all(LOOP_HEADER, []):
            if str(value).strip().lower().endswith("@" + self._domain):
                return discard(f"X-Loop {value!s} is ours")
        for value in session.message.get_all("List-Id", []):
            if str(value).strip().lower().rstrip(">").endswith("." + self._domain):
                return discard(f"List-Id {value!s} is ours")
        return PROCEED

    @reads_headers
    def drop_auto_replies(self, session: Session) -> Verdict:
        """Out-of-office and other robots: never answered, never counted as a decision."""
        message = session.message
        if session.mail_from in ("", "<>"):
            return discard("null sender (a bounce or auto-reply)")
        auto = str(message.get("Auto-Submitted", "no")).strip().lower()
        if not auto.startswith("no"):
            return discard(f"Auto-Submitted: {auto}")
        precedence = str(message.get("Precedence", "")).strip().lower()
        if precedence in _AUTO_PRECEDENCE:
            return discard(f"Precedence: {precedence}")
        if any(name in message for name in _AUTO_HEADERS):
            return discard("auto-reply header")
        if message.get_content_type() == "multipart/report":
            return discard("a delivery or read report")
        if _AUTO_SUBJECT.match(str(message.get("Subject", ""))):
            return discard("out-of-office subject")
        return PROCEED

    @reads_headers
    def read_author(self, session: Session) -> Verdict:
        found = parse_author(session.raw, session.message)
        if isinstance(found, Refusal):
            return reject(replies.AMBIGUOUS_FROM, found.reason)
        session.author = found
        return PROCEED

    async def choose_post_role(self, session: Session) -> Verdict:
        """Per target list: a coordinator posts directly, an agency's mail is held."""
        author = _author(session)
        agency = self._config.agency_for(author.address)
        posts: dict[str, str] = {}
        for target in session.targets:
            if target == "":  # the intake address: the agency's own lists
                if agency is None:
                    return reject(replies.NOT_ALLOWED, "intake mail from a non-agency sender")
                posts.update((list_id, "agency") for list_id in agency.lists
                             if list_id not in posts)
                continue
            lst = self._config.list_by_id(target)
            if lst is not None and lst.is_coordinator(author.address):
                posts[target] = "coordinator"
            elif agency is not None:
                posts.setdefault(target, "agency")
            else:
                return reject(replies.NOT_ALLOWED, f"not a coordinator of {target} nor an agency")
        session.facts["posts"] = posts
        session.facts["agency"] = agency.id if agency is not None else ""
        return PROCEED

    async def require_coordinator(self, session: Session) -> Verdict:
        held = await self._store.submission(int(session.targets[0]))
        lst = self._config.list_by_id(held.list_id) if held is not None else None
        if held is None or lst is None:
            return reject(replies.UNKNOWN_RECIPIENT, "held item or its list is gone")
        if not lst.is_coordinator(_author(session).address):
            return reject(replies.NOT_A_COORDINATOR, f"not a coordinator of {lst.id}")
        return PROCEED

    async def require_member(self, session: Session) -> Verdict:
        """The reply address is the member's: From must be them, or another list member.

        Another member (a partner answering from their own address) is let through and
        gets their own thread; the fact is kept so the relay can say so. The reasons
        logged here name member ids, never addresses.
        """
        bulletin_id, _, member_id = session.targets[0].partition(":")
        bulletin = await self._store.bulletin(int(bulletin_id))
        owner = await self._store.member(int(member_id))
        if bulletin is None or owner is None:
            return reject(replies.UNKNOWN_RECIPIENT, "bulletin or member is gone")
        writer = _author(session).address
        if address_key(writer) == address_key(owner.email):
            member = owner
        else:
            other = await self._store.member_by_address(bulletin.list_id, writer)
            if other is None:
                return reject(replies.NOT_THE_MEMBER,
                              f"From is not member {owner.id} nor on list {bulletin.list_id}")
            member = other
            session.facts["for_member"] = owner.id
        if member.state is not MemberState.ACTIVE:
            return reject(replies.NOT_THE_MEMBER, f"member {member.id} is {member.state.value}")
        session.facts["thread"] = {"bulletin_id": bulletin.id, "member_id": member.id}
        return PROCEED

    async def require_thread_party(self, session: Session) -> Verdict:
        """An answer into a thread comes from an agency sender or the list's coordinator."""
        thread = await self._store.thread(int(session.targets[0]))
        lst = self._config.list_by_id(thread.list_id) if thread is not None else None
        if thread is None or lst is None:
            return reject(replies.UNKNOWN_RECIPIENT, "thread or its list is gone")
        writer = _author(session).address
        agency = self._config.agency_for(writer)
        if agency is not None:
            session.facts["answer_as"] = {"agency": agency.id}
        elif lst.is_coordinator(writer):
            session.facts["answer_as"] = {"coordinator": lst.id}
        else:
            return reject(replies.NOT_THREAD_PARTY, f"not an agency or coordinator of {lst.id}")
        return PROCEED

    async def require_joiner(self, session: Session) -> Verdict:
        """A join is confirmed only from the address that asked to join."""
        join = await self._store.join(int(session.targets[0]))
        if join is None:
            return reject(replies.UNKNOWN_RECIPIENT, "join request is gone")
        if address_key(_author(session).address) != address_key(join.email):
            return reject(replies.NOT_ALLOWED, f"join {join.id} confirmed from another address")
        return PROCEED

    async def authenticate_author(self, session: Session) -> Verdict:
        author = _author(session)
        try:
            result = await authenticate(
                session.raw,
                author_domain=author.domain,
                mail_from=session.mail_from,
                client_ip=session.client_ip,
                helo=session.helo,
                requirement=Requirement(self._config.inbound.require.value),
                resolver=self._resolver,
                trusted_authserv_ids=self._config.inbound.trusted_authserv_ids,
            )
        except DnsTemporaryError as exc:
            return Verdict(Outcome.DEFER, replies.DNS_TEMPFAIL, str(exc))
        session.auth = f"{result.method}: {result.detail}" if result.passed else result.detail
        if not result.passed:
            return reject(replies.NOT_AUTHENTICATED, result.detail)
        return PROCEED

    async def check_leaver(self, session: Session) -> Verdict:
        """Whether the From of a leave can be believed (aligned DKIM or SPF): then the
        member leaves at once; if not, they are asked first. Never a refusal: a member
        whose provider signs nothing must still be able to leave."""
        author = _author(session)
        requirement = (Requirement.NONE if self._config.inbound.require.value == "none"
                       else Requirement.ALIGNED)
        try:
            result = await authenticate(
                session.raw, author_domain=author.domain, mail_from=session.mail_from,
                client_ip=session.client_ip, helo=session.helo, requirement=requirement,
                resolver=self._resolver,
                trusted_authserv_ids=self._config.inbound.trusted_authserv_ids,
            )
        except DnsTemporaryError as exc:
            session.auth = f"unverified: {exc}"
            session.facts["verified"] = False
            return PROCEED
        session.auth = f"{result.method}: {result.detail}" if result.passed else result.detail
        session.facts["verified"] = result.passed
        return PROCEED

    async def drop_replays(self, session: Session) -> Verdict:
        """A sender retrying after a lost 250 must not create a second held item."""
        message_id = message_id_of(session)
        if "posts" in session.facts:
            kind = RouteKind.POST
        elif "thread" in session.facts:
            kind = RouteKind.REPLY
        elif "answer_as" in session.facts:
            kind = RouteKind.ANSWER
        else:
            kind = RouteKind.MODERATION
        target = session.targets[0] if kind in (RouteKind.REPLY, RouteKind.ANSWER) else None
        author = _author(session).address.lower()
        if await self._store.seen_message(kind, author, message_id, target):
            return discard(f"already accepted Message-ID {message_id}")
        return PROCEED


def message_id_of(session: Session) -> str:
    """The Message-ID as written. Not the parsed header: Python cuts an invalid id short
    ("<Bericht 1@x>" reads "<Bericht"), and two different messages would then look like
    one message sent twice, the second dropped as a replay."""
    header = session.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID_LINE.search(header)
    if match is None:
        return ""
    value = _FOLD.sub(b" ", match.group(1)).decode("utf-8", "replace")
    return " ".join(value.split())[:250]


def _author(session: Session) -> Author:
    assert session.author is not None, "read_author runs first"
    return session.author
