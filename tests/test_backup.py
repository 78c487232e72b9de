"""``bin-gateway backup FILE``: a consistent copy of the database while the gateway runs,
checked, never over an existing file without --force."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from bin_gateway.backup import back_up
from bin_gateway.cli import main
from bin_gateway.errors import BackupError
from tests.support.world import DOMAIN, MakeWorld, gateway_key, write_config

ROOT = Path(__file__).resolve().parent.parent


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    finally:
        db.close()


async def test_backup_while_the_gateway_takes_mail(make_world: MakeWorld, tmp_path: Path) -> None:
    """The CLI, in its own process, copies the running gateway's database while mail keeps
    coming in: the copy passes integrity_check and holds the members and messages."""
    world = await make_world()
    await world.add_members("buurt-noord", 300)
    assert (await world.send(world.agency_mail(), f"agency@{DOMAIN}")).accepted
    stop = asyncio.Event()

    async def keep_sending() -> int:
        sent = 0
        while not stop.is_set():
            assert (await world.send(world.agency_mail(subject=f"Nr {sent}"),
                                     f"agency@{DOMAIN}")).accepted
            sent += 1
        return sent

    sender = asyncio.create_task(keep_sending())
    target = tmp_path / "copy" / "gateway-backup.db"
    target.parent.mkdir()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bin_gateway", "backup", str(target),
            "--config", str(world.config.source),
            env=os.environ | {"PYTHONPATH": str(ROOT)}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        stop.set()
        sent = await sender
    assert process.returncode == 0, err
    assert err == b""  # no bar and no noise off a terminal
    line = out.decode()
    assert line.startswith(f"backup of {world.config.gateway.data_dir / 'gateway.db'} written to "
                           f"{target}: ") and line.endswith(", integrity ok\n"), line
    assert ", 300 members, " in line
    assert sent >= 1  # mail was taken while the copy was made

    db = sqlite3.connect(target)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        db.close()
    assert _count(target, "members") == 300
    messages = _count(target, "inbound")
    assert 1 <= messages <= 1 + sent
    assert f"{messages} messages" in line
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["gateway-backup.db"]


def _database(path: Path, rows: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE members (id INTEGER PRIMARY KEY, email TEXT)")
    db.execute("CREATE TABLE inbound (id INTEGER PRIMARY KEY, raw BLOB)")
    db.executemany("INSERT INTO inbound (raw) VALUES (?)", [(os.urandom(2000),)] * rows)
    db.close()


def test_a_paged_backup_is_one_snapshot_despite_writes_between_steps(tmp_path: Path) -> None:
    """Writes by another connection between the copy's steps neither restart the copy
    (progress only goes forward) nor get into it (the copy is the instant it began)."""
    source = tmp_path / "gateway.db"
    _database(source, rows=200)
    writer = sqlite3.connect(source, isolation_level=None)
    seen: list[tuple[int, int]] = []

    def between_steps(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) <= 50:
            writer.execute("INSERT INTO inbound (raw) VALUES (?)", (os.urandom(2000),))

    try:
        result = back_up(source, tmp_path / "copy.db", on_pages=between_steps, step_pages=5)
    finally:
        writer.close()
    assert len(seen) > 10
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == seen[-1][1]
    assert result.messages == 200 == _count(tmp_path / "copy.db", "inbound")
    assert _count(source, "inbound") == 200 + min(len(seen), 50)


def test_backup_refuses_an_existing_file_unless_forced(tmp_path: Path) -> None:
    """An existing FILE is left as it was (exit 1) unless --force, which replaces it."""
    source = tmp_path / "gateway.db"
    _database(source, rows=3)
    target = tmp_path / "backup.db"
    target.write_bytes(b"precious")
    with pytest.raises(BackupError, match="exists"):
        back_up(source, target)
    assert target.read_bytes() == b"precious"
    assert back_up(source, target, overwrite=True).messages == 3
    assert _count(target, "inbound") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "gateway.db"]


def test_backup_cli_refusal_help_and_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command: exit 1 with a reason for an existing FILE, --force replaces it, and
    the help explains how to restore."""
    config = write_config(tmp_path, dns_port=53, sink_port=25, key_pem=gateway_key())
    data = tmp_path / "data"
    data.mkdir()
    _database(data / "gateway.db", rows=2)
    target = tmp_path / "backup.db"
    target.write_bytes(b"precious")
    assert main(["backup", str(target), "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "backup.db exists (give --force to replace it)" in err
    assert target.read_bytes() == b"precious"
    assert main(["backup", str(target), "--force", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.endswith(", 0 members, 2 messages, integrity ok\n") and err == "", (out, err)

    assert main(["backup", "--help"]) == 0
    assert "systemctl stop bin-gateway" in capsys.readouterr().out
