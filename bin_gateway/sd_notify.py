"""systemd's notify protocol (sd_notify(3)), without a dependency: a datagram to
``$NOTIFY_SOCKET``. READY=1 once the store is migrated and the port bound, WATCHDOG=1
from the event loop itself (a hung loop stops pinging, and systemd restarts the
service), RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 when a drain
begins. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1"); False when not run by systemd or unreachable."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return max(0.05, int(usec) / 2_000_000)


def reloading() -> str:
    """The RELOADING=1 state, with the CLOCK_MONOTONIC time that systemd 253 and later
    want beside it (older ones ignore the field). READY=1 ends the reload."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}"
