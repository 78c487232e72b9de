"""A recording SMTP sink for tests: a real aiosmtpd server on 127.0.0.1, port 0.

It stands in for the smarthost: it records every accepted transaction and can be
told to misbehave, per recipient or for the next few transactions::

    sink = await Sink.start()                           # .host, .port
    sink.answer_for("a@x.example", "451 4.3.0 try later")
    sink.answer_data("452 4.3.1 full", times=1)
    sink.drop_connection_in_data(times=1)
    sink.stall_in_data(5.0, times=1)
    sink.refuse_connections(True)
    received = await sink.wait_for(3, timeout=10)       # list[Received]
    await sink.stop()

``Sink.start(tls=True)`` offers STARTTLS with a throwaway certificate for
``localhost``/``127.0.0.1`` (``sink.client_tls_context()`` trusts it);
``credentials=("user", "secret")`` offers AUTH PLAIN/LOGIN and requires it.

It runs on the test's own event loop (not aiosmtpd's threaded Controller, which runs
a second loop and cannot bind port 0).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import socket
import ssl
import struct
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Received", "Sink"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str  # as aiosmtpd gives it: the null sender is "<>"
    rcpt_tos: list[str]
    data: bytes  # the message as received, dot-unstuffed, CRLF line endings
    mail_options: list[str]
    tls: bool  # the transaction ran inside STARTTLS
    login: str | None  # the AUTH user, if the client authenticated


@dataclass(slots=True)
class _Scripted:
    """A scripted behaviour used for the next ``times`` occasions (None: forever)."""

    value: Any
    times: int | None

    def use(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


class Sink:
    """See the module docstring. Build with ``await Sink.start()``."""

    def __init__(self, *, tls: bool, credentials: tuple[str, str] | None) -> None:
        self.host = HOST
        self.port = 0
        self.messages: list[Received] = []
        self.commands: list[str] = []  # MAIL, RCPT, DATA, RSET as the server saw them
        self.connections_total = 0
        self.max_concurrent = 0
        self._live: set[SMTP] = set()
        self._tls = tls
        self._credentials = credentials
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._refusing = False
        self._rcpt_answers: dict[str, _Scripted] = {}
        self._mail_answers: deque[_Scripted] = deque()
        self._data_actions: deque[_Scripted] = deque()  # reply str, "drop", or stall float

    @classmethod
    async def start(cls, *, tls: bool = False, credentials: tuple[str, str] | None = None) -> Sink:
        """Listen on 127.0.0.1 with an OS-chosen port."""
        sink = cls(tls=tls, credentials=credentials)
        server_context = (await asyncio.to_thread(_tls_material))[0] if tls else None
        loop = asyncio.get_running_loop()
        sink._server = await loop.create_server(lambda: sink._protocol(server_context), HOST, 0)
        sink.port = sink._server.sockets[0].getsockname()[1]
        return sink

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def concurrent(self) -> int:
        return len(self._live)

    # -- scripting -------------------------------------------------------------------

    def answer_for(self, recipient: str, reply: str, *, times: int | None = None) -> None:
        """Answer RCPT for ``recipient`` with ``reply`` (``times`` times; None: always)."""
        self._rcpt_answers[recipient.lower()] = _Scripted(reply, times)

    def answer_mail(self, reply: str, *, times: int = 1) -> None:
        """Answer the next ``times`` MAIL commands with ``reply``."""
        self._mail_answers.append(_Scripted(reply, times))

    def answer_data(self, reply: str, *, times: int = 1) -> None:
        """Answer the next ``times`` completed DATA transfers with ``reply``."""
        self._data_actions.append(_Scripted(reply, times))

    def drop_connection_in_data(self, *, times: int = 1) -> None:
        """Close the connection after the message arrived, before the reply to '.'."""
        self._data_actions.append(_Scripted("drop", times))

    def stall_in_data(self, seconds: float, *, times: int = 1) -> None:
        """Wait ``seconds`` before replying to '.' (then accept, if the client waited)."""
        self._data_actions.append(_Scripted(seconds, times))

    def refuse_connections(self, refuse: bool = True) -> None:
        """Reset every new connection at once (RST), before the greeting."""
        self._refusing = refuse

    # -- observing -------------------------------------------------------------------

    # A deadline argument keeps test code to one line per wait; it is a test helper.
    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:  # noqa: ASYNC109
        """Wait until at least ``count`` messages were accepted; return them all."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.messages) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"sink got {len(self.messages)} of {count} messages in {timeout} s"
            ) from None
        return self.messages

    async def wait_disconnected(self) -> None:
        """Wait until no client is connected (wrap in ``asyncio.timeout``)."""
        while self._live:
            self._all_closed.clear()
            await self._all_closed.wait()

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this sink's throwaway certificate."""
        return ssl.create_default_context(cadata=_tls_material()[1].decode())

    def disconnect_all(self) -> None:
        """Close every open connection from the server side (as an idle timeout would)."""
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self.disconnect_all()
            await self._server.wait_closed()
            self._server = None

    # -- the server side ---------------------------------------------------------------

    def _protocol(self, server_context: ssl.SSLContext | None) -> asyncio.BaseProtocol:
        if self._refusing:
            return _Resetter()
        return _RecordingSMTP(
            self,
            _Handler(self),
            hostname="sink.test",  # an explicit name: the default asks DNS (getfqdn)
            tls_context=server_context,
            enable_SMTPUTF8=True,
            authenticator=self._authenticate if self._credentials else None,
            auth_required=self._credentials is not None,
            auth_require_tls=self._tls,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._credentials is not None
        user, password = self._credentials
        if isinstance(data, LoginPassword) and (
            data.login == user.encode() and data.password == password.encode()
        ):
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def _opened(self, protocol: SMTP) -> None:
        self._live.add(protocol)
        self.connections_total += 1
        self.max_concurrent = max(self.max_concurrent, len(self._live))

    def _closed(self, protocol: SMTP) -> None:
        self._live.discard(protocol)
        if not self._live:
            self._all_closed.set()

    def _next(self, queue: deque[_Scripted]) -> _Scripted | None:
        while queue:
            if queue[0].use():
                return queue[0]
            queue.popleft()
        return None

    def _record(self, session: Session, envelope: Envelope) -> None:
        self.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.original_content or b"",
                mail_options=list(envelope.mail_options),
                tls=session.ssl is not None,
                login=session.auth_data if session.authenticated else None,
            )
        )
        self._arrived.set()


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, counting live connections for the sink."""

    def __init__(self, sink: Sink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # called again after STARTTLS: a set is idempotent
        if self not in self._sink._live:
            self._sink._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._closed(self)
        super().connection_lost(error)


class _Resetter(asyncio.Protocol):
    """Accepts and immediately resets: what a client sees from a dead smarthost."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class _Handler:
    """aiosmtpd hooks: record, or answer as scripted."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._sink.commands.append("MAIL")
        scripted = self._sink._next(self._sink._mail_answers)
        if scripted is not None:
            return str(scripted.value)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._sink.commands.append("RCPT")
        scripted = self._sink._rcpt_answers.get(address.lower())
        if scripted is not None and scripted.use():
            return str(scripted.value)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink.commands.append("RSET")
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink.commands.append("DATA")
        action = self._sink._next(self._sink._data_actions)
        if action is not None and action.value == "drop":
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            # connection_lost cancels this coroutine; never answer.
            await asyncio.Event().wait()
        if action is not None and isinstance(action.value, float | int):
            await asyncio.sleep(action.value)
        elif action is not None:
            return str(action.value)
        self._sink._record(session, envelope)
        return "250 2.0.0 OK: queued"


@functools.cache
def _tls_material() -> tuple[ssl.SSLContext, bytes]:
    """A server context and its certificate (PEM), made once per test run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain reads files only, so the pair goes through a private temp dir.
    with tempfile.TemporaryDirectory() as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context, cert_pem
