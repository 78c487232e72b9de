"""What the demo reads: the files the gateway writes into its Maildir outbox.

Each file is one message as its recipient would get it (``Delivered-To`` names the
recipient). The watcher hands each file out once, so a step waiting for "the next mail to
the coordinator" never picks up the one an earlier step already showed.
"""

from __future__ import annotations

import asyncio
import email.policy
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

__all__ = ["DemoFailed", "Mail", "Match", "OutboxWatcher", "to"]


class DemoFailed(Exception):
    """A step did not happen: the message says which."""


@dataclass(frozen=True, slots=True)
class Mail:
    """One file in the outbox: the message as the recipient would get it."""

    path: Path
    raw: bytes
    message: EmailMessage

    @property
    def recipient(self) -> str:
        return str(self.message["Delivered-To"] or "")

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def header(self, name: str) -> str:
        return str(self.message[name] or "")

    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return str(body.get_content()) if isinstance(body, EmailMessage) else ""


Match = Callable[[Mail], bool]


class OutboxWatcher:
    """Waits for new files in ``outbox/new``; each file is handed out once."""

    def __init__(self, new_dir: Path, timeout: float) -> None:
        self._new = new_dir
        self._timeout = timeout
        self._taken: set[str] = set()

    async def wait(self, what: str, match: Match, count: int = 1) -> list[Mail]:
        deadline = time.monotonic() + self._timeout
        while True:
            found = [mail for mail in self._unread() if match(mail)][:count]
            if len(found) == count:
                self._taken.update(mail.path.name for mail in found)
                return found
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"timed out after {self._timeout:g} s waiting for {what} "
                    f"(found {len(found)} of {count} in {self._new})"
                )
            await asyncio.sleep(0.05)

    def _unread(self) -> list[Mail]:
        if not self._new.is_dir():
            return []
        mails = []
        paths = [p for p in self._new.iterdir() if p.name not in self._taken]
        for path in sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name)):  # oldest first
            raw = path.read_bytes()
            message = BytesParser(policy=email.policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)  # policy.default makes these
            mails.append(Mail(path, raw, message))
        return mails


def to(address: str, subject_part: str = "") -> Match:
    return lambda mail: mail.recipient == address and subject_part in mail.subject
