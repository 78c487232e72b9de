"""systemd's notify protocol with the real daemon: READY=1 once it listens, WATCHDOG=1
from the event loop, STOPPING=1 on SIGTERM, received on a NOTIFY_SOCKET the test binds;
and the unit file passes ``systemd-analyze verify`` where systemd's tools exist."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer
from tests.support.sink import Sink
from tests.support.world import gateway_key, write_config

ROOT = Path(__file__).resolve().parent.parent


def _receive(sock: socket.socket, until: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until in g for g in got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got


async def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path: Path) -> None:
    """READY=1 after the port is bound, WATCHDOG=1 pings, STOPPING=1 then exit 0."""
    dns, sink = DnsServer().start(), await Sink.start()
    config = write_config(tmp_path, dns_port=dns.port, sink_port=sink.port,
                          key_pem=gateway_key("ed25519"))
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = os.environ | {"PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(path),
                        "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    process = await asyncio.create_subprocess_exec(  # the CLI exactly as the unit runs it
        sys.executable, "-m", "bin_gateway", "serve", "--config", str(config),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        ready = await asyncio.to_thread(_receive, sock, "READY=1", 30)
        assert any(m.startswith("READY=1") and "STATUS=listening on" in m for m in ready), ready
        pings = await asyncio.to_thread(_receive, sock, "never", 0.6)
        assert sum(m == "WATCHDOG=1" for m in pings) >= 2, pings
        process.send_signal(signal.SIGTERM)
        stopping = await asyncio.to_thread(_receive, sock, "STOPPING=1", 10)
        assert "STOPPING=1" in stopping
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        sock.close()
        await sink.stop()
        dns.stop()


def test_unit_file_passes_systemd_analyze_verify() -> None:
    """systemd/bin-gateway.service is a valid unit (where systemd-analyze can run)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    unit = ROOT / "systemd" / "bin-gateway.service"
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "bin-gateway.service" in line and "not found" not in line.lower()
                and "executable" not in line.lower()]
    assert result.returncode == 0 or not problems, result.stdout + result.stderr
