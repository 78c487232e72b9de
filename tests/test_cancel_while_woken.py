"""A worker cancelled in the very moment it is woken still ends: a SIGTERM while mail
arrives. Python 3.11's ``asyncio.wait_for`` swallowed such a cancellation (gh-86296):
the worker ran on, and the gateway's stop waited for it for ever. Found as a full test
run that hung in a world's teardown under load; ``waits.py`` says more."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.world import World


@pytest.mark.parametrize("name", ["processor", "outbox"])
async def test_a_worker_cancelled_as_it_is_woken_ends(world: World, name: str) -> None:
    gateway = world.gateway
    task = next(t for t in gateway._tasks if t.get_name() == name)
    wake = gateway.processor.wake if name == "processor" else gateway.outbox.wake
    await world.settle()
    await asyncio.sleep(0.1)  # both idle now, waiting to be woken
    wake()
    task.cancel()  # in the same moment, before the woken waiter runs
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done, f"{name} did not end when cancelled"
    assert task.cancelled()
