"""The gateway daemon as its own process, for tests that kill it or measure it.

``serve`` runs in a child process as systemd runs it (config file, JSON logs), so a
SIGKILL hits it where it is and its memory is its own (``peak_rss_mb``). The smarthost
sink and the DNS server stay in the test process and keep recording across kills.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

__all__ = ["DAEMON", "DaemonProcess", "read_db"]

ROOT = Path(__file__).resolve().parent.parent.parent
STOP_SECONDS = 30.0  # §8: SIGTERM drains and exits within 30 s

# The daemon without the CLI: load the config, serve until a signal.
# For a hang, SIGUSR1 prints every asyncio task's stack and SIGUSR2 every thread's.
DAEMON = """
import asyncio, faulthandler, signal, sys
from pathlib import Path
from bin_gateway.app import serve
from bin_gateway.config import load_config
from bin_gateway.log import configure_logging

def dump_tasks():
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    await serve(load_config(Path(sys.argv[1])))

configure_logging(json=True)
faulthandler.register(signal.SIGUSR2, all_threads=True)
asyncio.run(main())
"""


def read_db(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the daemon's database as an admin would (WAL: also while it runs)."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


class DaemonProcess:
    """``serve`` in a child process, its log in a file for the failure message."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log_start = 0  # this run's lines begin here (restarts append to one log)

    async def start(self) -> DaemonProcess:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DAEMON, str(self.config_path),
                stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=ROOT, env=env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self) -> str:
        return self.log_path.read_text("utf-8", "replace")[-8000:]

    async def port(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        """The SMTP port, once this process logged ``gateway.started``."""
        deadline = time.monotonic() + timeout
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            buffered = b""
            while time.monotonic() < deadline:
                self.check_alive()
                buffered += log.read()
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if b'"gateway.started"' in line:
                        return int(json.loads(line)["ports"][0])
                await asyncio.sleep(0.02)
        raise AssertionError(f"the daemon never started\n{self.log_tail()}")

    def events(self, name: str) -> list[dict[str, object]]:
        """This run's JSON log lines whose event is ``name``."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            lines = log.read().decode("utf-8", "replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [entry for entry in found if entry.get("event") == name]

    async def wait_for_event(
        self, name: str, count: int = 1, timeout: float = 30.0  # noqa: ASYNC109
    ) -> list[dict[str, object]]:
        """The ``name`` events once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if len(found := self.events(name)) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} {name} events\n{self.log_tail()}")

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory this process ever had (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def children(self) -> dict[int, float]:
        """This process's children (the reply pool's workers): pid -> peak RSS in MB."""
        found: dict[int, float] = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue  # it ended while we looked
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() == str(self.pid):
                found[int(status.parent.name)] = int(fields["VmHWM"].split()[0]) / 1024
        return found

    async def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert self.process is not None
        assert await self.process.wait() == -signal.SIGKILL

    async def terminate(self) -> float:
        """SIGTERM; returns the seconds until exit, after checking the exit code is 0."""
        assert self.process is not None
        started = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            os.kill(self.pid, signal.SIGUSR1)  # where is it stuck?
            os.kill(self.pid, signal.SIGUSR2)
            await asyncio.sleep(1.0)
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"no exit {STOP_SECONDS} s after SIGTERM\n{self.log_tail()}") from None
        took = time.monotonic() - started
        assert code == 0, f"exit code {code} after SIGTERM\n{self.log_tail()}"
        return took

    async def reap(self) -> None:
        """Test clean-up: never leave a daemon running."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(
                f"daemon exited with {self.process.returncode}\n{self.log_tail()}")


async def wait_gone(pids: set[int], timeout: float) -> set[int]:  # noqa: ASYNC109
    """Wait until none of ``pids`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if os.path.exists(f"/proc/{pid}")}  # noqa: ASYNC240
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.1)
