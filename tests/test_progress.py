"""Progress bars on long admin commands: drawn on stderr when it is a terminal (a real
pty here), absent otherwise, and the stdout a script reads is the same either way."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.world import gateway_key, write_config

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ENV = os.environ | {"PYTHONPATH": str(ROOT), "COLUMNS": "120"}


def _run(args: list[str], *, terminal: bool) -> tuple[int, str, str]:
    """``python -m bin_gateway ARGS`` with stderr on a pty (terminal) or a pipe."""
    command = [sys.executable, "-m", "bin_gateway", *args]
    if not terminal:
        done = subprocess.run(command, env=ENV, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, check=False)
        return done.returncode, done.stdout, done.stderr
    master, slave = os.openpty()
    process = subprocess.Popen(command, env=ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        assert process.stdout is not None
        out = process.stdout.read().decode()
        code = process.wait(120)
        reader.join(30)
    finally:
        os.close(master)
    return code, out, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path, dns_port=53, sink_port=25, key_pem=gateway_key())


def test_members_import_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """2500 rows: the bar counts them on a terminal; off one, stderr stays empty; stdout
    is the same summary line both times."""
    config = _config(tmp_path)
    csv = tmp_path / "members.csv"
    csv.write_text("email,name\n" + "".join(f"lid{n}@bewoners.example,Lid {n}\n"
                                            for n in range(2500)), "utf-8")
    args = ["members", "import", "buurt-noord", str(csv), "--config", str(config)]
    code, out, err = _run(args, terminal=True)
    assert code == 0, (out, err)
    assert "importing into buurt-noord" in err and "2500/2500" in err, err
    assert out == f"imported {csv} into buurt-noord: 2500 added, 0 already members, 0 bad rows\n"

    code, piped_out, piped_err = _run(args, terminal=False)
    assert (code, piped_err) == (0, "")
    assert piped_out == out.replace("2500 added, 0 already", "0 added, 2500 already")


def test_queue_retry_and_backup_bars(tmp_path: Path) -> None:
    """`queue retry --all` of 1200 failed deliveries (in batches) and `backup` draw their
    bars on a terminal; without one their output is only the summary line."""
    config = _config(tmp_path)
    assert _run(["queue", "list", "--config", str(config)], terminal=False)[0] == 0  # migrates
    db = sqlite3.connect(tmp_path / "data" / "gateway.db", isolation_level=None)
    try:
        db.execute("INSERT INTO outbound (id, kind, source_key, envelope_from, message,"
                   " created_at) VALUES (1, 'notice', 'k', 'bounce@x', x'00', 0)")
        db.executemany(
            "INSERT INTO deliveries (outbound_id, recipient, token, state, created_at,"
            " next_attempt_at, last_code) VALUES (1, ?, ?, 'failed', ?, ?, 550)",
            [(f"r{n}@x.example", f"t{n}", time.time(), time.time()) for n in range(1200)])
    finally:
        db.close()

    code, out, err = _run(["queue", "retry", "--all", "--config", str(config)], terminal=True)
    assert (code, out) == (0, "re-queued 1200 deliveries\n"), err
    assert "re-queueing" in err and "1200/1200" in err, err
    code, out, err = _run(["queue", "retry", "--all", "--config", str(config)], terminal=False)
    assert (code, out, err) == (0, "re-queued 1200 deliveries\n", "")  # queued ones again

    target = tmp_path / "copy.db"
    code, out, err = _run(["backup", str(target), "--config", str(config)], terminal=True)
    assert code == 0 and out.endswith(", 0 members, 0 messages, integrity ok\n"), (out, err)
    match = re.search(r"backup \(pages\).*?(\d+)/(\d+)", err)
    assert match and match.group(1) == match.group(2), err
    code, out, err = _run(["backup", str(target), "--force", "--config", str(config)],
                          terminal=False)
    assert code == 0 and err == "" and out.endswith("integrity ok\n")
