"""Benchmark: one bulletin fanned out to N members, against a raw aiosmtplib baseline.

Run by hand: ``.venv/bin/python bench/fanout.py [--members 10000] [--connections 8]
[--key rsa|ed25519] [--sink lean|aiosmtpd] [--profile]``. Exit status 0 when every
target is met.

* **fan-out**: the real ``Outbox`` with the real ``SmarthostPool`` (built by
  ``app.make_transport`` from a config file), the store on a temp dir, JSON logs to a
  file as in production. One approved bulletin (about 5 KB a copy) for N members is
  personalised, DKIM-signed (RSA-2048 by default) and delivered. Timed from the start of
  ``Outbox.run`` until the smarthost has accepted every copy ("delivered") and until
  every outcome is committed ("recorded").
* **baseline**: the same N copies, pre-built (not timed), sent with plain
  ``aiosmtplib.SMTP.sendmail`` over the same number of connections.

Both send to a counting sink in a *separate process* (a fresh one per phase), so the
sink's CPU is not taken from the measured process; its count is checked. By default the
sink is a lean SMTP responder: aiosmtpd spends ~0.6 ms of CPU a message, more than the
aiosmtplib sender (~0.35 ms), so with ``--sink aiosmtpd`` on a 2-core machine the sink
sets the pace of both phases and the ratio flatters the fan-out. The CPU seconds of
both processes are shown per phase, to see which side was the bottleneck.

Peak RSS is ``ru_maxrss`` of this process, read right after the fan-out (the baseline's
pre-built messages come later). Targets (the issue): fan-out within 4x the baseline,
peak RSS under 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from lean_sink import LeanSink, SinkCounts  # bench/, the script's own folder

from bin_gateway.app import make_transport
from bin_gateway.config import Config, CurrentConfig, load_config
from bin_gateway.keys import generate_key, write_private_key
from bin_gateway.log import configure_logging
from bin_gateway.models import InboundState, RouteKind
from bin_gateway.outbox import Outbox, replies_go_to
from bin_gateway.render import BulletinSource, BulletinTemplate
from bin_gateway.services import DATABASE_NAME
from bin_gateway.signing import Signer
from bin_gateway.store import NewInbound, Store, open_store
from bin_gateway.transport import SendResult, SendStatus, Transport

DOMAIN = "bin.example.nl"
LIST_ID = "buurt-noord"
AGENCY = "wijkagent.noord@politie.example"
TARGET_RATIO = 4.0
TARGET_RSS_MB = 200.0

CONFIG = """
[gateway]
domain = "{domain}"
hostname = "mail.{domain}"
listen = ["127.0.0.1:0"]
data_dir = "data"
admin = "beheer@beheer.example"
language = "nl"

[dkim]
selector = "bin1"
private_key = "dkim.pem"

[delivery]
mode = "smtp"
smarthost = "127.0.0.1:{port}"
starttls = "off"
connections = {connections}

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@politie.example"]
lists = ["{list_id}"]

[[lists]]
id = "{list_id}"
name = "BIN Noord"
coordinators = ["coordinator.noord@example.nl"]
"""

_PARAGRAPH = (
    "Deze week is er drie keer ingebroken in woningen aan de Dorpsstraat en de Kerklaan. "
    "De daders kwamen binnen via een openstaand raam aan de achterkant. Sluit ramen en "
    "deuren, ook als u maar even weg bent, en meld verdachte situaties via 0900-8844."
)


def agency_message() -> bytes:
    """An agency bulletin of text and HTML that makes copies of about 5 KB."""
    text = "\r\n\r\n".join([_PARAGRAPH] * 6)
    html = "".join(f"<p>{_PARAGRAPH}</p>\r\n" for _ in range(6))
    return (
        f"From: Wijkagent Noord <{AGENCY}>\r\n"
        f"To: agency@{DOMAIN}\r\n"
        "Subject: Inbraken in Noord: let op uw ramen\r\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0100\r\n"
        "Message-ID: <melding-1@politie.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="grens"\r\n'
        "\r\n--grens\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
        "--grens\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body>{html}</body></html>\r\n"
        "--grens--\r\n"
    ).encode()


# --- the sink: a separate process ---------------------------------------------------------


def serve_sink(kind: str) -> None:
    """Child mode: a counting SMTP server; prints its port, and its count on SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lean = SinkCounts(on_message=lambda counts: _accepted.__setitem__(0, counts.count))
        factory = _aiosmtpd_factory() if kind == "aiosmtpd" else lambda: LeanSink(lean)
        server = await loop.create_server(factory, "127.0.0.1", 0)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        server.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"CPU {usage.ru_utime + usage.ru_stime:.3f}", flush=True)
        print(f"COUNT {_accepted[0]}", flush=True)

    asyncio.run(main())


_accepted = [0]


def _aiosmtpd_factory() -> Callable[[], asyncio.BaseProtocol]:
    """aiosmtpd with a handler that only counts: the realistic sink (it parses everything)."""
    from aiosmtpd.smtp import SMTP

    class Counting:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            _accepted[0] += 1
            return "250 2.0.0 OK"

    handler = Counting()
    return lambda: SMTP(handler, hostname="sink.bench", enable_SMTPUTF8=True)


class SinkProcess:
    def __init__(self, kind: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-sink", kind], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> tuple[int, float]:
        """Stop the sink; the number of messages it accepted and its CPU seconds."""
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=30)
        facts = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        return int(facts.get("COUNT", -1)), float(facts.get("CPU", "nan"))


# --- setting up a gateway's data dir ------------------------------------------------------


@dataclass(slots=True)
class Setup:
    config: Config
    signer: Signer
    store: Store
    bulletin_id: int


async def set_up(tmp: Path, port: int, members: int, connections: int, pem: bytes) -> Setup:
    key_path = tmp / "dkim.pem"
    if not key_path.exists():
        write_private_key(key_path, pem)
    config_path = tmp / "config.toml"
    config_path.write_text(CONFIG.format(domain=DOMAIN, port=port, connections=connections,
                                         list_id=LIST_ID), "utf-8")
    config = load_config(config_path)
    store = await open_store(config.gateway.data_dir / DATABASE_NAME)
    people = [(f"lid{n}@bewoners.example", f"Lid {n}") for n in range(members)]
    await store.add_members(LIST_ID, people)
    inbound_id = await store.add_inbound(NewInbound(
        route=RouteKind.POST, target=LIST_ID, mail_from=AGENCY, rcpt_tos=[f"agency@{DOMAIN}"],
        client_ip="127.0.0.1", helo="mail.politie.example", raw=agency_message(),
        author=AGENCY, auth="dkim",
    ))
    async with store.transaction() as db:
        bulletin_id, count = await Store.create_bulletin(
            db, list_id=LIST_ID, inbound_id=inbound_id, submission_id=None,
            sender_name="Politie Oost-Brabant", origin=AGENCY, note="", subject="Inbraken",
        )
        await Store.finish_inbound(db, inbound_id, InboundState.PROCESSED)
    assert count == members
    signer = Signer.load(domain=DOMAIN, selector="bin1", key_path=config.dkim.private_key)
    return Setup(config, signer, store, bulletin_id)


# --- the fan-out ------------------------------------------------------------------------


class CountingTransport:
    """The real transport, plus an event when ``total`` copies were accepted."""

    def __init__(self, inner: Transport, total: int) -> None:
        self._inner = inner
        self._total = total
        self.sent = 0
        self.other = 0
        self.finished = asyncio.Event()

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        result = await self._inner.send(envelope_from, recipient, message)
        if result.status is SendStatus.SENT:
            self.sent += 1
            if self.sent >= self._total:
                self.finished.set()
        else:
            self.other += 1
            print(f"  not sent: {result}", file=sys.stderr)
        return result

    async def close(self) -> None:
        await self._inner.close()


@dataclass(slots=True)
class FanOut:
    delivered: float
    recorded: float
    sent_rows: int


async def fan_out(setup: Setup, members: int) -> FanOut:
    transport = CountingTransport(make_transport(setup.config), members)
    outbox = Outbox(CurrentConfig(setup.config), setup.store, setup.signer, transport)
    db_path = setup.config.gateway.data_dir / DATABASE_NAME
    started = time.perf_counter()
    task = asyncio.create_task(outbox.run())
    waiting = asyncio.create_task(transport.finished.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what killed the outbox
    delivered = time.perf_counter() - started
    while await sent_count(setup.store) < members:  # noqa: ASYNC110 (polling the database)
        await asyncio.sleep(0.01)
    recorded = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await transport.close()
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
    db.close()
    return FanOut(delivered, recorded, rows)


async def sent_count(store: Store) -> int:
    row = await store.read_one("SELECT count(*) FROM deliveries WHERE state = 'sent'")
    return int(row[0]) if row else 0


# --- the baseline -------------------------------------------------------------------------


async def build_copies(setup: Setup) -> list[tuple[str, str, bytes]]:
    """The same copies the outbox sends (envelope from, recipient, message), pre-built."""
    bulletin = await setup.store.bulletin(setup.bulletin_id)
    assert bulletin is not None
    item = await setup.store.inbound(bulletin.inbound_id)
    lst = setup.config.list_by_id(bulletin.list_id)
    assert item is not None and lst is not None
    template = BulletinTemplate.build(BulletinSource(
        original=item.raw, sender_name=bulletin.sender_name, list_id=lst.id,
        list_name=lst.name, domain=DOMAIN, subject_prefix=lst.subject_prefix, note="",
        language=lst.language, replies_go_to=replies_go_to(lst, bulletin.sender_name, "nl"),
    ))
    body_hash = setup.signer.body_hash(template.body)
    date = formatdate(bulletin.created_at)
    rows = await setup.store.read("SELECT id, recipient, token FROM deliveries ORDER BY id")
    copies = []
    for row in rows:
        headers = template.headers_for(
            to=row["recipient"], reply_to=f"reactie+{row['token']}@{DOMAIN}",
            message_id=f"<bulletin-{bulletin.id}-{row['id']}@{DOMAIN}>", date=date,
        )
        name, value = setup.signer.sign(headers, body_hash, timestamp=int(bulletin.created_at))
        head = f"{name}: {value}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
        message = head.encode() + b"\r\n" + template.body
        copies.append((f"bounce+{row['token']}@{DOMAIN}", row["recipient"], message))
    return copies


async def baseline(port: int, connections: int, copies: list[tuple[str, str, bytes]]) -> float:
    async def worker(queue: list[tuple[str, str, bytes]]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                                 local_hostname=f"mail.{DOMAIN}")
        await client.connect()
        while queue:
            sender, recipient, message = queue.pop()
            await client.sendmail(sender, [recipient], message)
        await client.quit()

    pending = list(reversed(copies))
    started = time.perf_counter()
    await asyncio.gather(*(worker(pending) for _ in range(connections)))
    return time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run(args: argparse.Namespace) -> bool:
    pem = generate_key(args.key, 2048)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as directory:
        tmp = Path(directory)
        log_file = (tmp / "gateway.log").open("w", encoding="utf-8")
        configure_logging(json=True, level="info", stream=log_file)

        sink = SinkProcess(args.sink)
        setup = await set_up(tmp, sink.port, args.members, args.connections, pem)
        rss_before = peak_rss_mb()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        cpu = time.process_time()
        result = await fan_out(setup, args.members)
        fan_out_cpu = time.process_time() - cpu
        if profiler:
            profiler.disable()
        rss_fan_out = peak_rss_mb()
        fan_out_count, fan_out_sink_cpu = sink.stop()

        copies = await build_copies(setup)
        average = sum(len(c[2]) for c in copies) / len(copies)
        await setup.store.close()
        log_file.close()
        log_lines = sum(1 for _ in (tmp / "gateway.log").open(encoding="utf-8"))

        sink = SinkProcess(args.sink)
        cpu = time.process_time()
        base = await baseline(sink.port, args.connections, copies)
        base_cpu = time.process_time() - cpu
        base_count, base_sink_cpu = sink.stop()

    ratio = result.recorded / base
    ok_ratio, ok_rss = ratio <= TARGET_RATIO, rss_fan_out <= TARGET_RSS_MB
    ok_counts = fan_out_count == base_count == args.members == result.sent_rows
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\nfan-out of {args.members} copies ({average / 1024:.1f} KB each, {args.key} key,"
          f" {args.connections} connections, {args.sink} sink, {os.cpu_count()} CPUs)")
    print(f"  {'baseline (aiosmtplib, pre-built)':38} {base:7.2f} s"
          f"  {args.members / base:7.0f} msg/s"
          f"  CPU s: bench {base_cpu:.2f}, sink {base_sink_cpu:.2f}")
    print(f"  {'fan-out, all delivered':38} {result.delivered:7.2f} s"
          f"  {args.members / result.delivered:7.0f} msg/s"
          f"  CPU s: bench {fan_out_cpu:.2f}, sink {fan_out_sink_cpu:.2f}")
    print(f"  {'fan-out, all outcomes committed':38} {result.recorded:7.2f} s"
          f"  {args.members / result.recorded:7.0f} msg/s")
    print(f"  {'ratio fan-out / baseline':38} {ratio:7.2f} x   target <= {TARGET_RATIO:g}x"
          f"  {verdict[ok_ratio]}")
    print(f"  {'peak RSS after fan-out':38} {rss_fan_out:7.1f} MB  target < {TARGET_RSS_MB:g} MB"
          f"  {verdict[ok_rss]}  (before: {rss_before:.1f} MB)")
    print(f"  {'sink counts fan-out / baseline':38} {fan_out_count} / {base_count}, rows sent"
          f" {result.sent_rows}, log lines {log_lines}  {verdict[ok_counts]}")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
    return ok_ratio and ok_rss and ok_counts


def main() -> None:
    if sys.argv[1:2] == ["--serve-sink"]:
        serve_sink(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--key", choices=["rsa", "ed25519"], default="rsa")
    parser.add_argument("--sink", choices=["lean", "aiosmtpd"], default="lean",
                        help="the counting sink: a lean SMTP responder (default) or aiosmtpd")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the fan-out (event-loop thread only) and print the top")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
