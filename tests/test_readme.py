"""The README's quick start, executed as written: its command blocks are the test's script.

The blocks of "Two commands for a fresh machine" (with "The whole story in one command"
and "Try it") are read from README.md and run with bash: ``scripts/run-dev`` in the
background, then the demo, then each python3 heredoc, checking after each what the
README says happens. Two departures from the letter, both for a shared machine: the data
goes to a temporary ``dev-data`` (``BIN_GATEWAY_DEV_DATA``, honoured by run-dev) and the
SMTP port 2525 is replaced by a free one, in the config and in the blocks alike.
``scripts/test`` is not run (it runs this test); its text is checked instead.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path

import pytest

from bin_gateway.cli import main
from tests.support.reply_corpus import decoded_dump

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SECTION = "## Two commands for a fresh machine"
PORT_IN_README = "2525"
WAIT = 60.0  # seconds for one expected result; a loaded CI machine is slow, not stuck


def section_text() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def command_blocks(markdown: str) -> list[str]:
    """The code blocks of ``markdown``, indented (4 spaces) or fenced, in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            if fenced and current is not None:
                blocks.append("\n".join(current).strip("\n"))
                current = None
            else:
                current = []
            fenced = not fenced
        elif fenced and current is not None:
            current.append(line)
        elif line.startswith("    "):
            current = [] if current is None else current
            current.append(line[4:])
        elif not line.strip() and current is not None:
            current.append("")  # a blank line inside an indented block
        elif current is not None:
            blocks.append("\n".join(current).strip("\n"))
            current = None
    if current is not None:
        blocks.append("\n".join(current).strip("\n"))
    return blocks


def test_the_quick_start_has_the_blocks_this_test_runs() -> None:
    """run-dev, scripts/test, the demo and three heredocs, in the order the story needs."""
    blocks = command_blocks(section_text())
    kinds = [_kind(block) for block in blocks]
    assert kinds == ["run-dev", "test", "demo", "heredoc", "heredoc", "heredoc"], blocks
    assert all(f"{PORT_IN_README})" in block for block in blocks if _kind(block) == "heredoc")


def test_scripts_test_runs_every_check_ci_runs() -> None:
    """scripts/test (not run here: it runs this test) does what the README says it does."""
    assert "scripts/test" in command_blocks(section_text())
    script = (REPO / "scripts" / "test").read_text(encoding="utf-8")
    for step in ("scripts/setup-venv", ".venv/bin/ruff check .", ".venv/bin/mypy",
                 ".venv/bin/pytest"):  # fmt: skip
        assert step in script, step
    assert "exec scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def _kind(block: str) -> str:
    if block == "scripts/run-dev":
        return "run-dev"
    if block == "scripts/test":
        return "test"
    if block.startswith("python3 - <<'EOF'\n") and block.endswith("\nEOF"):
        return "heredoc"
    if "bin-gateway demo" in block:
        return "demo"
    return "other"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Outbox:
    def __init__(self, new: Path) -> None:
        self.new = new

    def mails(self) -> list[tuple[bytes, EmailMessage]]:
        found = []
        for path in self.new.glob("*") if self.new.is_dir() else []:
            raw = path.read_bytes()
            message = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            found.append((raw, message))
        return found

    def wait_for(
        self, what: str, match: Callable[[bytes, EmailMessage], bool], count: int = 1
    ) -> list[tuple[bytes, EmailMessage]]:
        deadline = time.monotonic() + WAIT
        while True:
            found = [(raw, m) for raw, m in self.mails() if match(raw, m)]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {what} in {self.new} after {WAIT} s"
            time.sleep(0.1)


def _to(address: str, subject: str = "") -> Callable[[bytes, EmailMessage], bool]:
    return lambda raw, m: m["Delivered-To"] == address and subject in str(m["Subject"])


def _bash(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", block], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=WAIT * 2, check=False,
    )  # fmt: skip


def _wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT * 3  # the first run may install the venv
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"scripts/run-dev did not listen on {port}:\n{log.read_text()}")
        time.sleep(0.1)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the gateway (run-dev execs it), then make sure its group is gone."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(server.pid, 0)  # anything of run-dev's left (a reply worker)?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    pytest.fail("scripts/run-dev left processes behind after SIGTERM")


def test_the_quick_start_works_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run-dev, the demo and the three heredocs do what the README says, in order."""
    blocks = command_blocks(section_text())
    port = str(_free_port())
    data = tmp_path / "dev-data"
    data.mkdir()
    config = (REPO / "scripts" / "dev-config.toml").read_text(encoding="utf-8")
    assert f"127.0.0.1:{PORT_IN_README}" in config
    (data / "config.toml").write_text(config.replace(PORT_IN_README, port), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "BIN_GATEWAY_CONFIG"}
    env |= {"BIN_GATEWAY_DEV_DATA": str(data), "TMPDIR": str(tmp_path)}

    (run_dev,) = [b for b in blocks if _kind(b) == "run-dev"]
    log = tmp_path / "run-dev.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", run_dev], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for_port(int(port), server, log)
        (demo,) = [b for b in blocks if _kind(b) == "demo"]
        result = _bash(demo, REPO, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Done: the whole story" in result.stdout
        heredocs = [b.replace(f"{PORT_IN_README})", f"{port})") for b in blocks
                    if _kind(b) == "heredoc"]  # fmt: skip
        _play_the_story(heredocs, tmp_path, env, Outbox(data / "outbox" / "new"))
        assert main(["--config", str(data / "config.toml"), "held", "list", "--all"]) == 0
        assert "Inbraken in Noord" in capsys.readouterr().out
    finally:
        _stop(server)


def _play_the_story(heredocs: list[str], cwd: Path, env: dict[str, str], outbox: Outbox) -> None:
    police, agent = heredocs[0], "wijkagent@politie.example"
    sent = _bash(police, cwd, env)
    assert sent.returncode == 0, sent.stderr
    ((_, request),) = outbox.wait_for("moderation mail", _to("coordinator@example.org"))
    assert parseaddr(str(request["Reply-To"]))[1].startswith("moderatie+")

    ok = _bash(heredocs[1], cwd, env)
    assert ok.returncode == 0, ok.stderr
    for member in ("an@example.org", "bert@example.org"):
        ((raw, copy),) = outbox.wait_for(f"copy for {member}", _to(member))
        assert copy["DKIM-Signature"] is not None and "Graag extra opletten" in decoded_dump(raw)
    ((raw, _),) = outbox.wait_for("outcome for the police", _to(agent))
    assert "2 leden" in decoded_dump(raw)
    outbox.wait_for("confirmation", _to("coordinator@example.org"), count=2)

    reply = _bash(heredocs[2], cwd, env)
    assert reply.returncode == 0, reply.stderr
    for target in (agent, "coordinator@example.org"):
        ((raw, relay),) = outbox.wait_for(f"relay to {target}", _to(target, "Reactie van Bewoner"))
        assert re.fullmatch(r"Reactie van Bewoner [A-Z0-9]{4} op: Inbraken in Noord",
                            str(relay["Subject"])), relay["Subject"]  # fmt: skip
        dump = decoded_dump(raw)
        assert "witte bus" in dump and "[afgeschermd]" in dump
        for secret in ("An de Wit", "an@example.org", "06-12345678", "Dorpsstraat 3"):
            assert secret not in dump, secret
    outbox.wait_for("note to An", _to("an@example.org", "doorgestuurd"))
