"""Reading what the daemon tells systemd: datagrams on a NOTIFY_SOCKET the test opened."""

from __future__ import annotations

import socket
import time


def receive_notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """The datagrams received until one holds ``until``, or ``timeout`` seconds pass."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until in g for g in got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got
