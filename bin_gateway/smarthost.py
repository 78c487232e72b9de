"""Deliver through a smarthost over a small pool of reused SMTP connections.

One bulletin becomes up to 10,000 single-recipient transactions, so the cost per
message must be three round trips (MAIL, RCPT, DATA) and nothing else: connections
are opened once (banner, EHLO, STARTTLS, AUTH) and then serve message after message.

* A semaphore caps concurrent sends at ``connections``; idle clients wait in a stack,
  so the number of open connections never exceeds it either.
* A transaction that failed is cleaned up with RSET before its connection is reused;
  a connection that broke, timed out or could not be reset is closed and replaced on
  demand, so one bad message never affects the next.
* A reused connection that turns out to be dead before MAIL was accepted (the server
  dropped it while idle, or answered 421) is replaced once, transparently: nothing
  was transferred yet, so this cannot duplicate a message.

Classification (the delivery worker decides on retries): 2xx for the recipient ->
SENT; 4xx, no answer, connection trouble -> TEMPORARY; 5xx at MAIL/RCPT/DATA ->
PERMANENT. Failures while *opening* a connection (banner, EHLO, STARTTLS, AUTH) are
always TEMPORARY whatever the code: a wrong password must not make every member of a
list fail for good; the operator fixes it and the queue drains.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import (
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from bin_gateway.config import StartTls  # one definition: the config's
from bin_gateway.offload import in_pieces, offload
from bin_gateway.transport import SendResult, SendStatus, check_envelope, result_for_reply

__all__ = ["SmarthostPool", "StartTls"]

# QUIT and the RSET after a failed transaction are courtesies: never wait long on them.
_COURTESY_TIMEOUT = 10.0
# aiosmtplib's patterns for DATA (protocol.py): a line end of any kind; a dot starting a line.
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: SendResult
    reusable: bool  # the connection is in a clean state for the next message
    needs_reset: bool = False  # a transaction was open on the server: RSET first
    stale: bool = False  # a reused connection died before MAIL: retry on a fresh one


class _OpenFailed(Exception):
    """Opening a connection failed; carries the TEMPORARY result to report."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.text)
        self.result = result


def _temporary(code: int, text: str) -> SendResult:
    return SendResult(SendStatus.TEMPORARY, code, text)


class SmarthostPool:
    """A ``Transport`` that relays every copy through one smarthost."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 8,
        starttls: StartTls | str = StartTls.OPPORTUNISTIC,
        username: str = "",
        password: str = "",
        helo_name: str,
        timeout: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not helo_name:
            raise ValueError("helo_name is required")
        self._host = host
        self._port = port
        self._starttls = StartTls(starttls)
        self._username = username
        self._password = password
        self._helo_name = helo_name
        self._timeout = timeout
        self._tls_context = tls_context
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    @property
    def _where(self) -> str:
        return f"smarthost {self._host}:{self._port}"

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """Send ``message`` to ``recipient``; never raises for an SMTP or network outcome."""
        refused = check_envelope(envelope_from, recipient)
        if refused is not None:
            return refused
        async with self._slots:
            if self._closed:
                return _temporary(0, "transport is closed (shutting down)")
            first = await self._attempt(envelope_from, recipient, message, reuse=True)
            if first is not None:
                return first
            # The reused connection was stale; nothing was sent: once more, fresh.
            second = await self._attempt(envelope_from, recipient, message, reuse=False)
            assert second is not None  # a fresh connection is never stale
            return second

    async def close(self) -> None:
        """QUIT every idle connection; busy ones are closed when their send returns."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(client) for client in idle))

    async def _attempt(
        self, sender: str, recipient: str, message: bytes, *, reuse: bool
    ) -> SendResult | None:
        """One try on one connection; None means "stale, try a fresh connection"."""
        client = self._take_idle() if reuse else None
        reused = client is not None
        if client is None:
            client = self._new_client()
        try:
            outcome = await self._run_with_deadline(client, sender, recipient, message)
            if outcome.stale and reused:
                client.close()
                return None
            if outcome.needs_reset and outcome.reusable:
                outcome = _Outcome(outcome.result, reusable=await self._reset(client))
            self._release(client, keep=outcome.reusable)
            return outcome.result
        except BaseException:
            # Cancelled (shutdown) mid-transaction: the connection state is unknown.
            client.close()
            raise

    async def _run_with_deadline(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> _Outcome:
        """Open if needed and run the transaction, all within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(self._timeout):
                if not client.is_connected:
                    await self._open(client)
                return await self._transact(client, sender, recipient, message)
        except _OpenFailed as exc:
            client.close()
            return _Outcome(exc.result, reusable=False)
        except TimeoutError:
            client.close()
            text = f"{self._where} did not answer within {self._timeout:g} s"
            return _Outcome(_temporary(0, text), reusable=False)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client = self._idle.pop()  # most recently used first: it is least likely stale
            if client.is_connected:
                return client
            client.close()  # the server hung up while it was idle
        return None

    def _release(self, client: aiosmtplib.SMTP, *, keep: bool) -> None:
        if keep and client.is_connected and not self._closed:
            self._idle.append(client)
        else:
            client.close()

    def _new_client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            local_hostname=self._helo_name,
            # The deadline is ours: asyncio.timeout around each whole open and transaction
            # (and each RSET and QUIT). aiosmtplib's own per-command timeout would add a
            # timer and a waiter to every command, four of them a copy.
            timeout=None,
            start_tls=False,  # STARTTLS is done by _open, so REQUIRED can fail clearly
        )

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        """Connect, EHLO, STARTTLS and AUTH as configured; raise _OpenFailed otherwise."""
        step = "connect"
        try:
            await client.connect()
            step = "EHLO"
            await self._greet(client)
            step = "STARTTLS"
            await self._maybe_starttls(client)
            if self._username:
                step = "AUTH"
                await client.login(self._username, self._password)
        except SMTPResponseException as exc:  # greeting, EHLO, STARTTLS or AUTH refused
            text = f"{self._where} refused {step}: {exc.code} {exc.message}"
            raise _OpenFailed(_temporary(exc.code, text)) from exc
        except (SMTPException, OSError) as exc:  # refused, reset, TLS handshake, timeout
            text = f"{step} to {self._where} failed: {_describe(exc)}"
            down = step == "connect"  # no SMTP answer at all: nobody is listening
            raise _OpenFailed(SendResult(SendStatus.TEMPORARY, 0, text, unreachable=down)) from exc

    async def _greet(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.ehlo()
        except SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()

    async def _maybe_starttls(self, client: aiosmtplib.SMTP) -> None:
        if self._starttls is StartTls.OFF:
            return
        if not client.supports_extension("starttls"):
            if self._starttls is StartTls.REQUIRED:
                text = f"STARTTLS is required but {self._where} does not offer it"
                raise _OpenFailed(_temporary(0, text))
            return
        await client.starttls(tls_context=await self._client_tls_context())
        await client.ehlo()  # RFC 3207 §4.2: forget what was learnt in clear

    async def _client_tls_context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            if self._starttls is StartTls.REQUIRED:
                # Loading the system CA store reads files: keep it off the event loop.
                self._tls_context = await asyncio.to_thread(ssl.create_default_context)
            else:
                self._tls_context = _unverified_context()
        return self._tls_context

    async def _transact(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> _Outcome:
        """MAIL, RCPT, DATA for one recipient on an open connection."""
        utf8 = not (sender.isascii() and recipient.isascii())
        if utf8 and not client.supports_extension("smtputf8"):
            text = f"{self._where} does not offer SMTPUTF8, needed for a non-ASCII address"
            return _Outcome(SendResult(SendStatus.PERMANENT, 0, text), reusable=True)
        encoding = "utf-8" if utf8 else "ascii"
        step = "MAIL"
        try:
            options = _mail_options(client, message, utf8=utf8)
            reply = await client.execute_command(
                b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *options
            )
            if not 200 <= reply.code < 300:
                return _refused(step, reply, stale=reply.code == 421)
            step = "RCPT"
            reply = await client.execute_command(
                b"RCPT", b"TO:<" + recipient.encode(encoding) + b">"
            )
            if not 200 <= reply.code < 300:
                return _refused(step, reply)
            step = "DATA"
            reply = await _data(client, message)
        except SMTPDataError as exc:
            return _refused(step, SMTPResponse(exc.code, exc.message))
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            client.close()
            text = f"{step}: {self._where} {_describe(exc)}"
            return _Outcome(_temporary(0, text), reusable=False, stale=step == "MAIL")
        return _Outcome(result_for_reply(reply.code, reply.message), reusable=True)

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """RSET after a failed transaction; False if the connection should be dropped."""
        if not client.is_connected:
            return False
        try:
            async with asyncio.timeout(min(self._timeout, _COURTESY_TIMEOUT)):
                await client.rset()
        except (SMTPException, OSError, TimeoutError):
            client.close()
            return False
        return True

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            async with asyncio.timeout(min(self._timeout, _COURTESY_TIMEOUT)):
                await client.quit()
        except (SMTPException, OSError, TimeoutError):
            pass  # the server may already have gone; we are closing anyway
        finally:
            client.close()


async def _data(client: aiosmtplib.SMTP, message: bytes) -> SMTPResponse:
    """DATA as aiosmtplib's ``data()`` sends it, with the message made ready for the wire
    in a worker thread when it is big: ``data()`` does that with two regex passes on the
    event loop, a quarter of a second for a moderation mail attaching 15 MB, and as long
    again for each member's copy of a bulletin with such an attachment."""
    payload = await offload(len(message), _data_payload, message)
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    reply = await client.execute_command(b"DATA")
    if reply.code != 354:
        raise SMTPDataError(reply.code, reply.message)
    protocol.write(payload)  # our connection alone: nothing else can write in between
    reply = await protocol.read_response(timeout=client.timeout)
    if reply.code != 250:
        raise SMTPDataError(reply.code, reply.message)
    return reply


def _data_payload(message: bytes) -> bytes:
    """The bytes after DATA, as aiosmtplib writes them (protocol.execute_data_command):
    every line end CRLF, a last line end added, leading dots doubled, the end marker."""
    payload = in_pieces(_wire_lines, message)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


def _wire_lines(lines: bytes) -> bytes:
    # A piece starts at the start of a line, where ^ matches too.
    return _LEADING_DOT.sub(b"..", _LINE_END.sub(b"\r\n", lines))


def _mail_options(client: aiosmtplib.SMTP, message: bytes, *, utf8: bool) -> list[bytes]:
    options: list[bytes] = []
    if client.supports_extension("size"):
        # RFC 1870 asks for an estimate; the exact wire size would need a copy.
        options.append(b"SIZE=%d" % len(message))
    if utf8:
        options.append(b"SMTPUTF8")
    if not message.isascii() and client.supports_extension("8bitmime"):
        options.append(b"BODY=8BITMIME")
    return options


def _refused(step: str, reply: SMTPResponse, *, stale: bool = False) -> _Outcome:
    """A non-success reply inside the transaction: classify, and clean up before reuse."""
    result = result_for_reply(reply.code, f"{step}: {reply.message}")
    if result.status is SendStatus.SENT:  # e.g. 251 at DATA: not what we asked for
        result = _temporary(reply.code, result.text)
    # aiosmtplib closes the connection itself on 421; then there is nothing to reset.
    return _Outcome(result, reusable=True, needs_reset=True, stale=stale)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SMTPServerDisconnected):
        return f"closed the connection ({exc.message})"
    if isinstance(exc, SMTPTimeoutError):
        return f"timed out ({exc.message})"
    if isinstance(exc, SMTPException):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _unverified_context() -> ssl.SSLContext:
    """Opportunistic TLS: encryption against passive eavesdropping only (RFC 7435)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
