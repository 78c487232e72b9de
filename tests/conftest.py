"""Shared fixtures: the whole gateway on loopback (see tests/support/world.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.world import World, start_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    started = await start_world(tmp_path)
    try:
        yield started
    finally:
        await started.stop()
