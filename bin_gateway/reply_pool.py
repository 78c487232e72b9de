"""Where a reply's CPU work runs: a worker process, so the gateway uses a second core.

Anonymising, building and signing a reply is pure Python for the most part; in a thread
it would share the event loop's interpreter lock, so SMTP intake and delivery would wait
on it. A small process pool (spawned, not forked: the parent has threads and open
database connections) runs :func:`reply_build.prepare` instead. Each worker loads the
DKIM key once. Without workers (one CPU, or the CLI) the work runs in a thread; a worker
that dies is replaced, and the job is done in a thread meanwhile: a reply is never lost
to a broken pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import structlog

from .config import Config
from .notices import NoticeWriter
from .reply_build import Prepared, ReplyJob, prepare
from .signing import Signer

log = structlog.get_logger("bin_gateway.reply_pool")

_worker_writer: NoticeWriter | None = None  # set in each worker process
_PARENT_POLL = 1.0  # seconds between a worker's checks that the gateway still runs


def _start_worker(domain: str, selector: str, key_path: str, gateway_pid: int) -> None:
    global _worker_writer
    # The gateway's pid comes from the gateway: it may have died while this worker was
    # still starting, and then getppid() here would already name the adoptive parent.
    threading.Thread(target=_exit_with, args=(gateway_pid,), daemon=True).start()
    signer = Signer.load(domain=domain, selector=selector, key_path=Path(key_path))
    _worker_writer = NoticeWriter(domain=domain, signer=signer)


def _exit_with(parent: int) -> None:
    """End this worker when the gateway is gone. A gateway killed with SIGKILL (or by
    the OOM killer) cannot shut its pool down, and a spawned worker waits on its job
    queue forever: each crash left one worker (~45 MB) and its resource tracker behind
    (seen in tests/test_fault_injection.py). Orphans are re-parented, so poll."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL)
    os._exit(0)


def _run(job: ReplyJob) -> Prepared:
    assert _worker_writer is not None, "the pool's initializer sets it"
    return prepare(job, _worker_writer)


def default_workers() -> int:
    """One worker per CPU beyond the first (the event loop's), at most four."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class ReplyPool:
    def __init__(self, config: Config, writer: NoticeWriter, workers: int) -> None:
        self._writer = writer
        self._workers = workers
        dkim = config.dkim
        self._initargs = (config.gateway.domain, dkim.selector, str(dkim.private_key),
                          os.getpid())
        self._pool: ProcessPoolExecutor | None = None

    async def prepare(self, job: ReplyJob) -> Prepared:
        if not self._workers:
            return await asyncio.to_thread(prepare, job, self._writer)
        if self._pool is None:
            # Started on the first reply, so a gateway that never sees one never forks.
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=self._initargs,
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, _run, job)
        except BrokenProcessPool:
            log.warning("reply_pool.broken", workers=self._workers)
            self._pool = None
            return await asyncio.to_thread(prepare, job, self._writer)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

