"""Waiting with a time limit without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` swallows a cancellation that arrives in the same
moment as the awaited thing completes (gh-86296, fixed in 3.12): it returns the result,
and the cancelled task goes on as if nothing happened. A worker loop that idles with
``wait_for(event.wait(), t)`` then never ends when shut down just as it is woken: the
outbox did exactly that under load (a shutdown that hung for good). ``asyncio.timeout``
tells its own expiry from a cancellation from outside, so it is used instead, here and
everywhere (ruff bans ``asyncio.wait_for`` in the package, TID251).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["wait_until_set"]


async def wait_until_set(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait for ``event`` at most ``timeout`` seconds; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
