"""Timed work on held items: the reminder after ``remind_after``, expiry after ``expire_after``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from .config import CurrentConfig, FollowsConfig
from .holding import Holding
from .store import Store

log = structlog.get_logger("bin_gateway.scheduler")

MAX_INTERVAL = 30.0
PURGE_EVERY = 86400.0  # retention runs once a day (and at start)


class Scheduler(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, holding: Holding,
        wake_outbox: Callable[[], None],
    ) -> None:
        self._current = current
        self._store = store
        self._holding = holding
        # Reminders and expiry notices are queued mail: without a wake they would wait for
        # the outbox's idle poll.
        self._wake_outbox = wake_outbox
        self._next_purge = 0.0

    @property
    def interval(self) -> float:
        """Check often enough that a short test setting still fires on time (read at each
        tick: a reload may shorten the moderation times)."""
        moderation = self._config.moderation
        shortest = min(moderation.remind_after, moderation.expire_after).total_seconds()
        return max(0.1, min(MAX_INTERVAL, shortest / 4))

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> int:
        """Send due reminders and expire due items; returns how many were handled."""
        now = time.time()
        done = 0
        for held in await self._store.due_expiries(now):
            await self._holding.expire(held)
            done += 1
        for held in await self._store.due_reminders(now):
            await self._holding.remind(held)
            done += 1
        if done:
            self._wake_outbox()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY
            purged = await self._store.purge_raw_before(
                now - self._config.gateway.keep_messages.total_seconds())
            if purged:
                log.info("retention.purged", messages=purged)
        return done
