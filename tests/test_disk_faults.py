"""Disk faults: a database that cannot be written answers 451 4.3.0 at DATA, never 250.

The gateway's data directory sits on a small tmpfs mounted for the test (root only;
skipped with the reason otherwise), and a filler file takes every free block. While the
fault lasts every DATA gets ``451 4.3.0``; once it clears, sending works again, every
message answered 250 (before and after) is processed, and no worker has died.

Not covered: a read-only database. As root (the only way to mount here) file modes are
not enforced, and a tmpfs with the database open refuses ``remount,ro`` ("busy"); the
gateway's answer would be the same 451 4.3.0 (any store exception, see smtp_server).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.world import COORDINATOR, DOMAIN, MakeWorld, World

SIZE = "64m"


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs at <tmp>/data, the World's data_dir; unmounted after the world stops
    (this fixture is set up before make_world, so it is torn down after it)."""
    if os.geteuid() != 0:
        reason = "needs root to mount a tmpfs"
        print(f"disk fault tests skipped: {reason}")
        pytest.skip(reason)
    data = tmp_path / "data"
    data.mkdir()
    mounted = _mount(["-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(data)])
    if mounted.returncode != 0:
        reason = f"mount -t tmpfs failed: {mounted.stderr.strip()}"
        print(f"disk fault tests skipped: {reason}")
        pytest.skip(reason)
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


@contextlib.contextmanager
def disk_full(folder: Path) -> Iterator[None]:
    """Take every free block of the file system holding ``folder``, until the block ends."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as out:  # ENOSPC, also at close
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    assert os.statvfs(folder).f_bavail == 0
    try:
        yield
    finally:
        filler.unlink()


def agency_mail(world: World, n: int) -> bytes:
    # 300 KB of text: more than the WAL can take by reusing pages it already has.
    body = f"Bericht {n}.\r\n" + ("Er is ingebroken aan de Dorpsstraat.\r\n" * 8000)
    return world.agency_mail(subject=f"Schijf {n}", body=body).replace(
        b"<melding-1@", f"<schijf-{n}@".encode())


async def test_full_disk_answers_451_then_recovers_losing_nothing(
    small_disk: Path, make_world: MakeWorld
) -> None:
    """Disk full: DATA gets 451 4.3.0 on every route tried, never 250; after the fault
    every message answered 250 is processed and held, and no worker died."""
    world = await make_world()
    assert world.store.path.parent == small_disk
    accepted: list[int] = []
    first = await world.send(agency_mail(world, 0), f"agency@{DOMAIN}")
    assert first.accepted, first
    accepted.append(0)
    await world.settle()

    during = []
    with disk_full(small_disk):
        for n in (1, 2, 3):
            answer = await world.send(agency_mail(world, n), f"agency@{DOMAIN}")
            during.append(answer.data)
        join = await world.send(b"From: x@y.example\r\nSubject: ja\r\n\r\nja\r\n",
                                f"buurt-noord+aanmelden@{DOMAIN}", "x@y.example")
        during.append(join.data)
    print(f"disk full: answers during the fault {[(r.code, r.text[:5]) for r in during if r]}")
    for reply in during:
        assert reply is not None
        assert (reply.code, reply.text[:5]) == (451, "4.3.0"), reply

    for n in (4, 5):
        answer = await world.send(agency_mail(world, n), f"agency@{DOMAIN}")
        assert answer.accepted, answer
        accepted.append(n)
    await world.settle(timeout=60)
    assert world.gateway.failed_task() is None
    rows = await world.store.read("SELECT state, count(*) FROM inbound GROUP BY state")
    assert {r[0]: r[1] for r in rows} == {"processed": len(accepted)}
    subjects = {h.subject for h in await world.store.submissions()}
    assert subjects == {f"Schijf {n}" for n in accepted}
    await world.wait_for_mail_to(COORDINATOR, count=len(accepted))
