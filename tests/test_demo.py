"""``bin-gateway demo``: the whole story, run as a newcomer runs it, and its mails checked.

The demo is started once per module as a subprocess (``python -m bin_gateway demo --dir
tmp``), exactly as the README tells people to; the tests then read the Maildir it leaves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path

import dkim
import pytest

from bin_gateway.cli import main
from bin_gateway.demo import COORDINATOR, MEMBERS, POLICE, POLICE_NAME
from bin_gateway.demo_outbox import DemoFailed, OutboxWatcher
from bin_gateway.keys import dkim_txt_record
from tests.support.reply_corpus import decoded_dump

REPO = Path(__file__).resolve().parent.parent
ANOUK, ANOUK_NAME = MEMBERS[0]


@dataclass(frozen=True)
class DemoRun:
    directory: Path
    stdout: str
    mails: list[tuple[Path, bytes, EmailMessage]]

    def to(self, recipient: str) -> list[tuple[Path, bytes, EmailMessage]]:
        return [m for m in self.mails if m[2]["Delivered-To"] == recipient]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    cwd = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "BIN_GATEWAY_CONFIG"}
    env["PYTHONPATH"] = str(REPO)  # the package of this checkout, installed or not
    result = subprocess.run(
        [sys.executable, "-m", "bin_gateway", "demo", "--dir", "tmp"],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    directory = cwd / "tmp"
    mails = []
    for path in sorted((directory / "outbox" / "new").iterdir()):
        raw = path.read_bytes()
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        mails.append((path, raw, message))
    return DemoRun(directory, result.stdout, mails)


def test_every_printed_file_exists_and_every_mail_is_printed(demo: DemoRun) -> None:
    """Each step names the absolute path of its message; together they are the whole outbox."""
    printed = re.findall(r"open: (\S+)", demo.stdout)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in printed), printed
    assert sorted(printed) == sorted(str(path) for path, _, _ in demo.mails)
    assert len(demo.mails) == 12  # moderation, outcome, confirmation, 5 copies, 2 relays,
    # the member's acknowledgement and the answer to her
    words = " ".join(demo.stdout.split()).lower()  # the text is wrapped for the terminal
    assert "in production, mail from the police is checked with dkim/spf" in words
    assert f"delete {demo.directory}" in demo.stdout


def test_the_coordinator_got_the_moderation_mail(demo: DemoRun) -> None:
    """One mail to the coordinator asks for a decision through a moderation address."""
    requests = [m for _, _, m in demo.to(COORDINATOR)
                if parseaddr(str(m["Reply-To"]))[1].startswith("moderatie+")]
    assert len(requests) == 1
    request = requests[0]
    assert "Inbraken in Noord" in str(request["Subject"])
    body = request.get_body(("plain",))
    assert body is not None and "OK" in body.get_content()


def test_each_member_got_one_copy_that_verifies(demo: DemoRun) -> None:
    """Five members, one copy each, DKIM-signed by the gateway's key (checked by dkimpy)."""
    record = dkim_txt_record(demo.directory / "dkim.pem").encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == "demo._domainkey.bin.example.nl"
        return record

    for address, _ in MEMBERS:
        copies = [m for m in demo.to(address) if m[2]["Subject"] == "[BIN Noord] Inbraken in Noord"]
        assert len(copies) == 1, address
        _, raw, copy = copies[0]
        assert copy["DKIM-Signature"] is not None
        assert dkim.verify(raw, dnsfunc=dnsfunc), address
        assert "Graag extra opletten rond de school." in decoded_dump(raw)


def test_the_relayed_reply_names_nobody(demo: DemoRun) -> None:
    """The police read Anouk's words as a Bewoner: no name, address, street or phone."""
    relays = [m for m in demo.to(POLICE) if str(m[2]["Subject"]).startswith("Reactie van Bewoner")]
    assert len(relays) == 1
    _, raw, relay = relays[0]
    dump = decoded_dump(raw)
    assert "witte bus" in dump and "[afgeschermd]" in dump
    for secret in (ANOUK, "Anouk", "de Vries", "06-12345678", "12345678", "Dorpsstraat 3"):
        assert secret not in dump, secret
    assert re.fullmatch(r"Bewoner [A-Z0-9]{4} \(BIN Noord\)", parseaddr(str(relay["From"]))[0])
    assert "[afgeschermd]" in demo.stdout and "06-12345678" in demo.stdout  # shown, then gone


def test_the_answer_reaches_the_member_without_the_officer(demo: DemoRun) -> None:
    """The police's answer reaches Anouk from "Politie ... via BIN Noord", staff hidden."""
    answers = [m for m in demo.to(ANOUK) if "welke kant" in decoded_dump(m[1])]
    assert len(answers) == 1
    _, raw, answer = answers[0]
    assert parseaddr(str(answer["From"]))[0] == "Politie Oost-Brabant via BIN Noord"
    dump = decoded_dump(raw)
    assert POLICE not in dump and POLICE_NAME.split(" ", 1)[1] not in dump


def test_a_used_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dir must be new or empty: the demo never mixes its mails with someone's files."""
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_a_message_that_never_comes_stops_the_demo_with_its_name(tmp_path: Path) -> None:
    """A step that does not happen ends in DemoFailed naming the awaited message."""
    watcher = OutboxWatcher(tmp_path / "new", 0.2)
    with pytest.raises(DemoFailed, match=r"timed out after 0.2 s waiting for the moderation"):
        await watcher.wait("the moderation mail", lambda mail: True)
