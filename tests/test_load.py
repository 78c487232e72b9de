"""§9.1 and §9.5 under load: many clients at once while a big fan-out runs.

The daemon runs as its own process (its memory is its own: VmHWM), the smarthost sink
in another (tests/support/sink_process.py: its CPU is not the clients'), the DNS server
and ``LOAD.clients`` concurrent SMTP clients in this test process. A bulletin to
``LOAD.members`` members is approved before the daemon starts, so its fan-out begins
as the clients do. The clients send ``LOAD.messages`` messages of mixed routes:

* member replies (40 %), each from a different member to their own reply address;
* agency posts (30 %), DKIM-signed, each held for moderation;
* junk (25 %): unknown local addresses and other domains, refused at RCPT with 550;
* oversize mail (5 %) over ``max_message_size``, refused with 552 (half of them
  declare SIZE and are refused at MAIL, half are refused after the transfer).

Asserted: every message got the answer its route should get, within the client's
timeout; every 250 was processed (a post became a held item whose moderation mail went
out; a reply was relayed to the police and both coordinators with its words); every
queued copy, the fan-out's included, reached the smarthost exactly once; the daemon's
peak RSS stays under ``RSS_LIMIT_MB``. Printed: p50/p99/max of the time from RCPT to its
answer and from the end-of-data dot to the final answer, and the peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bin_gateway.config import load_config
from bin_gateway.keys import dkim_txt_record
from bin_gateway.models import InboundState, RouteKind
from bin_gateway.services import DATABASE_NAME
from bin_gateway.store import NewInbound, Store, open_store
from tests.support.daemon import ROOT, DaemonProcess, read_db
from tests.support.dkim_keys import DkimKey, plain_message, sign
from tests.support.dns_server import DnsServer
from tests.support.reliability import LOAD, seeded
from tests.support.smtp_client import Outcome, send_once
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    COORDINATOR_2,
    DOMAIN,
    GATEWAY_SELECTOR,
    SELECTOR,
    gateway_key,
    publish_test_domains,
    write_config,
)

LIST_ID = "buurt-noord"
RSS_LIMIT_MB = 300.0  # the fan-out bench measures ~60 MB for 10,000 members
CLIENT_TIMEOUT = 120.0  # seconds for one transaction; reaching it fails the test
MIX = (("reply", 0.40), ("post", 0.30), ("junk", 0.25), ("oversize", 0.05))
EXPECTED = {"reply": 250, "post": 250, "junk": 550, "oversize": 552}


@dataclass(slots=True)
class Job:
    kind: str
    mail_from: str
    rcpt: str
    data: bytes
    marker: str = ""  # replies: words to find in the relayed copies
    declare_size: bool = False
    outcome: Outcome | None = None


@dataclass(slots=True)
class Site:
    tmp: Path
    config_path: Path
    db_path: Path
    dns: DnsServer
    agency_key: DkimKey
    members: list[str]
    sink_port: int = 0
    jobs: list[Job] = field(default_factory=list)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return read_db(self.db_path, sql, params)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    dns = DnsServer().start()
    try:
        agency_key, _ = publish_test_domains(dns.zone)
        pem = gateway_key("ed25519")
        dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
        members = [f"lid{n}@bewoners.example" for n in range(LOAD.members)]
        yield Site(tmp_path, tmp_path / "config.toml", tmp_path, dns, agency_key, members)
    finally:
        dns.stop()


async def start_sink(site: Site) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.sink_process", str(site.tmp / "sink.jsonl"),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None
    site.sink_port = int(await asyncio.wait_for(process.stdout.readline(), 30))
    return process


async def prepare(site: Site) -> None:
    """Config, members and one approved bulletin to all of them, in the store."""
    write_config(site.tmp, dns_port=site.dns.port, sink_port=site.sink_port,
                 key_pem=gateway_key("ed25519"), retry_after="200ms")
    site.db_path = load_config(site.config_path).gateway.data_dir / DATABASE_NAME
    store = await open_store(site.db_path)
    try:
        await store.add_members(LIST_ID, [(m, "") for m in site.members])
        raw = sign(plain_message(f"Wijkagent Noord <{AGENCY}>"), site.agency_key,
                   domain=AGENCY_DOMAIN, selector=SELECTOR)
        inbound_id = await store.add_inbound(NewInbound(
            route=RouteKind.POST, target=LIST_ID, mail_from=AGENCY, rcpt_tos=[f"agency@{DOMAIN}"],
            client_ip="127.0.0.1", helo="mail.politie.example", raw=raw, author=AGENCY,
            auth="dkim", message_id="<melding-1@politie.example>"))
        async with store.transaction() as db:
            await Store.create_bulletin(
                db, list_id=LIST_ID, inbound_id=inbound_id, submission_id=None,
                sender_name="Politie Oost-Brabant", origin=AGENCY, note="",
                subject="Inbraken in Noord")
            await Store.finish_inbound(db, inbound_id, InboundState.PROCESSED)
    finally:
        await store.close()


def plan(site: Site, rng: random.Random) -> list[Job]:
    """LOAD.messages jobs of mixed routes, in a random order."""
    tokens = dict(site.query(  # member -> the token of their copy's reply address
        "SELECT recipient, token FROM deliveries WHERE bulletin_id IS NOT NULL"))
    repliers = iter(rng.sample(site.members, len(site.members)))
    kinds = rng.choices([k for k, _ in MIX], [w for _, w in MIX], k=LOAD.messages)
    jobs: list[Job] = []
    for n, kind in enumerate(kinds):
        if kind == "reply":
            member = next(repliers)
            marker = f"load-{n}"
            address = f"reactie+{tokens[member]}@{DOMAIN}"
            data = (f"From: {member}\r\nTo: {address}\r\nSubject: Re: Inbraken in Noord\r\n"
                    f"Message-ID: <{marker}@bewoners.example>\r\n"
                    f"Date: Mon, 04 Mar 2024 12:00:00 +0100\r\n\r\n"
                    f"Ik zag een witte bus, kenmerk {marker}.\r\n").encode()
            jobs.append(Job(kind, member, address, data, marker))
        elif kind == "post":
            message = plain_message(f"Wijkagent Noord <{AGENCY}>", subject=f"Melding {n}")
            message = message.replace(b"<melding-1@", f"<load-{n}@".encode())
            jobs.append(Job(kind, AGENCY, f"{LIST_ID}@{DOMAIN}",
                            sign(message, site.agency_key, domain=AGENCY_DOMAIN,
                                 selector=SELECTOR)))
        elif kind == "junk":
            rcpt = rng.choice([f"onbekend{n}@{DOMAIN}", f"iemand{n}@elders.example",
                               f"buurt-west{n}@{DOMAIN}"])
            jobs.append(Job(kind, f"spam{n}@elders.example", rcpt,
                            b"Subject: koop nu\r\n\r\nkoop nu\r\n"))
        else:
            body = b"x" * 76 + b"\r\n"
            data = (f"From: {AGENCY}\r\nSubject: groot {n}\r\n\r\n".encode()
                    + body * (1_100_000 // len(body)))
            jobs.append(Job(kind, AGENCY, f"{LIST_ID}@{DOMAIN}", data, declare_size=n % 2 == 0))
    return jobs


async def run_clients(port: int, jobs: list[Job]) -> float:
    """LOAD.clients clients, each taking the next job until none is left."""
    queue = iter(jobs)

    async def client() -> None:
        for job in queue:
            job.outcome = await send_once(port, job.mail_from, [job.rcpt], job.data,
                                          timeout=CLIENT_TIMEOUT, declare_size=job.declare_size)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(LOAD.clients)))
    return time.monotonic() - started


async def drained(site: Site, daemon: DaemonProcess, timeout: float) -> float:  # noqa: ASYNC109
    """Until nothing is left to process or send; returns when the fan-out's last copy
    was recorded sent (seconds since the epoch)."""
    deadline = time.monotonic() + timeout
    while True:
        daemon.check_alive()
        left = site.query(
            "SELECT (SELECT count(*) FROM inbound WHERE state = 'received'),"
            " (SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending'))")[0]
        if not any(left):
            last = site.query("SELECT max(sent_at) FROM deliveries WHERE bulletin_id IS NOT NULL")
            return float(str(last[0][0]))
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained after {timeout} s: {left}\n{daemon.log_tail()}")
        await asyncio.sleep(0.2)


async def test_many_clients_during_a_big_fan_out_lose_nothing_and_stay_bounded(
    site: Site,
) -> None:
    """§9.1/§9.5: concurrent clients of every route during a fan-out: each gets its
    answer, every 250 is processed, every copy sent once, memory bounded."""
    rng = seeded("load")
    sink = await start_sink(site)
    daemon = DaemonProcess(site.config_path, site.tmp / "daemon.log")
    try:
        await prepare(site)
        site.jobs = plan(site, rng)
        await daemon.start()
        port = await daemon.port()
        started = time.time()
        took = await run_clients(port, site.jobs)
        fan_out_done = await drained(site, daemon, timeout=1800)
        await asyncio.sleep(0.5)
        rss, workers_rss = daemon.peak_rss_mb(), max(daemon.children().values(), default=0.0)
        await daemon.terminate()
    finally:
        await daemon.reap()
        if sink.returncode is None:
            sink.terminate()
        await sink.wait()
    received = [json.loads(line) for line in (site.tmp / "sink.jsonl").open()]
    check(site, received)
    report(site, took=took, fan_out=fan_out_done - started, rss=rss, workers_rss=workers_rss,
           copies=len(received))
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"


def check(site: Site, received: list[dict[str, Any]]) -> None:
    wrong = [f"{j.kind} to {j.rcpt}: {j.outcome}" for j in site.jobs
             if j.outcome is None or not j.outcome.answered
             or (j.outcome.data if j.kind != "junk" else j.outcome.rcpt[0]) != EXPECTED[j.kind]]
    assert not wrong, f"{len(wrong)} wrong answers:\n" + "\n".join(wrong[:20])

    accepted = Counter(str(r["mail_from"]).split("+", 1)[1].split("@")[0] for r in received)
    every = dict(site.query("SELECT token, state FROM deliveries"))
    assert set(accepted) == set(every), "copies missing at, or unknown to, the smarthost"
    assert set(every.values()) == {"sent"}, Counter(every.values())
    doubled = {t: n for t, n in accepted.items() if n > 1}
    assert not doubled, f"{len(doubled)} copies sent more than once"

    lost: list[str] = []
    inbound = {str(m): (int(str(i)), str(s)) for i, m, s in site.query(
        "SELECT id, message_id, state FROM inbound")}
    relayed_words = Counter(m for r in received for m in r["markers"]
                            if set(r["rcpt_tos"]) & {AGENCY, COORDINATOR, COORDINATOR_2})
    for job in site.jobs:
        if job.kind not in ("reply", "post"):
            continue
        name = f"<{job.marker}@bewoners.example>" if job.kind == "reply" else (
            job.data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode())
        found = inbound.get(name)
        if found is None or found[1] != "processed":
            lost.append(f"{job.kind} {name}: {found}")
        elif job.kind == "post" and not site.query(
                "SELECT 1 FROM submissions WHERE inbound_id = ?", (found[0],)):
            lost.append(f"post {name}: not held")
        elif job.kind == "reply" and relayed_words[job.marker] != 3:
            lost.append(f"reply {name}: its words reached {relayed_words[job.marker]} of 3")
    assert not lost, f"{len(lost)} lost:\n" + "\n".join(lost[:20])


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return (f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms,"
            f" max {max(values) * 1000:.0f} ms")


def report(site: Site, *, took: float, fan_out: float, rss: float, workers_rss: float,
           copies: int) -> None:
    outcomes = [j.outcome for j in site.jobs if j.outcome is not None]
    rcpt = [s for o in outcomes for s in o.rcpt_seconds]
    data = [o.data_seconds for o in outcomes if o.data_seconds is not None]
    kinds = Counter(j.kind for j in site.jobs)
    print(
        f"load: {LOAD.clients} clients sent {len(site.jobs)} messages in {took:.1f} s"
        f" ({len(site.jobs) / took:.0f}/s; {dict(kinds)}) while a {LOAD.members}-member"
        f" fan-out ran (its last copy {fan_out:.1f} s after the start); {copies} copies to"
        f" the smarthost, none lost, none doubled\n"
        f"RCPT to answer: {percentiles(rcpt)}\n"
        f"end of DATA to answer: {percentiles(data)}\n"
        f"daemon peak RSS (VmHWM): {rss:.0f} MB; reply worker peak RSS: {workers_rss:.0f} MB"
    )
