"""The maildir transport: each copy becomes a complete file in new/, with its envelope."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

from bin_gateway.maildir import MaildirTransport
from bin_gateway.transport import SendStatus

SENDER = "bounce+abc123@bin.example.nl"
MESSAGE = b"From: BIN Noord <buurt-noord@bin.example.nl>\r\nSubject: Test\r\n\r\nHallo\r\n"


async def test_message_lands_in_new_with_envelope_headers(tmp_path: Path) -> None:
    """A sent copy is one file in new/ starting with Return-Path and Delivered-To."""
    transport = MaildirTransport(tmp_path / "Maildir")
    result = await transport.send(SENDER, "lid@example.org", MESSAGE)
    assert result.status is SendStatus.SENT
    (path,) = (tmp_path / "Maildir" / "new").iterdir()
    content = path.read_bytes()
    assert content == (
        b"Return-Path: <bounce+abc123@bin.example.nl>\r\nDelivered-To: lid@example.org\r\n"
        + MESSAGE
    )
    assert path.name in result.text
    parsed = email.message_from_bytes(content)
    assert parsed["Subject"] == "Test"
    assert list((tmp_path / "Maildir" / "tmp").iterdir()) == []
    assert (tmp_path / "Maildir" / "cur").is_dir()


async def test_headers_follow_the_message_line_endings(tmp_path: Path) -> None:
    """A message with bare LF line endings gets LF-terminated envelope headers."""
    transport = MaildirTransport(tmp_path)
    await transport.send("", "lid@example.org", b"Subject: x\n\nbody\n")
    (path,) = (tmp_path / "new").iterdir()
    assert (
        path.read_bytes() == b"Return-Path: <>\nDelivered-To: lid@example.org\nSubject: x\n\nbody\n"
    )


async def test_concurrent_sends_get_unique_files(tmp_path: Path) -> None:
    """Many concurrent copies each get their own file: nothing is overwritten."""
    transport = MaildirTransport(tmp_path)
    recipients = [f"lid{i}@example.org" for i in range(100)]
    results = await asyncio.gather(*(transport.send(SENDER, r, MESSAGE) for r in recipients))
    assert {r.status for r in results} == {SendStatus.SENT}
    files = list((tmp_path / "new").iterdir())
    assert len(files) == 100
    delivered = {email.message_from_bytes(f.read_bytes())["Delivered-To"] for f in files}
    assert delivered == set(recipients)


async def test_disk_failure_is_temporary(tmp_path: Path) -> None:
    """When the maildir cannot be written (root is a file), the result is TEMPORARY."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("occupied")
    result = await MaildirTransport(blocker).send(SENDER, "lid@example.org", MESSAGE)
    assert (result.status, result.code) == (SendStatus.TEMPORARY, 0)
    assert "maildir write failed" in result.text


async def test_injected_address_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """A CR/LF in the recipient gives PERMANENT and writes no file (no header injection)."""
    transport = MaildirTransport(tmp_path)
    result = await transport.send(SENDER, "a@b.example\r\nBcc: x@evil.example", MESSAGE)
    assert (result.status, result.code) == (SendStatus.PERMANENT, 0)
    assert not (tmp_path / "new").exists()
