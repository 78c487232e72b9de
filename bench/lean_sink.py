"""A lean SMTP sink for the benchmarks: just enough SMTP to accept mail, counting it.

aiosmtpd costs ~0.6 ms of CPU a message, more than the aiosmtplib sender (~0.35 ms), so
on a 2-core machine it, not the code under test, would set the pace. This one answers
every command with 250 (354 for DATA), counts the messages and, per recipient, the
copies, and calls ``on_message`` after each one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class SinkCounts:
    count: int = 0
    by_recipient: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_message: Callable[[SinkCounts], None] | None = None


class LeanSink(asyncio.Protocol):
    def __init__(self, counts: SinkCounts) -> None:
        self._counts = counts
        self._buffer = b""
        self._in_data = False
        self._rcpts: list[str] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 sink.bench ESMTP\r\n")

    def _accepted(self) -> None:
        counts = self._counts
        counts.count += 1
        for rcpt in self._rcpts:
            counts.by_recipient[rcpt] += 1
        self._rcpts = []
        if counts.on_message is not None:
            counts.on_message(counts)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        start = max(0, len(self._buffer) - 4)
        self._buffer += data
        replies: list[bytes] = []
        while True:
            if self._in_data:
                end = self._buffer.find(b"\r\n.\r\n", start)
                if end < 0:
                    break
                self._buffer = self._buffer[end + 5:]
                self._in_data, start = False, 0
                self._accepted()
                replies.append(b"250 2.0.0 OK\r\n")
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(b"250-sink.bench\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                               b"250 SIZE 100000000\r\n")
            elif verb == b"RCPT":
                address = line.partition(b"<")[2].partition(b">")[0]
                self._rcpts.append(address.decode("utf-8", "replace").lower())
                replies.append(b"250 OK\r\n")
            elif verb in (b"MAIL", b"RSET"):
                self._rcpts = []
                replies.append(b"250 OK\r\n")
            elif verb == b"DATA":
                self._in_data, start = True, 0
                self._buffer = b"\r\n" + self._buffer  # the first line may be "." already
                replies.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 bye\r\n")
                self._transport.write(b"".join(replies))
                self._transport.close()
                return
            else:
                replies.append(b"250 OK\r\n")
        if replies:
            self._transport.write(b"".join(replies))
