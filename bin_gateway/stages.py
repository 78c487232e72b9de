"""The session stages: the checks run on a message before we answer DATA.

Cheap and decisive first (loops, From, roles), DNS last. Each stage is a verb phrase;
the route tables at the bottom read top to bottom as the policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import replies
from .auth.authenticate import Requirement, authenticate
from .auth.author import Author, Refusal, parse_author
from .auth.dns import Resolver
from .config import Config
from .errors import DnsTemporaryError
from .models import RouteKind
from .pipeline import PROCEED, Outcome, Session, Stage, Verdict, discard, reject
from .store import Store

# Every mail the gateway sends carries X-Loop: <something>@<domain>; seeing one come
# back in is a loop (a member forwarding rule, an auto-responder, a misrouted MX).
LOOP_HEADER = "X-Loop"
_AUTO_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")


class SessionStages:
    def __init__(self, config: Config, store: Store, resolver: Resolver) -> None:
        self._config = config
        self._store = store
        self._resolver = resolver
        self._domain = config.gateway.domain
        self._requirement = Requirement(config.inbound.require.value)

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
        if kind is RouteKind.POSTMASTER:
            return (self.drop_loops,)
        return ()  # BOUNCE: anything a remote MTA says about our copy is worth reading

    async def drop_loops(self, session: Session) -> Verdict:
        for value in session.message.get_all(LOOP_HEADER, []):
            if str(value).strip().lower().endswith("@" + self._domain):
                return discard(f"X-Loop {value!s} is ours")
        for value in session.message.get_all("List-Id", []):
            if str(value).strip().lower().rstrip(">").endswith("." + self._domain):
                return discard(f"List-Id {value!s} is ours")
        return PROCEED

    async def drop_auto_replies(self, session: Session) -> Verdict:
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
        return PROCEED

    async def read_author(self, session: Session) -> Verdict:
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

    async def authenticate_author(self, session: Session) -> Verdict:
        author = _author(session)
        try:
            result = await authenticate(
                session.raw,
                author_domain=author.domain,
                mail_from=session.mail_from,
                client_ip=session.client_ip,
                helo=session.helo,
                requirement=self._requirement,
                resolver=self._resolver,
                trusted_authserv_ids=self._config.inbound.trusted_authserv_ids,
            )
        except DnsTemporaryError as exc:
            return Verdict(Outcome.DEFER, replies.DNS_TEMPFAIL, str(exc))
        session.auth = f"{result.method}: {result.detail}" if result.passed else result.detail
        if not result.passed:
            return reject(replies.NOT_AUTHENTICATED, result.detail)
        return PROCEED

    async def drop_replays(self, session: Session) -> Verdict:
        """A sender retrying after a lost 250 must not create a second held item."""
        message_id = message_id_of(session)
        kind = RouteKind.POST if "posts" in session.facts else RouteKind.MODERATION
        if await self._store.seen_message(kind, _author(session).address.lower(), message_id):
            return discard(f"already accepted Message-ID {message_id}")
        return PROCEED


def message_id_of(session: Session) -> str:
    value = session.message.get("Message-ID", "")
    return str(value).strip()[:250]


def _author(session: Session) -> Author:
    assert session.author is not None, "read_author runs first"
    return session.author
