"""Shared fixtures: the whole gateway on loopback (see tests/support/world.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
