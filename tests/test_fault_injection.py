"""§9.1 under repeated SIGKILL: nothing answered 250 is lost, duplicates stay in flight.

The daemon runs as its own process (tests/support/daemon.py); the DNS server, the
smarthost sink and three kinds of clients live in this test process and keep going
across kills, as the outside world does:

* the police post bulletins to ``buurt-noord@`` (DKIM-signed);
* the coordinator answers every moderation mail with ``OK`` (DKIM-signed);
* members reply to the bulletin copies they received.

A client that gets no final answer (the daemon died mid-transaction) sends the same
message again, as every MTA does; the gateway drops the replay by its Message-ID.
Meanwhile the daemon is killed ``FAULTS.kills`` times and restarted at once. Each kill
waits for one of four moments, in a seeded random order, then a random extra delay:
a client waiting for its answer to DATA (*intake*), a post or decision stored but not
yet handled (*moderation*), bulletin copies claimed for sending (*fan-out*), a member
reply stored or its relays claimed (*relay*).

At the end, checked against the store and what the smarthost received:

* every post answered 250 was held once and its moderation mail reached both
  coordinators; every OK answered 250 approved it and made one bulletin that reached
  every member; every reply answered 250 reached the police and both coordinators,
  with the member's words in it. Anything missing counts as a *loss* (must be 0).
* *Duplicates* are copies the smarthost accepted more than once. Every copy's envelope
  sender is ``bounce+<delivery token>@``, so each acceptance names its queue row. A copy
  is *in flight at a kill* when the smarthost had accepted it but its row was not yet
  recorded 'sent' (read after the process died and every connection it had was
  closed). Each extra acceptance of a copy must be matched by a kill at which that copy
  was in flight; such copies must also be rows left 'sending' by the killed process.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bin_gateway.config import load_config
from bin_gateway.keys import dkim_txt_record
from bin_gateway.services import DATABASE_NAME
from bin_gateway.store import open_store
from tests.support.daemon import DaemonProcess, read_db, wait_gone
from tests.support.dkim_keys import DkimKey, sign
from tests.support.dns_server import DnsServer
from tests.support.reliability import FAULTS, seeded
from tests.support.sink import Received, Sink
from tests.support.smtp_client import Gauge, send_until_answered
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    COORDINATOR_2,
    COORDINATOR_DOMAIN,
    DOMAIN,
    GATEWAY_SELECTOR,
    SELECTOR,
    gateway_key,
    publish_test_domains,
    write_config,
)

LIST_ID = "buurt-noord"
PHASES = ("intake", "moderation", "fan-out", "relay")
PHASE_WAIT = 10.0  # seconds a kill waits for its moment before it strikes anyway
POST_SPACING = 1.0  # seconds between an OK and the next post: fan-outs overlap
_TOKEN = re.compile(r"^bounce\+([a-z0-9]+)@", re.I)
_POST_MARK = re.compile(rb"Melding F(\d+)")
_MODERATION = re.compile(rb"moderatie\+[a-z2-7]+@" + re.escape(DOMAIN.encode()))
_REPLY_TO = re.compile(rb"reactie\+[a-z0-9]+@" + re.escape(DOMAIN.encode()))


def token_of(received: Received) -> str:
    match = _TOKEN.match(received.mail_from)
    assert match, f"a copy without a VERP envelope sender: {received.mail_from}"
    return match.group(1)


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@dataclass(slots=True)
class Kill:
    """What was going on when the daemon was killed, and what it left behind."""

    aimed_at: str
    found: bool  # the aimed-at moment came (else: struck after PHASE_WAIT)
    clients_waiting: int  # transactions waiting for their answer to DATA
    inbound_pending: Counter[str]  # route -> stored messages not yet handled
    sending: set[str]  # tokens of rows claimed ('sending')
    in_flight: set[str]  # accepted by the smarthost, not recorded 'sent'


@dataclass(slots=True)
class Run:
    """The daemon's surroundings and everything the clients were answered."""

    tmp: Path
    config_path: Path
    db_path: Path
    sink: Sink
    agency_key: DkimKey
    coordinator_key: DkimKey
    members: list[str]
    port: int = 0  # 0 while the daemon is down or starting
    waiting: Gauge = field(default_factory=Gauge)
    posts: dict[int, bytes] = field(default_factory=dict)  # post -> its Message-ID line
    posts_accepted: set[int] = field(default_factory=set)
    approvals: dict[int, str] = field(default_factory=dict)  # post -> moderation address
    approvals_accepted: set[int] = field(default_factory=set)
    approved: asyncio.Event = field(default_factory=asyncio.Event)  # an OK was answered 250
    replies: dict[str, tuple[int, str]] = field(default_factory=dict)  # marker -> post, member
    replies_accepted: set[str] = field(default_factory=set)
    resends: int = 0  # tries beyond the first (no final answer: the daemon was down)
    kills: list[Kill] = field(default_factory=list)
    orphans: set[int] = field(default_factory=set)  # children of killed daemons
    accepted: Counter[str] = field(default_factory=Counter)  # token -> acceptances
    _seen: int = 0

    def current_port(self) -> int:
        return self.port

    def count_new(self) -> list[Received]:
        """The sink's messages since the last call, counted per delivery token."""
        new = self.sink.messages[self._seen:]
        self._seen += len(new)
        self.accepted.update(token_of(r) for r in new)
        return new

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return read_db(self.db_path, sql, params)


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    dns = DnsServer().start()
    sink = await Sink.start()
    try:
        agency_key, coordinator_key = publish_test_domains(dns.zone)
        pem = gateway_key("ed25519")
        dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
        config_path = write_config(tmp_path, dns_port=dns.port, sink_port=sink.port,
                                   key_pem=pem, retry_after="200ms")
        db_path = load_config(config_path).gateway.data_dir / DATABASE_NAME
        members = [f"lid{n}@bewoners.example" for n in range(FAULTS.members)]
        store = await open_store(db_path)
        try:
            await store.add_members(LIST_ID, [(m, f"Lid {n}") for n, m in enumerate(members)])
        finally:
            await store.close()
        yield Run(tmp_path, config_path, db_path, sink, agency_key, coordinator_key, members)
    finally:
        await sink.stop()
        dns.stop()


# --- the clients ---------------------------------------------------------------------


def post_message(run: Run, n: int) -> bytes:
    message = (
        f"From: Wijkagent Noord <{AGENCY}>\r\nTo: {LIST_ID}@{DOMAIN}\r\n"
        f"Subject: Melding F{n}\r\nDate: Mon, 04 Mar 2024 10:00:00 +0100\r\n"
        f"Message-ID: <melding-f{n}@politie.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Melding F{n}: let op bij de Dorpsstraat.\r\n"
    ).encode()
    return sign(message, run.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)


def approval_message(run: Run, n: int, address: str) -> bytes:
    message = (
        f"From: {COORDINATOR}\r\nTo: {address}\r\nSubject: Re: Melding F{n}\r\n"
        f"Date: Mon, 04 Mar 2024 11:00:00 +0100\r\nMessage-ID: <ok-f{n}@example.nl>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOK\r\n"
    ).encode()
    return sign(message, run.coordinator_key, domain=COORDINATOR_DOMAIN, selector=SELECTOR)


def reply_message(member: str, address: str, n: int, marker: str) -> bytes:
    return (
        f"From: {member}\r\nTo: {address}\r\nSubject: Re: [BIN Noord] Melding F{n}\r\n"
        f"Date: Mon, 04 Mar 2024 12:00:00 +0100\r\nMessage-ID: <{marker}@bewoners.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Ik zag iets bij de school, kenmerk {marker}.\r\n"
    ).encode()


async def send(run: Run, mail_from: str, rcpt: str, data: bytes) -> bool:
    outcome, tries = await send_until_answered(
        run.current_port, mail_from, [rcpt], data, pause=0.2, give_up_after=300,
        gauge=run.waiting)
    run.resends += tries - 1
    assert outcome.data in (250, None) or outcome.data >= 500, outcome
    return outcome.accepted


async def police(run: Run, kills_done: asyncio.Event) -> None:
    """Posts a bulletin, waits for its OK, and posts the next, while the kills go on."""
    for n in range(FAULTS.posts):
        if n >= 2 and kills_done.is_set():
            return
        raw = post_message(run, n)
        run.posts[n] = raw
        if not await send(run, AGENCY, f"{LIST_ID}@{DOMAIN}", raw):
            continue
        run.posts_accepted.add(n)
        async with asyncio.timeout(300):
            while n not in run.approvals_accepted:
                run.approved.clear()
                await run.approved.wait()
        await asyncio.sleep(POST_SPACING)


async def readers(run: Run, plan: dict[str, set[int]], stop: asyncio.Event) -> None:
    """The coordinator says OK to each moderation mail; planned members reply."""
    tasks: list[asyncio.Task[None]] = []

    async def approve(n: int, address: str) -> None:
        if await send(run, COORDINATOR, address, approval_message(run, n, address)):
            run.approvals_accepted.add(n)
            run.approved.set()

    async def reply(member: str, n: int, address: str) -> None:
        marker = f"r{n}x{run.members.index(member)}"
        run.replies[marker] = (n, member)
        if await send(run, member, address, reply_message(member, address, n, marker)):
            run.replies_accepted.add(marker)

    while not stop.is_set():
        for received in run.count_new():
            to = received.rcpt_tos[0]
            if to == COORDINATOR:
                head = header_block(received.data)
                found, post = _MODERATION.search(head), _POST_MARK.search(head)
                if found and post and int(post.group(1)) not in run.approvals:
                    n = int(post.group(1))
                    run.approvals[n] = found.group(0).decode()
                    tasks.append(asyncio.create_task(approve(n, run.approvals[n])))
            elif to in plan:
                head = header_block(received.data)
                found, post = _REPLY_TO.search(head), _POST_MARK.search(head)
                if found and post and int(post.group(1)) in plan[to]:
                    plan[to].discard(int(post.group(1)))
                    tasks.append(asyncio.create_task(
                        reply(to, int(post.group(1)), found.group(0).decode())))
        await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)


# --- the killer ----------------------------------------------------------------------


def moment_came(run: Run, phase: str) -> bool:
    if phase == "intake":
        return run.waiting.value > 0
    if phase == "moderation":
        sql = ("SELECT count(*) FROM inbound WHERE state = 'received'"
               " AND route IN ('post', 'moderation')")
    elif phase == "fan-out":
        sql = ("SELECT count(*) FROM deliveries WHERE state = 'sending'"
               " AND bulletin_id IS NOT NULL")
    else:
        sql = ("SELECT (SELECT count(*) FROM inbound WHERE state = 'received' AND route = 'reply')"
               " + (SELECT count(*) FROM deliveries d JOIN outbound o ON o.id = d.outbound_id"
               "    WHERE d.state = 'sending' AND o.kind = 'relay')")
    return bool(run.query(sql)[0][0])


async def kill_at(run: Run, daemon: DaemonProcess, phase: str, delay: float) -> Kill:
    deadline = time.monotonic() + PHASE_WAIT
    found = False
    while time.monotonic() < deadline:
        daemon.check_alive()
        if moment_came(run, phase):
            found = True
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(delay)
    waiting = run.waiting.value
    run.orphans |= set(daemon.children())  # must not outlive the daemon
    await daemon.kill()
    run.port = 0
    # The smarthost side of the dead connections may still be reading a last message:
    # only once all are closed is "accepted" final for this kill.
    async with asyncio.timeout(30):
        await run.sink.wait_disconnected()
    run.count_new()
    rows = run.query("SELECT token, state FROM deliveries WHERE state IN ('sent', 'sending')")
    sent = {str(t) for t, s in rows if s == "sent"}
    sending = {str(t) for t, s in rows if s == "sending"}
    pending = Counter({str(route): int(count) for route, count in run.query(
        "SELECT route, count(*) FROM inbound WHERE state = 'received' GROUP BY route")})
    in_flight = set(run.accepted) - sent
    return Kill(phase, found, waiting, pending, sending, in_flight)


async def start(run: Run, log: Path) -> DaemonProcess:
    daemon = await DaemonProcess(run.config_path, log).start()
    run.port = await daemon.port()
    return daemon


async def settle(run: Run, daemon: DaemonProcess, timeout: float) -> None:  # noqa: ASYNC109
    """Until every client got its answers and the store has nothing left to do."""
    deadline = time.monotonic() + timeout
    while True:
        daemon.check_alive()
        busy = run.query(
            "SELECT (SELECT count(*) FROM inbound WHERE state = 'received'),"
            " (SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending')),"
            " (SELECT count(*) FROM submissions WHERE state = 'held')")[0]
        answered = (set(run.approvals) >= run.posts_accepted
                    and len(run.approvals_accepted) == len(run.approvals))
        if answered and not any(busy):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled after {timeout} s: inbound, deliveries, held"
                                 f" = {busy}\n{daemon.log_tail()}")
        await asyncio.sleep(0.1)


# --- the test ------------------------------------------------------------------------


async def test_sigkill_at_random_moments_loses_nothing(run: Run) -> None:
    """§9.1: repeated SIGKILL during intake, moderation, fan-out and reply relay loses
    nothing answered 250, and doubles only copies in flight at a kill."""
    rng = seeded("fault injection")
    plan: dict[str, set[int]] = {}
    for n in range(FAULTS.posts):
        for member in rng.sample(run.members, FAULTS.replies_per_bulletin):
            plan.setdefault(member, set()).add(n)
    phases = [PHASES[k % len(PHASES)] for k in range(FAULTS.kills)]
    rng.shuffle(phases)
    log = run.tmp / "daemon.log"
    stop, kills_done = asyncio.Event(), asyncio.Event()
    daemon = await start(run, log)
    started = time.monotonic()
    clients = [asyncio.create_task(police(run, kills_done)),
               asyncio.create_task(readers(run, plan, stop))]
    try:
        for phase in phases:
            # The answer to DATA takes milliseconds: strike at once or miss the moment.
            late = 0.005 if phase == "intake" else 0.3
            run.kills.append(await kill_at(run, daemon, phase, rng.uniform(0, late)))
            daemon = await start(run, log)
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # let it get somewhere first
        kills_done.set()
        await clients[0]  # the police's last post is answered and approved
        await settle(run, daemon, timeout=600)
        await asyncio.sleep(0.5)  # a duplicate would be on its way now
        stop.set()
        await asyncio.gather(*clients)
        await settle(run, daemon, timeout=60)  # replies sent while stopping
        await daemon.terminate()
    finally:
        stop.set()
        for task in clients:
            task.cancel()
        await daemon.reap()
    run.count_new()
    left = await wait_gone(run.orphans, timeout=10)
    assert not left, f"reply workers outlived their killed daemon: {sorted(left)}"
    print(f"children of killed daemons (reply workers, trackers): {len(run.orphans)}, all gone")
    report(run, lost=check_nothing_lost(run), took=time.monotonic() - started)


def check_nothing_lost(run: Run) -> list[str]:
    """Everything answered 250 was done, down to the last copy; returns what was not."""
    lost: list[str] = []
    every = {str(t): str(s) for t, s in run.query("SELECT token, state FROM deliveries")}
    lost += [f"copy {t} left {s}" for t, s in every.items() if s != "sent"]
    lost += [f"copy {t} recorded sent, never received" for t in every if t not in run.accepted]
    strangers = set(run.accepted) - set(every)
    assert not strangers, f"the smarthost got copies of no queue row: {strangers}"
    lost += [f"inbound {i} {s}: {e}" for i, s, e in run.query(
        "SELECT id, state, error FROM inbound WHERE state != 'processed'")]

    for n in sorted(run.posts_accepted):
        held = run.query(
            "SELECT s.id, s.state FROM submissions s JOIN inbound i ON i.id = s.inbound_id"
            " WHERE i.message_id = ?", (f"<melding-f{n}@politie.example>",))
        if len(held) != 1:
            lost.append(f"post {n}: {len(held)} held items")
            continue
        submission_id, state = held[0]
        for coordinator in (COORDINATOR, COORDINATOR_2):
            key = f"moderation-request:{submission_id}:{coordinator}"
            if not delivered(run, key):
                lost.append(f"post {n}: no moderation mail to {coordinator}")
        if n in run.approvals_accepted:
            if state != "approved":
                lost.append(f"post {n}: OK answered 250, item {state}")
            lost += check_bulletin(run, n, int(str(submission_id)))
    for marker in sorted(run.replies_accepted):
        n, _member = run.replies[marker]
        rows = run.query(
            "SELECT i.id, r.state FROM inbound i JOIN replies r ON r.inbound_id = i.id"
            " WHERE i.message_id = ?", (f"<{marker}@bewoners.example>",))
        if [state for _, state in rows] != ["relayed"]:
            lost.append(f"reply {marker}: {rows}")
            continue
        inbound_id = rows[0][0]
        for target in (AGENCY, COORDINATOR, COORDINATOR_2):
            if not delivered(run, f"relay:{inbound_id}:{target}"):
                lost.append(f"reply {marker}: not relayed to {target}")
        words = f"kenmerk {marker}".encode()
        if not any(words in r.data and AGENCY in r.rcpt_tos for r in run.sink.messages):
            lost.append(f"reply {marker}: its words never reached the police")
    return lost


def delivered(run: Run, source_key: str) -> bool:
    rows = run.query("SELECT d.token, d.state FROM deliveries d JOIN outbound o"
                     " ON o.id = d.outbound_id WHERE o.source_key = ?", (source_key,))
    return len(rows) == 1 and rows[0][1] == "sent" and str(rows[0][0]) in run.accepted


def check_bulletin(run: Run, n: int, submission_id: int) -> list[str]:
    bulletins = run.query("SELECT id FROM bulletins WHERE submission_id = ?", (submission_id,))
    if len(bulletins) != 1:
        return [f"post {n}: {len(bulletins)} bulletins"]
    copies = run.query("SELECT recipient, token, state FROM deliveries WHERE bulletin_id = ?",
                       (bulletins[0][0],))
    reached = {str(r) for r, t, s in copies if s == "sent" and str(t) in run.accepted}
    return [f"post {n}: bulletin never reached {m}" for m in set(run.members) - reached]


def report(run: Run, *, lost: list[str], took: float) -> None:
    duplicates = {t: c - 1 for t, c in run.accepted.items() if c > 1}
    unexplained = {t: extra for t, extra in duplicates.items()
                   if extra > sum(t in k.in_flight for k in run.kills)}
    in_flight = sum(len(k.in_flight) for k in run.kills)
    claimed = sum(len(k.sending) for k in run.kills)
    hit = Counter(k.aimed_at for k in run.kills if k.found)
    messages = len(run.posts) + len(run.approvals) + len(run.replies)
    answered = len(run.posts_accepted) + len(run.approvals_accepted) + len(run.replies_accepted)
    print(
        f"kills: {len(run.kills)} (moments found: {dict(hit)}; transactions cut in DATA:"
        f" {sum(k.clients_waiting for k in run.kills)}; stored but unhandled at a kill:"
        f" {sum(sum(k.inbound_pending.values()) for k in run.kills)})\n"
        f"messages: {messages} sent by clients, {answered} answered 250 ({run.resends}"
        f" resends after no answer): {len(run.posts_accepted)} posts,"
        f" {len(run.approvals_accepted)} OKs, {len(run.replies_accepted)} member replies\n"
        f"copies accepted by the smarthost: {run.accepted.total()} of"
        f" {len(run.accepted)} queue rows; losses: {len(lost)}\n"
        f"duplicates: {sum(duplicates.values())} (in flight at the kills: {in_flight} accepted"
        f" but unrecorded, of {claimed} claimed); {took:.0f} s"
    )
    assert not lost, "lost:\n" + "\n".join(lost[:50])
    assert not unexplained, f"doubled without being in flight at a kill: {unexplained}"
    for kill in run.kills:
        assert kill.in_flight <= kill.sending, "a copy accepted and unrecorded was not claimed"
    assert len(run.kills) == FAULTS.kills
    assert run.approvals_accepted == run.posts_accepted == set(run.posts)
    assert len(run.replies_accepted) == len(run.posts) * FAULTS.replies_per_bulletin
