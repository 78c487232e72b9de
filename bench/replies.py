"""Benchmark: anonymised member replies relayed per second through the whole gateway (F4).

Run by hand: ``.venv/bin/python bench/replies.py [--replies 2000] [--members 200]
[--key rsa|ed25519] [--connections 8] [--per-session 20] [--no-ack] [--timers]
[--profile]``. Exit status 0 when the target is met (issue #3: at least 200 replies/s on
two cores) and every count is exact.

Three processes, so that the gateway's process does only the gateway's work:

* **gateway** (this process): the real thing, ``bin_gateway.app.Gateway.start(config)``
  from a config file written like an admin's (one list, one agency, one coordinator,
  ``[inbound] require = "none"``, delivery to the sink over the default 8 smarthost
  connections), SQLite on disk (WAL, ``synchronous=FULL``), JSON logs to a file.
* **client**: builds the N replies (not timed), then sends them with aiosmtplib over
  ``--connections`` concurrent sessions, each taking the next message from a shared list
  and starting a new session (QUIT, connect, EHLO: timed) every ``--per-session``
  messages: the gateway's aiosmtpd ends a session after 100 MAIL commands (421), and real
  senders rarely push more to one host. In production this work is on other machines.
* **sink**: a lean SMTP responder (as in bench/fanout.py: aiosmtpd would cost more CPU
  per message than the sender) counting what it accepts per recipient; it prints the
  moment it has accepted the last expected copy.

Every phase gets a fresh data dir, set up the same way: N members, and one bulletin
written into the store as the processor writes it (``Store.create_bulletin`` in a
transaction, with its inbound row), its copies marked sent (delivered earlier), so the
outbox has nothing of it left to do. Reply *i* comes from member ``i % members``, to
``reactie+<token>@`` with the token of that member's copy in ``deliveries``, From the
member's own address. The replies are Gmail-like, about 5 KB: multipart/alternative with
the bulletin quoted, a Dutch attribution line, a signature with name, street and phone,
a phone number or address in some texts; every tenth is multipart/related with a small
inline JPEG carrying EXIF and GPS. ``replies_per_hour`` stays at its default 10 unless
replies / members needs more; ``acknowledge_replies`` is on (production's default) unless
``--no-ack``. So a reply makes 3 copies: to the bulletin's origin, to the coordinator,
and the ack to the member.

* **A, raw intake**: ``Gateway.start``, then its ``processor`` task (found by name among
  the loop's tasks) is cancelled, so an accepted reply is committed and stays 'received'
  while the rest of the gateway runs as usual: RCPT routing, the reply stages at DATA
  (loops, auto-replies, author, member, replay), the commit, the 250. Timed in the client
  from its first MAIL to its last 250. The sink must count 0. The data dir is then thrown
  away: draining it would put phase A's replies into the members' ``replies_per_hour``
  and into phase B's clock.
* **B, relay**: the gateway with all its workers, a fresh data dir, the same replies (new
  tokens, new Message-IDs). Timed from the client's first MAIL until the sink has
  accepted the last of ``replies x 3`` copies; then until every outcome is recorded and
  no inbound row is left unprocessed. Replies/s = replies / that first time.

Clocks: ``time.monotonic`` is CLOCK_MONOTONIC, one clock for every process on Linux, so
the client's first MAIL and the sink's last copy compare directly. CPU is shown per
process and, for the gateway, per reply and per thread (event loop, the ``to_thread``
pool where the anonymiser runs, aiosqlite's connection threads): whichever is near the
wall time is the bottleneck. Other processes' CPU on the machine during each phase is
shown too (from /proc/stat): when it is large, the wall times are not this code's alone.
``--timers`` wraps the anonymiser, DKIM signing, a reply's processing, the SMTP DATA
handling, write transactions and SQLite's COMMIT with timers; ``--profile`` adds cProfile
of the event-loop thread in each phase. The wrappers are set in this process only; no
code of the gateway changes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import quopri
import random
import resource
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiosmtplib
from lean_sink import LeanSink, SinkCounts  # bench/, the script's own folder

from bin_gateway import anonymise as anonymise_module
from bin_gateway import reply_relay
from bin_gateway.app import Gateway
from bin_gateway.config import Config, load_config
from bin_gateway.keys import generate_key, write_private_key
from bin_gateway.log import configure_logging
from bin_gateway.models import InboundState, RouteKind
from bin_gateway.services import DATABASE_NAME
from bin_gateway.signing import Signer
from bin_gateway.smtp_server import GatewayHandler
from bin_gateway.store import NewInbound, Store, base, open_store

DOMAIN = "bin.example.nl"
LIST_ID = "buurt-noord"
LIST_NAME = "BIN Noord"
AGENCY = "wijkagent.noord@politie.example"
COORDINATOR = "coordinator.noord@example.nl"
SUBJECT = "Inbraken in Noord"
TARGET_RATE = 200.0  # replies/s, issue #3
DEFAULT_PER_HOUR = 10

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

[inbound]
require = "none"

[delivery]
mode = "smtp"
smarthost = "127.0.0.1:{port}"
starttls = "off"

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@politie.example"]
lists = ["{list_id}"]

[[lists]]
id = "{list_id}"
name = "{list_name}"
coordinators = ["{coordinator}"]
acknowledge_replies = {ack}
replies_per_hour = {per_hour}
"""

_PARAGRAPHS = (
    "Deze week is er drie keer ingebroken in woningen aan de Dorpsstraat en de Kerklaan. "
    "De daders kwamen binnen via een openstaand raam aan de achterkant.",
    "Sluit ramen en deuren, ook als u maar even weg bent, en laat 's avonds een lamp "
    "branden. Zet ladders en kliko's niet tegen de gevel.",
    "Ziet u iets verdachts, bel dan direct 112. Heeft u informatie over deze "
    "inbraken, bel dan 0900-8844 of reageer op dit bericht.",
)

# --- the members and their replies (built in the client, not timed) ----------------------

_FIRST = ("Anne", "Bram", "Carla", "Daan", "Els", "Fatima", "Gert", "Hanneke", "Ibrahim",
          "Joke", "Kees", "Lotte", "Mohamed", "Noor", "Pieter", "Roos", "Sanne", "Thijs",
          "Wim", "Yvonne")
_LAST = ("de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
         "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Dijk",
         "El Amrani", "Yılmaz", "Dekker")
_PROVIDERS = ("gmail.com", "ziggo.nl", "kpnmail.nl", "hotmail.com", "xs4all.nl")
_STREETS = ("Dorpsstraat", "Kerklaan", "Molenweg", "Schoolstraat", "Beukenlaan",
            "Julianastraat", "Wilhelminaplein", "Eikenlaan")
_OWN_TEXTS = (
    "Goedemiddag,\n\nIk heb gisteravond rond 23:00 uur een witte bestelbus zonder "
    "verlichting door de {street} zien rijden. Het kenteken begon met VX. Bel me gerust "
    "als u meer wilt weten: {phone}.",
    "Dank voor het bericht! Bij ons aan de {street} is vorige week ook aan de achterdeur "
    "gemorreld. We hebben camerabeelden; mail maar naar {email} als de wijkagent ze wil "
    "zien.",
    "Is er al iets bekend over de daders? Mijn buurvrouw zag twee jongens op een scooter "
    "die bij de garageboxen stonden te kijken. Zij is bereikbaar op {other_phone}.",
    "Goed dat jullie dit delen. Kunnen we als buurt een buurtwacht opzetten? Ik wil best "
    "één avond per week meelopen.\n\nGroetjes, {first}",
    "Wij wonen op nummer {house} en hebben niets gezien, maar we letten extra op. Kan de "
    "gemeente de lantaarnpaal bij het pad achter de tuinen repareren? Die is al weken "
    "kapot, dat nodigt wel uit.",
)
_PHOTO_TEXT = (
    "Hierbij een foto van de auto die al twee dagen bij het speeltuintje aan de {street} "
    "staat. Ik vertrouw het niet helemaal, misschien kan iemand ernaar kijken?"
)


def member_identity(n: int) -> tuple[str, str]:
    """Member ``n``'s (address, display name)."""
    first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST)) % len(_LAST)]
    slug = "".join(c for c in last.lower() if c.isascii() and c.isalnum())
    return f"{first.lower()}.{slug}{n}@{_PROVIDERS[n % len(_PROVIDERS)]}", f"{first} {last}"


def _phone(n: int) -> str:
    return f"06-{12000000 + n * 7919 % 87999999:08d}"


def _qp(text: str) -> bytes:
    """A text as quoted-printable UTF-8 with CRLF lines, as Gmail sends it."""
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    return encoded.replace(b"\n", b"\r\n")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def make_photo() -> bytes:
    """A small photo-like JPEG (about 10 KB) with camera EXIF and a GPS position."""
    from PIL import ExifTags, Image

    size = (240, 180)
    picture = Image.radial_gradient("L").resize(size).convert("RGB")
    picture = Image.blend(picture, Image.effect_noise(size, 30).convert("RGB"), 0.25)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Apple"
    exif[ExifTags.Base.Model] = "iPhone 13"
    exif[ExifTags.Base.DateTime] = "2024:03:04 18:02:11"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {1: "N", 2: (51.0, 26.0, 30.5), 3: "E", 4: (5.0, 28.0, 10.2)}
    )
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=75, exif=exif)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class PlannedReply:
    member: int  # the member's index (their identity follows from it)
    token: str  # their copy's reply token
    delivery_id: int
    bulletin_id: int


def reply_message(
    i: int, phase: str, reply: PlannedReply, photo: bytes
) -> tuple[str, str, bytes]:
    """Reply ``i`` as Gmail writes it: (envelope sender, recipient, message)."""
    rnd = random.Random(f"{phase}-{i}")
    address, name = member_identity(reply.member)
    first = name.split()[0]
    street = _STREETS[reply.member % len(_STREETS)]
    house = 1 + reply.member % 97
    phone = _phone(reply.member)
    fields = {"street": street, "phone": phone, "email": address, "first": first,
              "house": house, "other_phone": _phone(reply.member + 5000)}
    with_photo = i % 10 == 3
    own = (_PHOTO_TEXT if with_photo else _OWN_TEXTS[i % len(_OWN_TEXTS)]).format(**fields)
    reply_to = f"reactie+{reply.token}@{DOMAIN}"
    origin = "Politie Oost-Brabant via BIN Noord"
    attribution = f"Op ma 4 mrt 2024 om 10:00 schreef {origin} <\n{reply_to}>:"
    quoted_lines = ["Beste buurtbewoners,", ""]
    for paragraph in _PARAGRAPHS:
        quoted_lines += [*textwrap.wrap(paragraph, 74), ""]
    quoted_lines += ["Met vriendelijke groet,", "Wijkagent Noord", "Politie Oost-Brabant"]
    signature = [name, f"{street} {house}", "5611 AB Eindhoven", f"Tel: {phone}"]
    text = "\n".join([
        own, "", "-- ", *signature, "", attribution, "",
        *(f"> {line}" if line else ">" for line in quoted_lines), "",
    ])
    cid = f"ii_{rnd.getrandbits(40):010x}"
    image_html = (f'<div><img src="cid:{cid}" alt="IMG_4032.jpg" width="240" height="180">'
                  "<br></div>") if with_photo else ""
    own_html = "".join(f"<div>{line}</div>" if line else "<div><br></div>"
                       for line in own.split("\n"))
    html = (
        f'<div dir="ltr"><div>{own_html}</div>{image_html}<br clear="all"><div><div '
        'dir="ltr" class="gmail_signature" data-smartmail="gmail_signature"><div dir="ltr">'
        + "".join(f"<div>{line}</div>" for line in signature)
        + '</div></div></div></div><br><div class="gmail_quote gmail_quote_container"><div '
        f'dir="ltr" class="gmail_attr">Op ma 4 mrt 2024 om 10:00 schreef {origin} &lt;<a '
        f'href="mailto:{reply_to}">{reply_to}</a>&gt;:<br></div><blockquote '
        'class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
        'rgb(204,204,204);padding-left:1ex"><div dir="ltr"><p>Beste buurtbewoners,</p>'
        + "".join(f"<p>{p}</p>" for p in _PARAGRAPHS)
        + "<p>Met vriendelijke groet,<br>Wijkagent Noord<br>Politie Oost-Brabant</p>"
        "</div></blockquote></div>\n"
    )
    inner = f"000000000000{rnd.getrandbits(48):012x}"
    alternative = (
        b"--" + inner.encode() + b"\r\n"
        b'Content-Type: text/plain; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(text) + b"\r\n"
        b"--" + inner.encode() + b"\r\n"
        b'Content-Type: text/html; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(html) + b"\r\n"
        b"--" + inner.encode() + b"--\r\n"
    )
    if with_photo:
        outer = f"000000000000{rnd.getrandbits(48):012x}"
        content_type = f'multipart/related; boundary="{outer}"'
        body = (
            f"--{outer}\r\n"
            f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'
        ).encode() + alternative + (
            f"\r\n--{outer}\r\n"
            'Content-Type: image/jpeg; name="IMG_4032.jpg"\r\n'
            'Content-Disposition: inline; filename="IMG_4032.jpg"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-ID: <{cid}>\r\nX-Attachment-Id: {cid}\r\n\r\n"
        ).encode() + _b64(photo) + f"--{outer}--\r\n".encode()
    else:
        content_type = f'multipart/alternative; boundary="{inner}"'
        body = alternative
    fake_b = base64.b64encode(rnd.randbytes(256)).decode()
    fake_bh = base64.b64encode(rnd.randbytes(32)).decode()
    provider = address.rsplit("@", 1)[1]
    in_reply_to = f"<bulletin-{reply.bulletin_id}-{reply.delivery_id}@{DOMAIN}>"
    head = (
        f"Received: by mail-wr1-f41.{provider} with SMTP id {rnd.getrandbits(64):x}\r\n"
        f"        for <{reply_to}>; {formatdate(localtime=True)}\r\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
        f"        d={provider}; s=20230601; t={int(time.time())};\r\n"
        "        h=to:subject:message-id:date:from:in-reply-to:references\r\n"
        "         :mime-version:from:to:cc:subject:date:message-id:reply-to;\r\n"
        f"        bh={fake_bh};\r\n"
        f"        b={fake_b[:60]}\r\n         {fake_b[60:130]}\r\n"
        f"         {fake_b[130:200]}\r\n         {fake_b[200:270]}\r\n"
        f"         {fake_b[270:]}\r\n"
        f"X-Gm-Message-State: AOJu0Y{rnd.getrandbits(120):x}\r\n"
        f"X-Google-Smtp-Source: AGHT+IH{rnd.getrandbits(160):x}\r\n"
        f"X-Received: by 2002:a05:6000:{rnd.getrandbits(16):x} with SMTP id"
        f" {rnd.getrandbits(48):x}; {formatdate(localtime=True)}\r\n"
        "MIME-Version: 1.0\r\n"
        f"References: {in_reply_to}\r\n"
        f"In-Reply-To: {in_reply_to}\r\n"
        f"From: {name} <{address}>\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: <CA+{phase}{i:06d}{rnd.getrandbits(96):x}@mail.gmail.com>\r\n"
        f"Subject: Re: [{LIST_NAME}] {SUBJECT}\r\n"
        f"To: {LIST_NAME} <{reply_to}>\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return address, reply_to, head.encode("utf-8") + body


# --- the client: a separate process ------------------------------------------------------


def run_client(plan_path: str) -> None:
    """Child mode: build the replies, connect, print READY, send on GO, print RESULT."""
    plan = json.loads(Path(plan_path).read_text("utf-8"))
    photo = make_photo()
    messages = [
        reply_message(i, plan["phase"], PlannedReply(*item), photo)
        for i, item in enumerate(plan["replies"])
    ]
    built = {"average": sum(len(m[2]) for m in messages) / max(1, len(messages)),
             "photos": sum(1 for i in range(len(messages)) if i % 10 == 3),
             "photo_bytes": len(photo)}
    asyncio.run(_client(plan["port"], plan["connections"], plan["per_session"], messages,
                        built))


async def _session(port: int) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                             local_hostname="mail-wr1-f41.google.com", timeout=300)
    await client.connect()
    await client.ehlo()
    return client


async def _client(
    port: int, connections: int, per_session: int, messages: list[tuple[str, str, bytes]],
    built: dict[str, Any],
) -> None:
    """``connections`` workers, each sending the next pending message over its session
    and starting a new session (QUIT, connect, EHLO: timed) after ``per_session``."""
    first_sessions = [await _session(port) for _ in range(connections)]
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    go = await loop.run_in_executor(None, sys.stdin.readline)
    if go.strip() != "GO":
        raise SystemExit(f"client: expected GO, got {go!r}")
    pending = list(reversed(messages))
    starts: list[float] = []
    ends: list[float] = []
    refused: Counter[str] = Counter()
    cpu = time.process_time()

    async def worker(client: aiosmtplib.SMTP) -> None:
        sent = 0
        while pending:
            if sent == per_session:
                with contextlib.suppress(aiosmtplib.SMTPException):
                    await client.quit()
                client, sent = await _session(port), 0
            sender, recipient, message = pending.pop()
            starts.append(time.monotonic())
            sent += 1
            try:
                await client.sendmail(sender, [recipient], message)
            except aiosmtplib.SMTPServerDisconnected as exc:
                refused[f"disconnected: {exc}"] += 1
                sent = per_session
            except aiosmtplib.SMTPException as exc:
                refused[str(exc)[:160]] += 1
                with contextlib.suppress(aiosmtplib.SMTPException):
                    await client.rset()
            else:
                ends.append(time.monotonic())
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()

    await asyncio.gather(*(worker(c) for c in first_sessions))
    cpu = time.process_time() - cpu
    result = {"first": min(starts, default=0.0), "last": max(ends, default=0.0),
              "accepted": len(ends), "refused": dict(refused.most_common(5)),
              "refused_count": sum(refused.values()), "cpu": cpu, **built}
    print("RESULT " + json.dumps(result), flush=True)


# --- the sink: a separate process --------------------------------------------------------


def serve_sink(expect: int) -> None:
    """Child mode: a counting SMTP server; prints its port, ALL <monotonic> when it has
    accepted ``expect`` messages, and RESULT (count, per recipient, CPU) on SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        def on_message(counts: SinkCounts) -> None:
            if counts.count == expect:
                print(f"ALL {time.monotonic():.6f}", flush=True)

        state = SinkCounts(on_message=on_message)
        server = await loop.create_server(lambda: LeanSink(state), "127.0.0.1", 0)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        started = time.process_time()  # not counting the interpreter's start and imports
        await stop.wait()
        server.close()
        print("RESULT " + json.dumps({"count": state.count, "cpu": time.process_time()
                                      - started, "by_recipient": state.by_recipient}),
              flush=True)

    asyncio.run(main())


# --- the children, seen from the gateway's process ---------------------------------------


class Child:
    """A child process of this script speaking in lines: ``WORD value``."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str, stdin: bool = False) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, *args, stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin else None,
        )
        return cls(process)

    async def line(self, word: str) -> str:
        """The value of the next line that starts with ``word``."""
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                raise SystemExit(f"a child ended before saying {word}")
            found, _, value = raw.decode().strip().partition(" ")
            if found == word:
                return value

    async def say(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> dict[str, Any]:
        """SIGTERM (if still running); the RESULT it printed."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        result = json.loads(await asyncio.wait_for(self.line("RESULT"), 60))
        await self.process.wait()
        assert isinstance(result, dict)
        return result


# --- setting up one phase's data dir and gateway -----------------------------------------


@dataclass(slots=True)
class Phase:
    name: str
    tmp: Path
    sink: Child
    config: Config
    plan: list[PlannedReply]
    gateway: Gateway | None = None

    @property
    def running(self) -> Gateway:
        assert self.gateway is not None
        return self.gateway


async def set_up(
    name: str, tmp: Path, pem: bytes, args: argparse.Namespace, expect: int
) -> Phase:
    """A fresh data dir: config, members, one published bulletin already delivered."""
    sink = await Child.start("--serve-sink", str(expect))
    config = write_config(tmp, int(await sink.line("PORT")), pem, args)
    store = await open_store(config.gateway.data_dir / DATABASE_NAME)
    try:
        await store.add_members(LIST_ID, [member_identity(n) for n in range(args.members)])
        inbound_id = await store.add_inbound(NewInbound(
            route=RouteKind.POST, target=LIST_ID, mail_from=AGENCY,
            rcpt_tos=[f"{LIST_ID}@{DOMAIN}"], client_ip="127.0.0.1",
            helo="mail.politie.example", raw=bulletin_message(), author=AGENCY, auth="dkim",
            message_id="<melding-1@politie.example>",
        ))
        async with store.transaction() as db:
            bulletin_id, count = await Store.create_bulletin(
                db, list_id=LIST_ID, inbound_id=inbound_id, submission_id=None,
                sender_name="Politie Oost-Brabant", origin=AGENCY, note="", subject=SUBJECT,
            )
            await Store.finish_inbound(db, inbound_id, InboundState.PROCESSED)
            await db.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = 1"
                " WHERE bulletin_id = ?", (time.time(), bulletin_id),
            )
        assert count == args.members
        rows = await store.read(
            "SELECT d.id, d.token, m.email FROM deliveries d JOIN members m"
            " ON m.id = d.member_id WHERE d.bulletin_id = ?", (bulletin_id,),
        )
    finally:
        await store.close()
    by_address = {row["email"]: (row["token"], row["id"]) for row in rows}
    plan = []
    for i in range(args.replies):
        member = i % args.members
        token, delivery_id = by_address[member_identity(member)[0]]
        plan.append(PlannedReply(member, token, delivery_id, bulletin_id))
    return Phase(name, tmp, sink, config, plan)


def write_config(tmp: Path, port: int, pem: bytes, args: argparse.Namespace) -> Config:
    tmp.mkdir()
    write_private_key(tmp / "dkim.pem", pem)
    per_hour = max(DEFAULT_PER_HOUR, math.ceil(args.replies / args.members))
    (tmp / "config.toml").write_text(CONFIG.format(
        domain=DOMAIN, port=port, list_id=LIST_ID, list_name=LIST_NAME,
        coordinator=COORDINATOR, ack="false" if args.no_ack else "true", per_hour=per_hour,
    ), "utf-8")
    return load_config(tmp / "config.toml")


def bulletin_message() -> bytes:
    text = "\r\n\r\n".join(["Beste buurtbewoners,", *_PARAGRAPHS, "Wijkagent Noord"])
    return (
        f"From: Wijkagent Noord <{AGENCY}>\r\nTo: {LIST_ID}@{DOMAIN}\r\n"
        f"Subject: {SUBJECT}\r\nDate: Mon, 04 Mar 2024 10:00:00 +0100\r\n"
        "Message-ID: <melding-1@politie.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
    ).encode()


async def start_client(phase: Phase, args: argparse.Namespace) -> Child:
    plan_path = phase.tmp / "plan.json"
    plan_path.write_text(json.dumps({
        "phase": phase.name, "port": phase.running.ports[0], "connections": args.connections,
        "per_session": args.per_session,
        "replies": [[p.member, p.token, p.delivery_id, p.bulletin_id] for p in phase.plan],
    }), "utf-8")
    client = await Child.start("--client", str(plan_path), stdin=True)
    await asyncio.wait_for(client.line("READY"), 300)
    return client


async def count_of(phase: Phase, sql: str) -> int:
    row = await phase.running.services.store.read_one(sql)
    return int(row[0]) if row else 0


# --- where the gateway's CPU goes --------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, grouped by what they do."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = defaultdict(float)
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        if thread is threading.main_thread():
            group = "event loop"
        elif thread.name.startswith("asyncio_"):
            group = "to_thread pool"
        elif "_connection_worker_thread" in thread.name:
            group = "aiosqlite"
        else:
            group = "other"
        found[group] += seconds
    return found


def machine_busy() -> float:
    """CPU seconds all processes on this machine have used since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def since(before: dict[str, float]) -> dict[str, float]:
    after = thread_cpu()
    return {group: after[group] - before.get(group, 0.0) for group in after}


@dataclass(slots=True)
class Timer:
    calls: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # of the calling thread


TIMERS: dict[str, Timer] = defaultdict(Timer)


def instrument() -> None:
    """--timers: wrap the parts a reply goes through with timers (this process only)."""
    def timed_sync(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                timer = TIMERS[name]
                timer.calls += 1
                timer.wall += time.perf_counter() - wall
                timer.cpu += time.thread_time() - cpu
        return wrapper

    def timed_async(
        name: str, function: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                TIMERS[name].calls += 1
                TIMERS[name].wall += time.perf_counter() - wall
        return wrapper

    run_sql = base._run

    async def timed_run(db: Any, sql: str) -> None:
        if sql != "COMMIT":
            await run_sql(db, sql)
            return
        wall = time.perf_counter()
        await run_sql(db, sql)
        TIMERS["SQLite COMMIT, awaited"].calls += 1
        TIMERS["SQLite COMMIT, awaited"].wall += time.perf_counter() - wall

    transaction = base.StoreBase.transaction

    @asynccontextmanager
    async def timed_transaction(self: Any) -> AsyncIterator[Any]:
        wall = time.perf_counter()
        async with transaction(self) as db:
            TIMERS["write lock wait + BEGIN"].calls += 1
            TIMERS["write lock wait + BEGIN"].wall += time.perf_counter() - wall
            yield db
        TIMERS["write transaction, whole"].calls += 1
        TIMERS["write transaction, whole"].wall += time.perf_counter() - wall

    reply_relay.anonymise = timed_sync("anonymise (to_thread)", reply_relay.anonymise)
    Signer.sign_message = timed_sync(  # type: ignore[method-assign]
        "Signer.sign_message (event loop)", Signer.sign_message)
    reply_relay.ReplyRelay.member_reply = timed_async(  # type: ignore[method-assign]
        "ReplyRelay.member_reply, whole", reply_relay.ReplyRelay.member_reply)
    GatewayHandler._judge_and_store = timed_async(  # type: ignore[method-assign]
        "SMTP DATA: judge and store", GatewayHandler._judge_and_store)
    base._run = timed_run
    base.StoreBase.transaction = timed_transaction  # type: ignore[method-assign]


# --- the two phases ----------------------------------------------------------------------


@dataclass(slots=True)
class Intake:
    wall: float
    accepted: int
    refused: dict[str, int]
    client: dict[str, Any]
    gateway_cpu: float
    sink: dict[str, Any]
    stored: int
    threads: dict[str, float]
    machine: float  # CPU s of every process on the machine during the phase


async def phase_intake(
    phase: Phase, args: argparse.Namespace, profiler: cProfile.Profile | None
) -> Intake:
    phase.gateway = await Gateway.start(phase.config)
    processor = next(t for t in asyncio.all_tasks() if t.get_name() == "processor")
    processor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await processor
    client = await start_client(phase, args)
    threads_before = thread_cpu()
    cpu, machine = time.process_time(), machine_busy()
    if profiler:
        profiler.enable()
    await client.say("GO")
    result = json.loads(await client.line("RESULT"))
    if profiler:
        profiler.disable()
    gateway_cpu, machine = time.process_time() - cpu, machine_busy() - machine
    threads = since(threads_before)
    await client.process.wait()
    stored = await count_of(phase, "SELECT count(*) FROM inbound WHERE route = 'reply'"
                                   " AND state = 'received'")
    await phase.running.stop()
    sink = await phase.sink.stop()
    return Intake(result["last"] - result["first"], result["accepted"], result["refused"],
                  result, gateway_cpu, sink, stored, threads, machine)


@dataclass(slots=True)
class Relay:
    delivered: float | None  # first MAIL -> the sink's last expected copy
    recorded: float | None  # ... -> every outcome committed, every inbound row processed
    intake: float  # first MAIL -> last 250, while relaying
    client: dict[str, Any]
    sink: dict[str, Any]
    gateway_cpu: float
    threads: dict[str, float]
    counts: dict[str, int]
    rss_mb: float
    machine: float
    worker_cpu: float  # the reply pool's processes, started with the first reply


def pool_cpu(gateway: Gateway) -> float:
    """CPU seconds of the reply pool's worker processes so far (their start included)."""
    pool = gateway.reply_pool._pool
    total = 0.0
    for pid in getattr(pool, "_processes", None) or {}:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def phase_relay(
    phase: Phase, args: argparse.Namespace, expect: int, profiler: cProfile.Profile | None
) -> Relay:
    phase.gateway = await Gateway.start(phase.config)
    client = await start_client(phase, args)
    threads_before = thread_cpu()
    cpu, machine = time.process_time(), machine_busy()
    if profiler:
        profiler.enable()
    await client.say("GO")
    all_line = asyncio.create_task(phase.sink.line("ALL"))
    result_line = asyncio.create_task(client.line("RESULT"))
    deadline = time.monotonic() + max(120.0, args.replies / 10)
    while time.monotonic() < deadline:
        done, _ = await asyncio.wait([all_line], timeout=1.0)
        if done:
            break
        failed = phase.running.failed_task()
        if failed is not None:
            raise SystemExit(f"gateway worker {failed.get_name()} died: {failed.exception()!r}")
        if result_line.done() and await idle(phase):  # nothing left to send: it is short
            await asyncio.wait([all_line], timeout=2.0)  # unless ALL is still in the pipe
            break
    last_copy = float(all_line.result()) if all_line.done() else None
    recorded_at: float | None = None
    if last_copy is not None:
        while time.monotonic() < deadline:
            if await idle(phase):
                recorded_at = time.monotonic()
                break
            await asyncio.sleep(0.01)
    if profiler:
        profiler.disable()
    gateway_cpu, machine = time.process_time() - cpu, machine_busy() - machine
    worker_cpu = pool_cpu(phase.gateway)
    threads = since(threads_before)
    rss = peak_rss_mb()
    all_line.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await all_line  # before anyone else reads the sink's output
    result = json.loads(await result_line)
    await client.process.wait()
    counts = {
        "received": await count_of(phase, "SELECT count(*) FROM inbound WHERE route = 'reply'"),
        "processed": await count_of(phase, "SELECT count(*) FROM inbound WHERE route = 'reply'"
                                           " AND state = 'processed'"),
        "relayed": await count_of(phase, "SELECT count(*) FROM replies WHERE state = 'relayed'"),
        "held": await count_of(phase, "SELECT count(*) FROM replies WHERE state = 'held'"),
        "sent": await count_of(phase, "SELECT count(*) FROM deliveries WHERE outbound_id IS"
                                      " NOT NULL AND state = 'sent'"),
    }
    await phase.running.stop()
    sink = await phase.sink.stop()
    first = result["first"]
    return Relay(
        last_copy - first if last_copy else None, recorded_at - first if recorded_at else None,
        result["last"] - first, result, sink, gateway_cpu, threads, counts, rss, machine,
        worker_cpu,
    )


async def idle(phase: Phase) -> bool:
    """No reply waiting to be processed and no copy waiting to be sent or recorded."""
    return await count_of(
        phase, "SELECT (SELECT count(*) FROM inbound WHERE state = 'received')"
               " + (SELECT count(*) FROM deliveries WHERE state IN ('queued', 'sending'))"
    ) == 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the run -----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> bool:
    if args.profile or args.timers:
        instrument()
    pem = generate_key(args.key, 2048)
    per_reply = 2 + (0 if args.no_ack else 1)  # origin + coordinator (+ the member's ack)
    expect = args.replies * per_reply
    with tempfile.TemporaryDirectory(prefix="bench-replies-") as directory:
        tmp = Path(directory)
        log_file = (tmp / "gateway.log").open("w", encoding="utf-8")
        configure_logging(json=True, level="info", stream=log_file)
        rss_before = peak_rss_mb()

        a = await set_up("a", tmp / "a", pem, args, expect=0)
        profile_a = cProfile.Profile() if args.profile else None
        intake = await phase_intake(a, args, profile_a)
        timers_a = dict(TIMERS)
        TIMERS.clear()

        b = await set_up("b", tmp / "b", pem, args, expect=expect)
        profile_b = cProfile.Profile() if args.profile else None
        relay = await phase_relay(b, args, expect, profile_b)
        timers_b = dict(TIMERS)
        log_file.close()

    client = relay.client
    intake_rate = intake.accepted / intake.wall if intake.wall > 0 else 0.0
    rate = args.replies / relay.delivered if relay.delivered else 0.0
    ratio = rate / intake_rate if intake_rate else 0.0
    by_recipient = relay.sink["by_recipient"]
    members_acked = {a: n for a, n in by_recipient.items() if a not in (AGENCY, COORDINATOR)}
    expected_acks = Counter(member_identity(p.member)[0] for p in b.plan)
    ok_counts = (
        intake.accepted == intake.stored == args.replies and intake.sink["count"] == 0
        and client["accepted"] == args.replies and relay.sink["count"] == expect
        and by_recipient.get(AGENCY) == by_recipient.get(COORDINATOR) == args.replies
        and members_acked == ({} if args.no_ack else dict(expected_acks))
        and relay.counts["relayed"] == relay.counts["processed"] == args.replies
        and relay.counts["held"] == 0 and relay.counts["sent"] == expect
    )
    ok_rate = rate >= TARGET_RATE
    verdict = {True: "PASS", False: "FAIL"}
    cpus = os.cpu_count()
    print(f"\nmember replies through the whole gateway: {args.replies} replies from"
          f" {args.members} members ({client['average'] / 1024:.1f} KB average,"
          f" {client['photos']} with a {client['photo_bytes'] / 1024:.0f} KB JPEG)")
    per_hour = b.config.lists[0].replies_per_hour
    print(f"  {per_reply} copies a reply (origin, coordinator"
          f"{'' if args.no_ack else ', ack to the member'}; acknowledge_replies ="
          f" {str(not args.no_ack).lower()}), replies_per_hour = {per_hour}, {args.key} key,"
          f" {args.connections} client connections,"
          f" {cpus} CPUs{'' if cpus == 2 else ' (the target is for 2)'}")
    doc = (anonymise_module.__doc__ or "").strip().splitlines() or ["(no docstring)"]
    print(f"  anonymise.py in use: {doc[0][:88]}")
    head = "CPU s: gateway  client    sink"
    print(f"  {'':40} {'wall':>9}  {'rate':>16}  {head}")
    print(f"  {'A raw intake (processor stopped)':40} {intake.wall:7.2f} s"
          f"  {intake_rate:7.0f} replies/s  {intake.gateway_cpu:14.2f}"
          f"  {intake.client['cpu']:6.2f}  {intake.sink['cpu']:6.2f}")
    if relay.delivered:
        print(f"  {'B relay: last copy at the sink':40} {relay.delivered:7.2f} s"
              f"  {rate:7.0f} replies/s  {relay.gateway_cpu:14.2f}"
              f"  {client['cpu']:6.2f}  {relay.sink['cpu']:6.2f}")
        print(f"  {'':40} {'':9}  {expect / relay.delivered:7.0f} copies/s")
    else:
        print(f"  {'B relay: INCOMPLETE':40} sink got {relay.sink['count']} of {expect}")
    if relay.recorded:
        print(f"  {'B relay: all outcomes recorded':40} {relay.recorded:7.2f} s"
              f"  {args.replies / relay.recorded:7.0f} replies/s")
    print(f"  {'B intake while relaying (last 250)':40} {relay.intake:7.2f} s"
          f"  {args.replies / relay.intake:7.0f} replies/s")
    print(f"  {'ratio relay / raw intake':40} {ratio:7.2f}")
    print(f"  {'target >= 200 replies/s':40} {rate:7.0f}    {verdict[ok_rate]}")
    for name, threads, cpu in (("A", intake.threads, intake.gateway_cpu),
                               ("B", relay.threads, relay.gateway_cpu)):
        print(f"  {'gateway CPU ms a reply in ' + name:40} {cpu * 1000 / args.replies:7.2f} ms"
              "  (" + ", ".join(f"{group} {seconds * 1000 / args.replies:.2f}"
                                for group, seconds in sorted(threads.items()) if seconds) + ")")
    print(f"  {'reply worker process CPU ms a reply':40}"
          f" {relay.worker_cpu * 1000 / args.replies:7.2f} ms  (anonymise, build, sign;"
          " its start-up included)")
    print(f"  {'peak RSS of the gateway process':40} {relay.rss_mb:7.1f} MB"
          f"  (before set-up: {rss_before:.1f} MB)")
    refused = intake.refused | client["refused"]
    print(f"  {'counts':40} A: {intake.accepted} accepted, {intake.stored} stored, sink"
          f" {intake.sink['count']}; B: sink {relay.sink['count']}/{expect} (origin"
          f" {by_recipient.get(AGENCY, 0)}, coordinator {by_recipient.get(COORDINATOR, 0)},"
          f" acks {sum(members_acked.values())}), replies {relay.counts}"
          f"  {verdict[ok_counts]}")
    if refused:
        print(f"  refused: {refused}")
    others = {"A": intake.machine - intake.gateway_cpu - intake.client["cpu"]
              - intake.sink["cpu"],
              "B": relay.machine - relay.gateway_cpu - client["cpu"] - relay.sink["cpu"]
              - relay.worker_cpu}
    print(f"  {'other processes on the machine, CPU s':40} A {max(0.0, others['A']):.2f},"
          f" B {max(0.0, others['B']):.2f}" + ("  (the CPUs were shared: wall times suffer,"
          " CPU ms a reply less)" if max(others.values()) > 0.1 * relay.gateway_cpu else ""))
    if args.profile or args.timers:
        print_profile("A, raw intake", profile_a, timers_a, args.replies)
        print_profile("B, relay", profile_b, timers_b, args.replies)
    return ok_rate and ok_counts


def print_profile(
    phase: str, profiler: cProfile.Profile | None, timers: dict[str, Timer], replies: int
) -> None:
    print(f"\n--- phase {phase}: timers (any thread)"
          + (", cProfile (event-loop thread only)" if profiler else ""))
    for name, timer in sorted(timers.items()):
        cpu = f", thread CPU {timer.cpu * 1000 / timer.calls:5.2f} ms" if timer.cpu else ""
        print(f"  {name:34} {timer.calls:6d} calls, {timer.wall:6.2f} s,"
              f" {timer.wall * 1000 / max(1, timer.calls):6.2f} ms a call"
              f" ({timer.wall * 1000 / replies:5.2f} ms a reply){cpu}")
    if profiler is None:
        return
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats("bin_gateway", 25)
    print(out.getvalue())


def main() -> None:
    if sys.argv[1:2] == ["--serve-sink"]:
        serve_sink(int(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--client"]:
        run_client(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--key", choices=["rsa", "ed25519"], default="rsa",
                        help="the gateway's DKIM key (default rsa, as `dkim keygen`)")
    parser.add_argument("--connections", type=int, default=8,
                        help="concurrent SMTP connections of the sending client")
    parser.add_argument("--per-session", type=int, default=20,
                        help="messages a connection sends before QUIT and a new connection"
                             " (the gateway's aiosmtpd allows 100 MAILs a session)")
    parser.add_argument("--no-ack", action="store_true",
                        help="acknowledge_replies = false (default: true, one ack a reply)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the event loop in each phase, plus --timers")
    parser.add_argument("--timers", action="store_true",
                        help="time the parts of a reply (anonymiser, signing, transactions,"
                             " COMMIT) without cProfile's overhead")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
