"""The smarthost pool against a real recording aiosmtpd sink on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bin_gateway.smarthost import SmarthostPool
from bin_gateway.transport import SendStatus, validate_envelope_address
from tests.support.sink import Sink

SENDER = "bounce+abc123@bin.example.nl"
MESSAGE = (
    b"From: BIN Noord <buurt-noord@bin.example.nl>\r\n"
    b"To: lid@example.org\r\n"
    b"Subject: Inbraak Dorpsstraat\r\n"
    b"\r\n"
    b"Let op uw deuren.\r\n"
)

PoolFactory = Callable[..., SmarthostPool]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with await Sink.start() as running:
        yield running


@pytest.fixture
async def make_pool() -> AsyncIterator[PoolFactory]:
    pools: list[SmarthostPool] = []

    def make(target: Sink | tuple[str, int], **overrides: Any) -> SmarthostPool:
        host, port = (target.host, target.port) if isinstance(target, Sink) else target
        options: dict[str, Any] = {"helo_name": "bin.example.nl", "timeout": 5.0}
        options.update(overrides)
        pool = SmarthostPool(host, port, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- throughput and reuse -----------------------------------------------------------------


async def test_many_messages_share_a_few_connections(sink: Sink, make_pool: PoolFactory) -> None:
    """200 messages over a pool of 4 all arrive, over at most 4 concurrent connections."""
    pool = make_pool(sink, connections=4)
    recipients = [f"lid{i}@example.org" for i in range(200)]
    results = await asyncio.gather(*(pool.send(SENDER, r, MESSAGE) for r in recipients))
    assert {result.status for result in results} == {SendStatus.SENT}
    received = await sink.wait_for(200)
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(recipients)
    assert sink.max_concurrent <= 4
    assert sink.connections_total <= 4  # reused, not one connection per message


async def test_message_bytes_arrive_intact(sink: Sink, make_pool: PoolFactory) -> None:
    """The sink receives the envelope and body as given; a leading dot survives the trip."""
    pool = make_pool(sink)
    body = MESSAGE + b".profile\r\n..\r\n"
    result = await pool.send(SENDER, "lid@example.org", body)
    assert result.status is SendStatus.SENT
    assert result.code == 250
    (received,) = await sink.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["lid@example.org"]
    assert received.data == body


async def test_null_sender_goes_out_as_empty_path(sink: Sink, make_pool: PoolFactory) -> None:
    """An empty envelope sender is sent as MAIL FROM:<> (for bounces and notices)."""
    result = await make_pool(sink).send("", "lid@example.org", MESSAGE)
    assert result.status is SendStatus.SENT
    (received,) = await sink.wait_for(1)
    assert received.mail_from == "<>"


async def test_non_ascii_address_uses_smtputf8(sink: Sink, make_pool: PoolFactory) -> None:
    """A UTF-8 recipient goes out with the SMTPUTF8 parameter, address intact."""
    result = await make_pool(sink).send(SENDER, "jörg@bücher.example", MESSAGE)
    assert result.status is SendStatus.SENT
    (received,) = await sink.wait_for(1)
    assert received.rcpt_tos == ["jörg@bücher.example"]
    assert "SMTPUTF8" in received.mail_options


# -- per-recipient classification ---------------------------------------------------------


async def test_recipient_451_is_temporary_and_the_next_message_goes_through(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A 451 at RCPT gives TEMPORARY; RSET cleans up and the same connection sends on."""
    pool = make_pool(sink, connections=1)
    sink.answer_for("vol@example.org", "451 4.3.0 try later")
    deferred = await pool.send(SENDER, "vol@example.org", MESSAGE)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (deferred.status, deferred.code) == (SendStatus.TEMPORARY, 451)
    assert "try later" in deferred.text
    assert sent.status is SendStatus.SENT
    (received,) = await sink.wait_for(1)
    assert received.rcpt_tos == ["lid@example.org"]
    assert "RSET" in sink.commands
    assert sink.connections_total == 1


async def test_recipient_550_is_permanent_and_the_next_message_goes_through(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A 550 at RCPT gives PERMANENT with the server's text; the pool carries on."""
    pool = make_pool(sink, connections=1)
    sink.answer_for("weg@example.org", "550 5.1.1 no such user")
    failed = await pool.send(SENDER, "weg@example.org", MESSAGE)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (failed.status, failed.code) == (SendStatus.PERMANENT, 550)
    assert "no such user" in failed.text
    assert sent.status is SendStatus.SENT
    assert [m.rcpt_tos for m in await sink.wait_for(1)] == [["lid@example.org"]]


async def test_mail_from_5xx_is_permanent(sink: Sink, make_pool: PoolFactory) -> None:
    """A 5xx answer to MAIL FROM gives PERMANENT and nothing is delivered."""
    pool = make_pool(sink, connections=1)
    sink.answer_mail("553 5.1.8 sender domain unknown")
    failed = await pool.send(SENDER, "lid@example.org", MESSAGE)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (failed.status, failed.code) == (SendStatus.PERMANENT, 553)
    assert sent.status is SendStatus.SENT
    assert len(await sink.wait_for(1)) == 1


async def test_data_4xx_is_temporary(sink: Sink, make_pool: PoolFactory) -> None:
    """A 452 after the message body gives TEMPORARY and the next message is accepted."""
    pool = make_pool(sink, connections=1)
    sink.answer_data("452 4.3.1 mailbox full")
    deferred = await pool.send(SENDER, "lid@example.org", MESSAGE)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (deferred.status, deferred.code) == (SendStatus.TEMPORARY, 452)
    assert sent.status is SendStatus.SENT
    assert len(await sink.wait_for(1)) == 1


# -- connection trouble -------------------------------------------------------------------


async def test_connection_refused_is_temporary(make_pool: PoolFactory) -> None:
    """Nobody listening on the smarthost port gives TEMPORARY with code 0."""
    result = await make_pool(("127.0.0.1", closed_port())).send(SENDER, "lid@example.org", MESSAGE)
    assert (result.status, result.code) == (SendStatus.TEMPORARY, 0)
    assert "connect" in result.text


async def test_connection_reset_is_temporary_then_recovers(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A smarthost that resets connections gives TEMPORARY; once it is back, mail flows."""
    pool = make_pool(sink)
    sink.refuse_connections(True)
    failed = await pool.send(SENDER, "lid@example.org", MESSAGE)
    sink.refuse_connections(False)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (failed.status, failed.code) == (SendStatus.TEMPORARY, 0)
    assert sent.status is SendStatus.SENT


async def test_drop_in_data_is_temporary_and_the_pool_reconnects(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A disconnect before the reply to '.' gives TEMPORARY; the next send uses a new connection."""
    pool = make_pool(sink, connections=1)
    sink.drop_connection_in_data()
    dropped = await pool.send(SENDER, "lid@example.org", MESSAGE)
    sent = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert (dropped.status, dropped.code) == (SendStatus.TEMPORARY, 0)
    assert "DATA" in dropped.text
    assert sent.status is SendStatus.SENT
    assert sink.connections_total == 2


async def test_stalled_server_is_temporary_within_the_timeout(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A smarthost that never answers '.' gives TEMPORARY once the timeout has passed."""
    pool = make_pool(sink, timeout=0.5)
    sink.stall_in_data(30.0)
    started = time.monotonic()
    result = await pool.send(SENDER, "lid@example.org", MESSAGE)
    elapsed = time.monotonic() - started
    assert (result.status, result.code) == (SendStatus.TEMPORARY, 0)
    assert 0.4 < elapsed < 2.0
    assert sink.messages == []


async def test_silent_server_is_temporary_within_the_timeout(make_pool: PoolFactory) -> None:
    """A server that accepts TCP but never greets gives TEMPORARY within the timeout."""
    writers: list[asyncio.StreamWriter] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # hold the connection open, say nothing

    silent = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        pool = make_pool(("127.0.0.1", silent.sockets[0].getsockname()[1]), timeout=0.5)
        started = time.monotonic()
        result = await pool.send(SENDER, "lid@example.org", MESSAGE)
        assert time.monotonic() - started < 2.0
        assert (result.status, result.code) == (SendStatus.TEMPORARY, 0)
        assert writers  # the pool did connect: the timeout hit while waiting for the greeting
    finally:
        for writer in writers:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_idle_connection_closed_by_server_is_replaced(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A pooled connection the server closed while idle is replaced without a failure."""
    pool = make_pool(sink, connections=1)
    assert (await pool.send(SENDER, "a@example.org", MESSAGE)).status is SendStatus.SENT
    sink.disconnect_all()
    assert (await pool.send(SENDER, "b@example.org", MESSAGE)).status is SendStatus.SENT
    assert len(await sink.wait_for(2)) == 2
    assert sink.connections_total == 2


async def test_421_at_mail_on_a_reused_connection_retries_fresh(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """A 421 to MAIL on a reused connection (server closing it) is retried on a new one."""
    pool = make_pool(sink, connections=1)
    assert (await pool.send(SENDER, "a@example.org", MESSAGE)).status is SendStatus.SENT
    sink.answer_mail("421 4.7.0 too many messages on this connection")
    assert (await pool.send(SENDER, "b@example.org", MESSAGE)).status is SendStatus.SENT
    assert len(await sink.wait_for(2)) == 2
    assert sink.connections_total == 2


async def test_close_quits_connections_and_refuses_further_sends(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """close() ends every pooled connection; a later send is TEMPORARY, not an error."""
    pool = make_pool(sink, connections=3)
    await asyncio.gather(*(pool.send(SENDER, f"l{i}@example.org", MESSAGE) for i in range(6)))
    await pool.close()
    async with asyncio.timeout(2):
        await sink.wait_disconnected()
    after = await pool.send(SENDER, "lid@example.org", MESSAGE)
    assert after.status is SendStatus.TEMPORARY
    assert len(sink.messages) == 6


# -- STARTTLS and AUTH --------------------------------------------------------------------


async def test_starttls_required_without_offer_is_temporary(
    sink: Sink, make_pool: PoolFactory
) -> None:
    """starttls="required" against a server without STARTTLS sends nothing and says why."""
    result = await make_pool(sink, starttls="required").send(SENDER, "lid@example.org", MESSAGE)
    assert (result.status, result.code) == (SendStatus.TEMPORARY, 0)
    assert "STARTTLS is required" in result.text
    assert "MAIL" not in sink.commands


async def test_starttls_required_verifies_the_certificate(make_pool: PoolFactory) -> None:
    """Required TLS sends over TLS with a trusted certificate and refuses an untrusted one."""
    async with await Sink.start(tls=True) as tls_sink:
        trusted = make_pool(
            tls_sink, starttls="required", tls_context=tls_sink.client_tls_context()
        )
        untrusted = make_pool(tls_sink, starttls="required")  # system CAs: self-signed fails
        ok = await trusted.send(SENDER, "lid@example.org", MESSAGE)
        refused = await untrusted.send(SENDER, "lid@example.org", MESSAGE)
        assert ok.status is SendStatus.SENT
        assert refused.status is SendStatus.TEMPORARY
        assert "STARTTLS" in refused.text
        (received,) = await tls_sink.wait_for(1)
        assert received.tls


@pytest.mark.parametrize(("mode", "encrypted"), [("opportunistic", True), ("off", False)])
async def test_starttls_modes(make_pool: PoolFactory, mode: str, encrypted: bool) -> None:
    """Opportunistic upgrades whenever offered (any certificate); "off" never upgrades."""
    async with await Sink.start(tls=True) as tls_sink:
        result = await make_pool(tls_sink, starttls=mode).send(SENDER, "lid@example.org", MESSAGE)
        assert result.status is SendStatus.SENT
        (received,) = await tls_sink.wait_for(1)
        assert received.tls is encrypted


async def test_auth_logs_in_before_sending(make_pool: PoolFactory) -> None:
    """With a username the pool authenticates (over STARTTLS) and the server sees the user."""
    async with await Sink.start(tls=True, credentials=("gateway", "s3cret")) as auth_sink:
        pool = make_pool(auth_sink, username="gateway", password="s3cret")
        result = await pool.send(SENDER, "lid@example.org", MESSAGE)
        assert result.status is SendStatus.SENT
        (received,) = await auth_sink.wait_for(1)
        assert received.login == "gateway"
        assert received.tls


async def test_auth_failure_is_temporary(make_pool: PoolFactory) -> None:
    """A refused password is TEMPORARY (fixable configuration), with the server's code."""
    async with await Sink.start(tls=True, credentials=("gateway", "s3cret")) as auth_sink:
        pool = make_pool(auth_sink, username="gateway", password="wrong")
        result = await pool.send(SENDER, "lid@example.org", MESSAGE)
        assert result.status is SendStatus.TEMPORARY
        assert result.code == 535
        assert "AUTH" in result.text
        assert auth_sink.messages == []


# -- envelope validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        (SENDER, "a@b.example\r\nRCPT TO:<x@evil.example>"),
        (SENDER, '"a\r\nb"@x.example'),
        ("a@b.example\nRCPT TO:<x@evil.example>", "lid@example.org"),
        (SENDER, "lid@example.org> NOTIFY=NEVER"),
    ],
)
async def test_injected_envelope_address_is_refused_and_nothing_sent(
    sink: Sink, make_pool: PoolFactory, sender: str, recipient: str
) -> None:
    """CR/LF or '>' in an envelope address gives PERMANENT code 0 without any connection."""
    result = await make_pool(sink).send(sender, recipient, MESSAGE)
    assert (result.status, result.code) == (SendStatus.PERMANENT, 0)
    assert "refused" in result.text
    assert sink.connections_total == 0


@pytest.mark.parametrize(
    "address",
    [
        "lid@example.org",
        "bounce+tok_-.=@bin.example.nl",
        '"jan jansen"@example.org',
        '"a@b"@example.org',
        "jörg@bücher.example",
        "postmaster@[192.0.2.1]",
        "x@[IPv6:2001:db8::1]",
    ],
)
def test_valid_addresses_pass_unchanged(address: str) -> None:
    """Ordinary, quoted, UTF-8 and address-literal mailboxes are accepted as they are."""
    assert validate_envelope_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "a@b.example\r\nRCPT TO:<x@evil.example>",
        "a@b.example\r",
        "a\x00@b.example",
        "a\x7f@b.example",
        "a\u2028@b.example",
        "a\u200b@b.example",
        "jan jansen@example.org",
        "a\u00a0b@example.org",
        "<a@b.example>",
        "a@b@c.example",
        "@b.example",
        "a@",
        "ab.example",
        "a@b..example",
        '"unterminated@b.example',
        '""@b.example',
        "a@[1.2.3.4",
        "a@[evil]",
        "a" * 250 + "@b.example",
    ],
)
def test_unsafe_addresses_raise(address: str) -> None:
    """Control, format and space characters, brackets and malformed shapes raise ValueError."""
    with pytest.raises(ValueError):
        validate_envelope_address(address)


def test_null_sender_needs_allow_null() -> None:
    """The empty reverse-path is valid only where the caller allows it (the sender)."""
    assert validate_envelope_address("", allow_null=True) == ""
    with pytest.raises(ValueError, match="empty"):
        validate_envelope_address("")
