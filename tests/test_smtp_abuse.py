"""Hostile input, part 3: abuse at the SMTP level, on raw sockets.

Pipelined garbage, 1 MB command lines, slowloris clients and 1,000 idle connections:
each gets a clean answer or a clean close, resources stay bounded, and a normal client
(in another thread, see ``ProbeClient``) is served all along. The bare-LF/CR smuggling
variants (``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` ...) are in test_spoofing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from importlib.metadata import version

import pytest

from bin_gateway import smtp_server
from tests.support.hostile import ProbeClient
from tests.support.world import DOMAIN, MakeWorld, World

PRODUCTION_TIMEOUT = smtp_server.SESSION_TIMEOUT
JOIN = f"buurt-zuid+aanmelden@{DOMAIN}"
JOIN_MAIL = b"From: x@y.example\r\nMessage-ID: <{n}@y>\r\n\r\nhoi\r\n"


def rss_mb() -> float:
    """This process's resident memory (gateway and test share it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Raw:
    """A bare SMTP client: bytes out exactly as given, replies read line by line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, greeting: bool = True) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        client = cls(reader, writer)
        if greeting:
            assert (await client.reply())[0] == 220
        return client

    async def reply(self, timeout: float = 10) -> tuple[int, str]:  # noqa: ASYNC109
        lines: list[str] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("closed by the server")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), lines[-1]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: bytes) -> tuple[int, str]:
        await self.send(line + b"\r\n")
        return await self.reply()

    async def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection (EOF) within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def normal_transaction_works(world: World, n: int = 0) -> None:
    sent = await world.send(JOIN_MAIL.replace(b"{n}", b"normaal-%d" % n), JOIN, "x@y.example")
    assert sent.accepted, sent
    assert world.gateway.failed_task() is None


def test_aiosmtpd_has_the_smuggling_and_starttls_fixes() -> None:
    """aiosmtpd >= 1.4.6 (CVE-2024-27305 smuggling, CVE-2024-34083 STARTTLS injection)."""
    installed = tuple(int(p) for p in version("aiosmtpd").split(".")[:3])
    assert installed >= (1, 4, 6), installed


async def test_pipelined_garbage_gets_answers_then_a_clean_close(world: World) -> None:
    """Binary junk, NULs and unknown commands in one write: every line is answered
    (500/502), the sixth unknown command ends the session with 502, the socket closes
    cleanly, and the next client is served."""
    client = await Raw.open(world.port)
    junk = [b"\x00\xff\xfe garbage", b"\x16\x03\x01\x02\x00\x01\x00", b"GET / HTTP/1.1",
            b"MAIL FROM:<a@b.example>\x00RCPT TO:<x@y>", b"\xc3\x28", *[b"XYZZY"] * 6]
    await client.send(b"EHLO x.example\r\n" + b"\r\n".join(junk) + b"\r\n")
    codes = []
    try:
        while True:
            codes.append((await client.reply())[0])
    except ConnectionError:
        pass
    await client.close()
    assert codes[0] == 250, codes
    assert all(500 <= code < 600 for code in codes[1:]), codes
    assert codes[-1] == 502, codes  # "Too many unrecognized commands, goodbye."
    await normal_transaction_works(world)


async def test_one_megabyte_command_lines_are_refused_and_memory_stays_flat(
    world: World,
) -> None:
    """A 1 MB command line gets "500 Command line too long" and the session goes on;
    twenty of them, and a 1 MB line never ended, leave memory where it was."""
    client = await Raw.open(world.port)
    assert (await client.command(b"EHLO x.example"))[0] == 250
    baseline = rss_mb()
    for _ in range(20):
        code, text = await client.command(b"MAIL FROM:<" + b"a" * 2**20 + b"@b.example>")
        assert (code, text) == (500, "500 Command line too long")
        assert (await client.command(b"NOOP"))[0] == 250
    await client.close()
    unended = await Raw.open(world.port)
    await unended.send(b"EHLO " + b"b" * 2**20)
    await unended.close()
    growth = rss_mb() - baseline
    print(f"20 x 1 MB command lines: RSS growth {growth:.1f} MB")
    assert growth < 50, growth
    await normal_transaction_works(world)


@pytest.fixture
async def impatient_world(make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch) -> World:
    """The gateway with a 1.5 s session timeout instead of 300 s."""
    monkeypatch.setattr(smtp_server, "SESSION_TIMEOUT", 1.5)
    return await make_world()


def test_production_session_timeout_is_bounded() -> None:
    """The idle/DATA timeout exists and is at most ten minutes."""
    assert 0 < PRODUCTION_TIMEOUT <= 600


@pytest.mark.parametrize("where", ["command", "data"])
async def test_slowloris_client_is_dropped_by_the_timeout(
    impatient_world: World, where: str
) -> None:
    """A client trickling bytes (one every 0.2 s, a command never ended; or whole lines
    inside DATA) is closed by the session timeout; nothing is stored; others are served."""
    world = impatient_world
    client = await Raw.open(world.port)
    assert (await client.command(b"EHLO slow.example"))[0] == 250
    if where == "data":
        assert (await client.command(b"MAIL FROM:<x@y.example>"))[0] == 250
        assert (await client.command(f"RCPT TO:<{JOIN}>".encode()))[0] == 250
        assert (await client.command(b"DATA"))[0] == 354
    started = time.monotonic()
    closed = False
    for _ in range(100):  # 20 s at most
        try:
            await client.send(b"Subject: traag\r\n" if where == "data" else b"N")
        except ConnectionError:
            closed = True
            break
        if await client.closed_within(0.2):
            closed = True
            break
    elapsed = time.monotonic() - started
    await client.close()
    assert closed, f"still open after {elapsed:.1f} s"
    assert elapsed < 10, elapsed
    print(f"slowloris ({where}): closed after {elapsed:.1f} s (timeout 1.5 s)")
    assert await world.store.read("SELECT id FROM inbound") == []
    await normal_transaction_works(world)


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"fd hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def test_a_thousand_idle_connections_do_not_stop_a_normal_client(world: World) -> None:
    """1,000 connections sit idle after the greeting; a client in another thread still
    gets its NOOPs and transactions answered, and memory per idle session stays small."""
    limit = raise_fd_limit(2 * 1_000 + 500)  # both ends live in this process
    baseline = rss_mb()
    started = time.monotonic()
    idle: list[Raw] = []
    for _ in range(10):  # in bursts of 100: the listen backlog is asyncio's default, 100
        idle += await asyncio.gather(*(Raw.open(world.port) for _ in range(100)))
    opened = time.monotonic() - started
    per_connection_kb = (rss_mb() - baseline) * 1024 / len(idle)
    probe = ProbeClient(world.port, JOIN, JOIN_MAIL, "x@y.example").start()
    try:
        await asyncio.sleep(1.0)
        # And the same loop's own clients too.
        await normal_transaction_works(world)
    finally:
        await probe.stop()
        for client in idle:
            await client.close()
    print(f"1,000 idle connections: opened in {opened:.1f} s, {per_connection_kb:.0f} KB each,"
          f" probe slowest {probe.slowest * 1000:.0f} ms, fd soft limit {limit}")
    assert probe.errors == [], probe.errors
    assert probe.transactions >= 1
    assert per_connection_kb < 200, per_connection_kb


@pytest.fixture
async def capped_world(make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch) -> World:
    """The gateway allowing 20 SMTP sessions at once."""
    monkeypatch.setattr(smtp_server, "MAX_CONNECTIONS", 20)
    return await make_world()


async def test_connections_over_the_cap_get_421_and_a_close(capped_world: World) -> None:
    """With 20 sessions open the 21st is told "421 4.4.5" and closed; once some close,
    new sessions are served again."""
    world = capped_world
    held = [await Raw.open(world.port) for _ in range(20)]
    extra = await Raw.open(world.port, greeting=False)
    code, text = await extra.reply()
    assert (code, text[:9]) == (421, "421 4.4.5"), text
    assert await extra.closed_within(5)
    await extra.close()
    for client in held[:5]:
        await client.close()
    await asyncio.sleep(0.2)  # the server sees the closes
    await normal_transaction_works(world)
    for client in held[5:]:
        await client.close()


def test_connection_cap_follows_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd's default soft limit of 1,024 descriptors the cap leaves room for
    the gateway's own files and sockets."""
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 524288))
    assert smtp_server.connection_limit() == 1024 - smtp_server._FD_RESERVE
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (65536, 524288))
    assert smtp_server.connection_limit() == smtp_server.MAX_CONNECTIONS



async def _greeting_from(port: int, source: str) -> tuple[asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return writer, await asyncio.wait_for(reader.readline(), 10)


async def test_one_client_address_gets_at_most_50_sessions(world: World) -> None:
    """The 51st session from one address is told "421 4.7.0"; another address, and the
    local MTA's 127.0.0.1, are served meanwhile."""
    limit = smtp_server.MAX_PER_CLIENT
    held = [await _greeting_from(world.port, "127.0.0.2") for _ in range(limit)]
    assert all(greeting.startswith(b"220 ") for _, greeting in held)
    extra, greeting = await _greeting_from(world.port, "127.0.0.2")
    assert greeting.startswith(b"421 4.7.0"), greeting
    other, greeting = await _greeting_from(world.port, "127.0.0.3")
    assert greeting.startswith(b"220 "), greeting
    await normal_transaction_works(world)  # from 127.0.0.1
    for writer in [extra, other, *(w for w, _ in held)]:
        writer.close()
    await asyncio.sleep(0.2)  # the server sees the closes
    again, greeting = await _greeting_from(world.port, "127.0.0.2")
    assert greeting.startswith(b"220 "), greeting
    again.close()
