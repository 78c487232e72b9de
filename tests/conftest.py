"""Shared fixtures: the whole gateway on loopback (see tests/support/world.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from tests.support.dns_server import DnsServer
from tests.support.sink import Sink
from tests.support.world import MakeWorld, World, start_world


@pytest.fixture
async def make_world(tmp_path: Path) -> AsyncIterator[MakeWorld]:
    """``await make_world(remind_after="300ms", ...)``: a world with config overrides,
    stopped after the test whatever happens."""
    started: list[World] = []

    async def make(**overrides: str) -> World:
        tmp = tmp_path / f"world{len(started)}" if started else tmp_path
        tmp.mkdir(exist_ok=True)
        world = await start_world(tmp, **overrides)
        started.append(world)
        return world

    yield make
    for world in reversed(started):
        await world.stop()


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()


@pytest.fixture
async def neighbours() -> AsyncIterator[tuple[DnsServer, Sink]]:
    """The test DNS server and a smarthost sink, for a gateway run as its own process."""
    dns = DnsServer().start()
    sink = await Sink.start()
    try:
        yield dns, sink
    finally:
        await sink.stop()
        dns.stop()


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests that run the CLI configure structlog and the logging root; later tests get
    them back as they were."""
    monkeypatch.delenv("BIN_GATEWAY_CONFIG", raising=False)
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
