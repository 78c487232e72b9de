"""systemd's notify protocol with the real daemon: READY=1 once it listens, WATCHDOG=1
from the event loop, STOPPING=1 on SIGTERM, received on a NOTIFY_SOCKET the test binds;
and the unit file passes ``systemd-analyze verify`` and rates 2.0 or lower in
``systemd-analyze security`` (systemd's tools: .ci/run installs them)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer
from tests.support.notify import receive_notifications
from tests.support.sink import Sink
from tests.support.world import gateway_key, write_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "bin-gateway.service"


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
        ready = await asyncio.to_thread(receive_notifications, sock, "READY=1", 30)
        assert any(m.startswith("READY=1") and "STATUS=listening on" in m for m in ready), ready
        pings = await asyncio.to_thread(receive_notifications, sock, "never", 0.6)
        assert sum(m == "WATCHDOG=1" for m in pings) >= 2, pings
        process.send_signal(signal.SIGTERM)
        stopping = await asyncio.to_thread(receive_notifications, sock, "STOPPING=1", 10)
        assert "STOPPING=1" in stopping
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        sock.close()
        await sink.stop()
        dns.stop()


def _analyze() -> str:
    """systemd-analyze, installed by .ci/run in CI; elsewhere its absence skips."""
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze must be installed in CI (.ci/run installs systemd)")
        pytest.skip("systemd-analyze is not installed on this machine (apt install systemd)")
    return found


def _unit_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at an executable that exists here, so verify
    has nothing to say about a binary that is only installed on a real server."""
    stub = tmp_path / "bin-gateway"
    stub.write_text("#!/bin/sh\nexit 0\n", "utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text("utf-8")
    assert "ExecStart=/usr/local/bin/bin-gateway " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/local/bin/bin-gateway ", f"ExecStart={stub} "),
                    "utf-8")
    return copy


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd/bin-gateway.service is a valid unit: systemd-analyze verify says nothing."""
    result = subprocess.run([_analyze(), "verify", str(_unit_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_file_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure 2.0 or lower (it is 1.6)."""
    result = subprocess.run(
        [_analyze(), "security", "--offline=true", "--no-pager", str(_unit_copy(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for bin-gateway\.service: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    print(f"systemd-analyze security: exposure {match.group(1)}")
    assert float(match.group(1)) <= 2.0, result.stdout
