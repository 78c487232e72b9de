"""A small SMTP client for the reliability tests: one transaction, every step timed.

aiosmtplib hides the moment the last byte of DATA leaves (its ``data()`` also waits for
the 354), and it costs more CPU than this when fifty clients share the test's one core.
``send_once`` speaks the protocol line by line and returns each reply with the seconds
it took: RCPT from command to reply, DATA from the end-of-data dot to the final reply.

A transaction that ends without a final reply to the data (the connection dropped, the
server died) is ``answered=False``: a real MTA keeps the message and sends it again,
and so do the callers here (``send_until_answered``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Gauge", "Outcome", "send_once", "send_until_answered"]


@dataclass(slots=True)
class Gauge:
    """How many transactions are waiting for the answer to their data right now."""

    value: int = 0


@dataclass(slots=True)
class Outcome:
    rcpt: list[int] = field(default_factory=list)  # the code per recipient
    data: int | None = None  # the final reply to the data; None: no transaction or no answer
    answered: bool = False  # a final answer came (a refused RCPT counts as one)
    rcpt_seconds: list[float] = field(default_factory=list)
    data_seconds: float | None = None  # the end-of-data dot to the final reply
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.data == 250


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines: list[str] = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(text[4:])
        if len(text) < 4 or text[3] != "-":
            return int(text[:3]), "\n".join(lines)


def _dot_stuffed(data: bytes) -> bytes:
    body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"


async def send_once(
    port: int, mail_from: str, rcpt: list[str], data: bytes, *, timeout: float = 60.0,  # noqa: ASYNC109
    declare_size: bool = False, gauge: Gauge | None = None,
) -> Outcome:
    """One connection, one transaction; never raises for a network or SMTP outcome."""
    outcome = Outcome()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def command(line: str) -> tuple[int, str]:
                assert writer is not None
                writer.write(line.encode() + b"\r\n")
                return await _reply(reader)

            code, _ = await _reply(reader)
            if code != 220:
                outcome.error = f"banner {code}"
                outcome.answered = code >= 500
                return outcome
            code, _ = await command("EHLO client.example")
            size = f" SIZE={len(data)}" if declare_size else ""
            code, text = await command(f"MAIL FROM:<{mail_from}>{size}")
            if code != 250:
                outcome.error = f"MAIL {code} {text}"
                outcome.data = code
                outcome.answered = code >= 500
                return outcome
            for address in rcpt:
                started = time.monotonic()
                code, _ = await command(f"RCPT TO:<{address}>")
                outcome.rcpt_seconds.append(time.monotonic() - started)
                outcome.rcpt.append(code)
            if not any(c == 250 for c in outcome.rcpt):
                outcome.answered = all(c >= 500 for c in outcome.rcpt)
                return outcome
            code, text = await command("DATA")
            if code != 354:
                outcome.data, outcome.answered = code, code >= 500
                return outcome
            writer.write(_dot_stuffed(data))
            await writer.drain()
            started = time.monotonic()
            if gauge is not None:
                gauge.value += 1
            try:
                code, text = await _reply(reader)
            finally:
                if gauge is not None:
                    gauge.value -= 1
            outcome.data_seconds = time.monotonic() - started
            outcome.data, outcome.answered = code, not 400 <= code < 500
            if 400 <= code < 500:
                outcome.error = f"DATA {code} {text}"
            writer.write(b"QUIT\r\n")
    except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    return outcome


async def send_until_answered(
    port: int | Callable[[], int], mail_from: str, rcpt: list[str], data: bytes, *,
    pause: float = 0.3, give_up_after: float = 120.0, gauge: Gauge | None = None,
) -> tuple[Outcome, int]:
    """As an MTA does: the same message again until a final answer (2xx or 5xx).

    ``port`` is an int, or a callable returning the daemon's current port (it changes at
    every restart). Returns the final outcome and the number of tries.
    """
    deadline = time.monotonic() + give_up_after
    tries = 0
    while True:
        tries += 1
        current = port() if callable(port) else port
        outcome = (await send_once(current, mail_from, rcpt, data, gauge=gauge) if current
                   else Outcome(error="the daemon is not listening"))
        if outcome.answered:
            return outcome, tries
        if time.monotonic() > deadline:
            raise AssertionError(f"no final answer after {tries} tries: {outcome.error}")
        await asyncio.sleep(pause)
