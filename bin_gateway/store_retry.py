"""Waiting out a database that cannot take writes (a full disk, an I/O error).

A worker that meets :data:`~bin_gateway.store.STORE_ERRORS` has lost nothing: its work
was rolled back and is still to do. Dying would make systemd restart the daemon over and
over while the disk stays full, and would drop what the outbox holds in memory (outcomes
of copies already sent, which would then go out again). So the worker says so once,
waits, and tries again: 1 s, doubling, at most 30 s between tries.
"""

from __future__ import annotations

import asyncio

import structlog

FIRST_WAIT = 1.0
MAX_WAIT = 30.0


class StoreBackoff:
    def __init__(self, worker: str) -> None:
        self._log = structlog.get_logger(f"bin_gateway.{worker}")
        self._worker = worker
        self._wait = 0.0

    async def failed(self, error: BaseException) -> None:
        """Log (the first failure in a row as an error) and wait before the next try."""
        self._wait = min(MAX_WAIT, self._wait * 2) if self._wait else FIRST_WAIT
        event = f"{self._worker}.store_failed"
        if self._wait == FIRST_WAIT:
            self._log.error(event, error=repr(error), retry_in=self._wait)
        else:
            self._log.warning(event, error=repr(error), retry_in=self._wait)
        await asyncio.sleep(self._wait)

    def succeeded(self) -> None:
        if self._wait:
            self._log.info(f"{self._worker}.store_recovered")
        self._wait = 0.0
