"""F3 and §9.1 under a real crash: the daemon is killed during a fan-out and restarted.

The gateway runs as its own process (``serve``), so ``kill -9`` hits it where it is,
mid-batch; the smarthost sink and the DNS server live in this test process and keep
recording across the kill. The bulletin and its members are put into the store directly
(the publish step has its own tests); what is tested here is the durable queue:

* nobody is skipped: after the restart every member has a copy, every row is 'sent';
* nobody is doubled except copies in flight: a member who got two copies was claimed
  ('sending') at the kill, and no member gets more than two;
* SIGTERM drains: exit code 0 within 30 s, outcomes of copies already accepted by the
  smarthost are written before exiting, so a restart resends at most the copies whose
  SMTP transaction was cut off (at most ``connections``).

The sink answers every DATA after a short stall so the fan-out takes a few seconds and
the kill lands at a known point (between 10 % and 60 % of the copies).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from bin_gateway.config import load_config
from bin_gateway.keys import dkim_txt_record
from bin_gateway.models import InboundState, RouteKind
from bin_gateway.services import DATABASE_NAME
from bin_gateway.store import NewInbound, Store, open_store
from tests.support.daemon import DaemonProcess
from tests.support.dkim_keys import plain_message, rsa_key, sign
from tests.support.dns_server import DnsServer
from tests.support.sink import Sink
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    DOMAIN,
    GATEWAY_SELECTOR,
    SELECTOR,
    gateway_key,
    write_config,
)

LIST_ID = "buurt-noord"
CONNECTIONS = 4  # what tests.support.world's config sets in [delivery]

@dataclass(slots=True)
class Site:
    """A config on disk, its data directory, and the neighbours the daemon talks to."""

    tmp: Path
    config_path: Path
    db_path: Path
    sink: Sink
    members: list[str]

    def recipients(self) -> Counter[str]:
        return Counter(r for m in self.sink.messages for r in m.rcpt_tos)

    def states(self) -> Counter[str]:
        return Counter(dict(self.query("SELECT state, count(*) FROM deliveries GROUP BY state")))

    def recipients_in(self, state: str) -> set[str]:
        return {row[0] for row in self.query(
            "SELECT recipient FROM deliveries WHERE state = ?", (state,))}

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Read the daemon's database as an admin would (WAL: also while it runs)."""
        with sqlite3.connect(self.db_path, timeout=10) as db:
            rows = db.execute(sql, params).fetchall()
        db.close()
        return rows


class Daemon(DaemonProcess):
    """``serve`` in a child process (tests.support.daemon), waiting on this site's sink."""

    def __init__(self, site: Site, name: str) -> None:
        super().__init__(site.config_path, site.tmp / f"{name}.log")
        self._site = site

    async def wait_for_copies(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Poll (finely: the kill point matters) until the sink has ``count`` messages."""
        deadline = time.monotonic() + timeout
        while len(self._site.sink.messages) < count:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"sink got {len(self._site.sink.messages)} of {count} copies in {timeout} s"
                    f"\n{self.log_tail()}")
            await asyncio.sleep(0.002)

    async def wait_for_everyone(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        missing = set(self._site.members)
        while missing:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} members got no copy in {timeout} s"
                                     f"\n{self.log_tail()}")
            await asyncio.sleep(0.05)
            missing -= set(self._site.recipients())

    async def wait_for_all_sent(self, total: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until every row is recorded 'sent' (read while the daemon runs: WAL allows it)."""
        deadline = time.monotonic() + timeout
        while self._site.states()["sent"] < total:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"rows after {timeout} s: {self._site.states()}"
                                     f"\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        self.check_alive()


async def make_site(tmp: Path, dns: DnsServer, sink: Sink, member_count: int) -> Site:
    """Config, members and one approved bulletin, written like the gateway would."""
    pem = gateway_key("ed25519")
    dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
    config_path = write_config(tmp, dns_port=dns.port, sink_port=sink.port, key_pem=pem,
                               retry_after="200ms")
    config = load_config(config_path)
    db_path = config.gateway.data_dir / DATABASE_NAME
    members = [f"lid{n}@bewoners.example" for n in range(member_count)]
    store = await open_store(db_path)
    try:
        await store.add_members(LIST_ID, [(m, f"Lid {n}") for n, m in enumerate(members)])
        raw = sign(plain_message(f"Wijkagent Noord <{AGENCY}>"), rsa_key(1024),
                   domain=AGENCY_DOMAIN, selector=SELECTOR)
        inbound_id = await store.add_inbound(NewInbound(
            route=RouteKind.POST, target=LIST_ID, mail_from=AGENCY, rcpt_tos=[f"agency@{DOMAIN}"],
            client_ip="127.0.0.1", helo="mail.politie.example", raw=raw, author=AGENCY,
            auth="dkim", message_id="<melding-1@politie.example>",
        ))
        async with store.transaction() as db:
            _, count = await Store.create_bulletin(
                db, list_id=LIST_ID, inbound_id=inbound_id, submission_id=None,
                sender_name="Politie Oost-Brabant", origin=AGENCY, note="",
                subject="Inbraken in Noord",
            )
            await Store.finish_inbound(db, inbound_id, InboundState.PROCESSED)
    finally:
        await store.close()
    assert count == member_count
    return Site(tmp, config_path, db_path, sink, members)


async def test_kill_9_during_fan_out_skips_nobody(
    tmp_path: Path, neighbours: tuple[DnsServer, Sink]
) -> None:
    """§9.1: kill -9 at 10-60 % of a 2,000-member fan-out; the restart completes it."""
    dns, sink = neighbours
    site = await make_site(tmp_path, dns, sink, 2000)
    sink.stall_in_data(0.004, times=1_000_000)  # a few seconds for the whole fan-out
    first = await Daemon(site, "first").start()
    second = Daemon(site, "second")
    try:
        await first.wait_for_copies(400, timeout=30)
        await first.kill()
        await asyncio.sleep(0.2)  # let the sink notice the cut connections
        before = site.recipients()
        assert 200 <= len(before) <= 1200, f"kill landed at {len(before)} of 2000"
        at_kill = site.states()
        in_flight = site.recipients_in("sending")
        unrecorded = set(before) - site.recipients_in("sent")  # accepted, outcome not written
        assert sum(before.values()) == len(before), "a copy was doubled before any crash"
        assert at_kill["sent"] <= len(before)  # recorded 'sent' only after the 250

        await second.start()
        await second.wait_for_everyone(timeout=40)
        await second.wait_for_all_sent(2000, timeout=10)
        await asyncio.sleep(0.3)  # a duplicate would be on its way now
        took = await second.terminate()
    finally:
        await first.reap()
        await second.reap()

    after = site.recipients()
    doubled = {r for r, n in after.items() if n > 1}
    assert set(after) == set(site.members), "a copy reached someone who is not a member"
    assert max(after.values()) <= 2
    assert doubled <= in_flight, f"doubled without being in flight: {doubled - in_flight}"
    assert doubled <= unrecorded, "a copy recorded 'sent' was sent again"
    assert len(doubled) <= len(in_flight)
    assert site.states() == Counter({"sent": 2000})
    print(  # for `pytest -s`: the numbers behind the bound
        f"\nkill at {len(before)} copies received, {at_kill['sent']} recorded sent, "
        f"{len(in_flight)} claimed ('sending'), {len(unrecorded)} accepted but unrecorded; "
        f"doubled after restart: {len(doubled)}; "
        f"SIGTERM exit after {took:.2f} s"
    )


async def test_sigterm_during_fan_out_drains_and_restart_completes(
    tmp_path: Path, neighbours: tuple[DnsServer, Sink]
) -> None:
    """§8: SIGTERM mid fan-out exits 0 within 30 s with outcomes written; nothing lost."""
    dns, sink = neighbours
    site = await make_site(tmp_path, dns, sink, 600)
    sink.stall_in_data(0.01, times=1_000_000)
    first = await Daemon(site, "first").start()
    second = Daemon(site, "second")
    try:
        await first.wait_for_copies(150, timeout=30)
        took_first = await first.terminate()
        await asyncio.sleep(0.2)
        before = site.recipients()
        assert len(before) < 600, "the fan-out finished before the SIGTERM: slow the sink"
        recorded = site.recipients_in("sent")
        unrecorded = set(before) - recorded  # accepted by the sink, outcome not written
        assert recorded <= set(before)
        assert len(unrecorded) <= CONNECTIONS, f"outcomes not written on SIGTERM: {unrecorded}"

        await second.start()
        await second.wait_for_everyone(timeout=40)
        await second.wait_for_all_sent(600, timeout=10)
        await asyncio.sleep(0.3)
        took_second = await second.terminate()
    finally:
        await first.reap()
        await second.reap()

    after = site.recipients()
    doubled = {r for r, n in after.items() if n > 1}
    assert set(after) == set(site.members)
    assert doubled <= unrecorded, f"doubled beyond the in-flight copies: {doubled - unrecorded}"
    assert site.states() == Counter({"sent": 600})
    print(
        f"\nSIGTERM at {len(before)} copies received: exit 0 after {took_first:.2f} s, "
        f"{len(unrecorded)} accepted but unrecorded; doubled after restart: {len(doubled)}; "
        f"second SIGTERM exit after {took_second:.2f} s"
    )


async def test_second_sigterm_exits_at_once_without_waiting_for_the_drain(
    tmp_path: Path, neighbours: tuple[DnsServer, Sink]
) -> None:
    """A message is being judged (its DKIM key lookup hangs) when SIGTERM comes: the
    drain waits for it; a second SIGTERM exits at once (130), and that sender never got
    a 250, so nothing answered is lost: it simply sends again."""
    dns, sink = neighbours
    site = await make_site(tmp_path, dns, sink, 1)
    daemon = await Daemon(site, "daemon").start()
    try:
        port = await _port_of(daemon)
        dns.zone.timeout(f"{SELECTOR}._domainkey.{AGENCY_DOMAIN}")
        raw = sign(plain_message(f"Wijkagent Noord <{AGENCY}>").replace(b"melding-1", b"m-2"),
                   rsa_key(1024), domain=AGENCY_DOMAIN, selector=SELECTOR)
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        await client.mail(AGENCY)
        await client.rcpt(f"buurt-noord@{DOMAIN}")
        sending = asyncio.create_task(client.data(raw))
        key = f"{SELECTOR}._domainkey.{AGENCY_DOMAIN}"
        async with asyncio.timeout(20):
            # DATA is in and its DKIM key lookup hangs (the DNS server has no event to await)
            while not dns.zone.queried(key):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert daemon.process is not None
        os.kill(daemon.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert daemon.process.returncode is None, "the drain did not wait for the message"
        started = time.monotonic()
        os.kill(daemon.pid, signal.SIGTERM)
        code = await asyncio.wait_for(daemon.process.wait(), 5)
        assert code == 130, daemon.log_tail()
        assert time.monotonic() - started < 2.0
        answer = await asyncio.gather(sending, return_exceptions=True)
        assert isinstance(answer[0], Exception), answer  # no 250: the sender retries
        client.close()
    finally:
        await daemon.reap()
    assert site.query("SELECT count(*) FROM inbound WHERE message_id LIKE '%m-2%'") == [(0,)]


async def _port_of(daemon: Daemon) -> int:
    return await daemon.port(timeout=20)
