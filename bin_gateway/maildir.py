"""Development delivery: every message copy becomes a file in a Maildir.

A newcomer can point a mail client (or ``ls``) at the folder and see exactly what
each member would have received; ``Return-Path`` and ``Delivered-To`` are prepended
because a file has no envelope.

The write follows the Maildir protocol (write in ``tmp/``, fsync, rename into
``new/``), so a reader never sees a half-written message and a crash leaves at most
a stray file in ``tmp/``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import time
from pathlib import Path

from bin_gateway.transport import SendResult, SendStatus, check_envelope

__all__ = ["MaildirTransport"]

_SUBDIRS = ("tmp", "new", "cur")


class MaildirTransport:
    """A ``Transport`` that files each copy into ``root/new``."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._ready = False
        self._counter = itertools.count(1)
        # Maildir wants '/' and ':' out of the host part of a file name.
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """Write one file; TEMPORARY if the disk refuses, never raises for I/O."""
        refused = check_envelope(envelope_from, recipient)
        if refused is not None:
            return refused
        content = _with_envelope_headers(envelope_from, recipient, message)
        name = self._unique_name()
        try:
            await asyncio.to_thread(self._deliver, name, content)
        except OSError as exc:
            return SendResult(SendStatus.TEMPORARY, 0, f"maildir write failed: {exc}")
        return SendResult(SendStatus.SENT, 0, f"delivered to maildir as new/{name}")

    async def close(self) -> None:
        """Nothing to release: every write is complete when ``send`` returns."""

    def _unique_name(self) -> str:
        # time.MusecPpid_Qcount.host (the Maildir convention) plus random bits, so two
        # processes sharing a folder cannot collide even with a reused pid.
        now = time.time_ns()
        seconds, usec = now // 1_000_000_000, (now // 1000) % 1_000_000
        unique = f"M{usec}P{os.getpid()}Q{next(self._counter)}R{secrets.token_hex(4)}"
        return f"{seconds}.{unique}.{self._host}"

    def _deliver(self, name: str, content: bytes) -> None:
        """Blocking: runs in a worker thread."""
        if not self._ready:
            for sub in _SUBDIRS:
                (self._root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True
        tmp_path = self._root / "tmp" / name
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())  # the bytes are on disk before the name is visible
            os.rename(tmp_path, self._root / "new" / name)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        _fsync_directory(self._root / "new")


def _with_envelope_headers(envelope_from: str, recipient: str, message: bytes) -> bytes:
    """Prepend the envelope as headers, in the message's own line-ending style."""
    newline = b"\r\n" if message.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    # The addresses passed check_envelope: no CR/LF, so no header injection.
    headers = (
        b"Return-Path: <" + envelope_from.encode("utf-8") + b">" + newline
        + b"Delivered-To: " + recipient.encode("utf-8") + newline
    )  # fmt: skip
    return headers + message


def _fsync_directory(path: Path) -> None:
    """Make the rename itself durable (POSIX keeps directory entries in the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
