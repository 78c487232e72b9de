"""``bin-gateway demo``: the whole story on this machine, in one command.

The real gateway starts in this process on a free loopback port with a demo
configuration written into a directory (SQLite there, every outgoing mail a file in
its ``outbox/`` Maildir). The demo then plays each person by SMTP — the police, the
coordinator, a member, the police again — and waits for what the gateway writes,
printing who sent what to whom and the file where each message can be opened.

Nothing is simulated: a step that does not happen within the timeout stops the demo
with exit status 1 and says which message never came. Sender authentication is off
(``require = "none"``) because nobody can DKIM-sign as the police from a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import textwrap
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import TextIO

import aiosmtplib

from .cli_common import EXIT_FAILURE, EXIT_OK, CliError, Subparsers
from .config import load_config
from .demo_outbox import DemoFailed, Mail, OutboxWatcher, to
from .keys import generate_key, write_private_key
from .log import configure_logging

__all__ = ["MEMBERS", "register"]

DOMAIN = "bin.example.nl"
LIST = f"buurt-noord@{DOMAIN}"
POLICE = "wijkagent@politie.example"
POLICE_NAME = "Wijkagent Sanne de Groot"
COORDINATOR = "coordinator@example.org"
MEMBERS = (
    ("anouk@example.org", "Anouk de Vries"),
    ("bram@example.org", "Bram Jansen"),
    ("fenna@example.org", "Fenna Bakker"),
    ("joost@example.org", "Joost van Dijk"),
    ("mirjam@example.org", "Mirjam Visser"),
)
REPLYING = MEMBERS[0]  # the member who answers the bulletin
REPLY_PHONE = "06-12345678"
REPLY_STREET = "Dorpsstraat 3"
DEFAULT_TIMEOUT = 30.0

# The same as scripts/dev-config.toml, but on a free port: nothing else may be using 2525.
CONFIG = f"""\
# Written by `bin-gateway demo`. Everything stays on this machine: SQLite here, every
# outgoing mail a file in outbox/new/. No sender authentication: never use on a network.
[gateway]
domain = "{DOMAIN}"
hostname = "localhost.{DOMAIN}"
listen = ["127.0.0.1:0"]
data_dir = "."
admin = "beheer@example.org"
language = "nl"

[dkim]
selector = "demo"
private_key = "dkim.pem"

[inbound]
require = "none"   # the demo plays the police; in production DKIM/SPF is checked

[delivery]
mode = "maildir"
maildir = "outbox"

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@politie.example"]
lists = ["buurt-noord"]

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["{COORDINATOR}"]
"""


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    del common  # the demo writes its own configuration; --config means nothing here
    cmd = commands.add_parser(
        "demo", help="play the whole story on this machine and show every mail",
        description="Start the real gateway on a free loopback port with a demo "
        "configuration (SQLite and a Maildir outbox in DIR), then play the police, the "
        "coordinator and a member by SMTP. Prints each step and the file of each message. "
        "Sender authentication is off for the demo.",
    )  # fmt: skip
    cmd.add_argument(
        "--dir", type=Path, metavar="DIR",
        help="where the files go: a new or empty directory, kept afterwards "
        "(default: a new temporary directory, also kept)",
    )  # fmt: skip
    cmd.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"how long to wait for each message (default {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    cmd.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    directory = _prepare_directory(args.dir)
    out = sys.stdout
    try:
        asyncio.run(_play(directory, out, args.timeout))
    except DemoFailed as exc:
        print(f"\nThe demo stopped: {exc}", file=out, flush=True)
        print(f"What happened so far is in {directory} (log: {directory / 'gateway.log'}).",
              file=out)  # fmt: skip
        raise CliError(f"demo failed: {exc}", EXIT_FAILURE) from None
    return EXIT_OK


def _prepare_directory(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="bin-gateway-demo-")).resolve()
    directory = given.expanduser().resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise CliError(f"{directory} is not an empty directory: the demo needs a fresh one")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


# --- playing the people ----------------------------------------------------------------


def _message(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    return message


async def _send(port: int, message: EmailMessage, who: str) -> str:
    """Send by SMTP to the gateway; the reply text it gave, or DemoFailed."""
    try:
        _, reply = await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=30)
    except aiosmtplib.SMTPException as exc:
        raise DemoFailed(f"the gateway refused the mail of {who}: {exc}") from None
    return f"250 {reply}"


class Printer:
    """The demo's own words, as a person reads them: steps, quotes and files."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._step = 0

    def line(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)

    def step(self, title: str) -> None:
        self._step += 1
        self.line()
        self.line(f"{self._step}. {title}")

    def say(self, text: str) -> None:
        self.line(textwrap.fill(text, 88, initial_indent="   ", subsequent_indent="   "))

    def quote(self, text: str, limit: int = 14) -> None:
        lines = text.strip("\n").splitlines()
        for line in lines[:limit]:
            self.line(f"   | {line}".rstrip())
        if len(lines) > limit:
            self.line(f"   | ... ({len(lines) - limit} more lines)")

    def mail(self, mail: Mail, label: str = "") -> None:
        who = label or mail.recipient
        self.line(f'   to {who}: "{mail.subject}"')
        self.line(f"      open: {mail.path}")


# --- the story -------------------------------------------------------------------------


async def _play(directory: Path, out: TextIO, wait_seconds: float) -> None:
    from .app import Gateway  # the daemon's imports are only needed here

    say = Printer(out)
    config_path = directory / "config.toml"
    config_path.write_text(CONFIG, encoding="utf-8")
    write_private_key(directory / "dkim.pem", generate_key("ed25519"))
    config = load_config(config_path)
    with (directory / "gateway.log").open("a", encoding="utf-8") as log_file:
        configure_logging(json=True, level="info", stream=log_file)
        gateway = await Gateway.start(config)
        try:
            await gateway.services.store.add_members("buurt-noord", list(MEMBERS))
            watcher = OutboxWatcher(config.delivery.maildir / "new", wait_seconds)
            _introduce(say, directory, config.delivery.maildir / "new", gateway.ports[0])
            await _story(say, watcher, gateway.ports[0])
        finally:
            await gateway.stop()
            configure_logging(level="warning", stream=sys.stderr)  # the file closes next
    _conclude(say, directory, config.delivery.maildir / "new")


def _introduce(say: Printer, directory: Path, new_dir: Path, port: int) -> None:
    say.line("bin-gateway demo: the whole story, played on this machine by the real gateway.")
    say.line()
    say.say(f"The gateway for {DOMAIN} is listening on 127.0.0.1:{port} (SMTP). It has one "
            f'list, {LIST} ("BIN Noord"), with coordinator {COORDINATOR} and '
            f"{len(MEMBERS)} members:")  # fmt: skip
    for address, name in MEMBERS:
        say.line(f"     {name} <{address}>")
    say.say(f"Its database and settings are in {directory}. Nothing leaves this machine: "
            f"every mail the gateway sends is written as a file to {new_dir}/ — open any "
            "of them with a mail client or a text viewer.")  # fmt: skip
    say.say(
        'Sender authentication is off for this demo (inbound.require = "none"), so '
        "this program may play the police. In production, mail from the police is "
        "checked with DKIM/SPF, and only an authenticated coordinator can approve."
    )


async def _story(say: Printer, watcher: OutboxWatcher, port: int) -> None:
    subject = "Inbraken in Noord"
    say.step("The police mail the list")
    bulletin = ("Beste buurtbewoners,\n\nEr is deze week twee keer ingebroken aan de "
                "Dorpsstraat, beide keren 's avonds via de achterdeur.\nHeeft u iets "
                "gezien? Laat het ons weten.\n\nWijkagent Sanne de Groot")  # fmt: skip
    sent = await _send(port, _message(f"{POLICE_NAME} <{POLICE}>", LIST, subject, bulletin),
                       "the police")  # fmt: skip
    say.say(f'{POLICE_NAME} <{POLICE}> sends "{subject}" to {LIST}.')
    say.say(f"The gateway answers {sent}: the mail is stored, and held until a "
            "coordinator approves it. No member has seen it yet.")  # fmt: skip

    say.step("The gateway asks the coordinator to approve")
    (request,) = await watcher.wait("the moderation mail to the coordinator", to(COORDINATOR))
    token_address = parseaddr(request.header("Reply-To"))[1]
    say.mail(request, COORDINATOR)
    say.say(f"It shows the bulletin and asks for a reply to {token_address}: OK to send "
            "it, NEE with a reason to refuse. That address works once and for this "
            "bulletin only.")  # fmt: skip

    await _approve(say, watcher, port, token_address, subject)
    copy = await _bulletins(say, watcher)
    thread = await _member_reply(say, watcher, port, copy)
    await _agency_answer(say, watcher, port, thread)


async def _approve(
    say: Printer, watcher: OutboxWatcher, port: int, token_address: str, subject: str
) -> None:
    say.step("The coordinator approves by replying OK")
    note = "Graag extra opletten rond de school."
    reply = _message(COORDINATOR, token_address, f"Re: {subject}", f"OK\n{note}")
    await _send(port, reply, "the coordinator")
    say.say(f'{COORDINATOR} replies "OK" to {token_address}, with a line for the '
            f'members: "{note}"')  # fmt: skip


async def _bulletins(say: Printer, watcher: OutboxWatcher) -> Mail:
    say.step(f"The bulletin goes out: one copy for each of the {len(MEMBERS)} members")
    copies = {}
    for address, _ in MEMBERS:
        (copies[address],) = await watcher.wait(f"the bulletin copy for {address}", to(address))
    first = copies[MEMBERS[0][0]]
    say.line(f"   From: {first.header('From')}")
    say.line(f"   Subject: {first.subject}")
    say.say(
        f"Signed by the gateway (DKIM, d={DOMAIN}), the coordinator's note above the "
        "bulletin; each copy has its member's own reply address and unsubscribe link:"
    )
    for address, name in MEMBERS:
        say.line(f"   to {name} <{address}>")
        say.line(f"      open: {copies[address].path}")
    (outcome,) = await watcher.wait("the police's outcome mail", to(POLICE))
    say.say("The police hear the outcome:")
    say.mail(outcome)
    (confirmation,) = await watcher.wait("the coordinator's confirmation", to(COORDINATOR))
    say.say("The coordinator gets a confirmation:")
    say.mail(confirmation)
    return copies[REPLYING[0]]


async def _member_reply(say: Printer, watcher: OutboxWatcher, port: int, copy: Mail) -> str:
    address, name = REPLYING
    say.step(f"{name.split()[0]}, a member, replies — with her name and phone number in it")
    reply_to = parseaddr(copy.header("Reply-To"))[1]
    body = (f"Ik zag gisteravond rond half tien een witte bus bij nummer 14.\n"
            f"Bel me gerust: {REPLY_PHONE}.\n\nMet vriendelijke groet,\n{name}\n"
            f"{REPLY_STREET}")  # fmt: skip
    await _send(port, _message(f"{name} <{address}>", reply_to, f"Re: {copy.subject}", body),
                "the member")  # fmt: skip
    say.say(f"{name} <{address}> answers her copy, which goes to its Reply-To, "
            f"{reply_to}. She writes:")  # fmt: skip
    say.quote(body)

    say.step("The gateway passes the reply on, anonymised")
    relays = await watcher.wait(
        "the anonymised reply to the police and the coordinator",
        lambda mail: mail.recipient in (POLICE, COORDINATOR) and "Bewoner" in mail.subject,
        count=2,
    )
    relay = next(mail for mail in relays if mail.recipient == POLICE)
    say.say("It rebuilds the reply from scratch and sends it under a pseudonym to the police "
            "and the coordinator:")  # fmt: skip
    say.line(f"   From: {relay.header('From')}")
    for mail in relays:
        say.mail(mail)
    say.say("What the police read (her name, street and phone number are gone; "
            "[afgeschermd] means 'screened off'):")  # fmt: skip
    say.quote(relay.text())
    (ack,) = await watcher.wait(f"the note to {address} that her reply was passed on",
                                to(address))  # fmt: skip
    say.say(f"{name.split()[0]} gets a short note saying it was passed on and what was left out:")
    say.mail(ack)
    say.quote("\n".join(line for line in ack.text().splitlines() if line.startswith("* ")))
    return parseaddr(relay.header("From"))[1]


async def _agency_answer(say: Printer, watcher: OutboxWatcher, port: int, thread: str) -> None:
    address, name = REPLYING
    say.step("The police answer the member, still without knowing who she is")
    body = (f"Dank u wel, dit helpt ons. Weet u nog welke kant de bus op reed?\n\n"
            f"Met vriendelijke groet,\n{POLICE_NAME}\n{POLICE}")  # fmt: skip
    answer = _message(f"{POLICE_NAME} <{POLICE}>", thread, "Re: Reactie", body)
    await _send(port, answer, "the police (answer)")
    say.say(f"{POLICE} replies to {thread}, the address the anonymised reply came from:")
    say.quote(body)

    say.step(f"The answer reaches {name.split()[0]}, without the police officer's name or address")
    (back,) = await watcher.wait(f"the police's answer to {address}", to(address))
    say.mail(back)
    say.line(f"   From: {back.header('From')}")
    say.say("She can answer it again; the police still will not learn who she is. "
            "She reads:")  # fmt: skip
    say.quote(back.text())


def _conclude(say: Printer, directory: Path, new_dir: Path) -> None:
    count = sum(1 for _ in new_dir.iterdir())
    say.line()
    say.line(f"Done: the whole story, {count} mails, all in {new_dir}/")
    say.say(f"The files stay there; delete {directory} when you are done. The gateway's "
            f"own log of it all is {directory / 'gateway.log'} (JSON lines). To look "
            "from the administrator's side:")  # fmt: skip
    say.line(f"     bin-gateway --config {directory / 'config.toml'} held list --all")
    say.line(f"     bin-gateway --config {directory / 'config.toml'} stats")
