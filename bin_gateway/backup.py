"""An online, consistent copy of the database, safe while the gateway runs.

SQLite's backup API copies the pages. The source connection holds one read transaction
for the whole copy, so every step reads the same snapshot: the copy is the database as
it was at one instant, and, WAL letting readers and the writer pass each other, the
running gateway goes on taking and sending mail meanwhile (without that transaction, a
write by the gateway between two steps would restart the copy, possibly forever).

The copy is written to a temporary file beside the destination, switched from WAL to a
plain rollback journal (one self-contained file), checked with ``PRAGMA
integrity_check``, flushed to disk, and only then given its name: an interrupted or bad
backup never leaves a file that looks like a good one. The file is readable by its owner
only (it holds members' addresses).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BackupError

STEP_PAGES = 1024  # pages copied per step (4 MiB at SQLite's default page size)
BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int  # bytes
    members: int
    messages: int  # stored inbound messages


def back_up(
    database: Path, destination: Path, *, overwrite: bool = False,
    on_pages: Callable[[int, int], None] | None = None, step_pages: int = STEP_PAGES,
) -> BackupResult:
    """Copy ``database`` to ``destination``; ``on_pages(done, total)`` after each step.

    Refuses an existing ``destination`` unless ``overwrite``; raises BackupError.
    """
    if not database.is_file():
        raise BackupError(f"no database at {database}")
    if destination.exists() and not overwrite:
        raise BackupError(f"{destination} exists (give --force to replace it)")
    if destination.is_dir():
        raise BackupError(f"{destination} is a directory")
    folder = destination.absolute().parent
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=f".{destination.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError(f"cannot write in {folder}: {exc.strerror}") from None
    os.close(handle)
    temporary = Path(name)
    try:
        _copy(database, temporary, on_pages, step_pages)
        result = _check(temporary)
        _publish(temporary, destination, overwrite)
    finally:
        for leftover in [temporary, *(Path(name + end) for end in ("-journal", "-wal", "-shm"))]:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return BackupResult(destination, result[0], result[1], result[2])


def _copy(
    database: Path, temporary: Path, on_pages: Callable[[int, int], None] | None, pages: int
) -> None:
    source = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    target = sqlite3.connect(temporary, isolation_level=None)
    try:
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchall()  # takes the snapshot

        def step(status: int, remaining: int, total: int) -> None:
            if on_pages is not None:
                on_pages(total - remaining, total)

        source.backup(target, pages=pages, progress=step, sleep=0)
        source.execute("COMMIT")
        # One self-contained file: the copy leaves WAL mode (restore puts it back: the
        # gateway sets WAL when it opens the database).
        target.execute("PRAGMA journal_mode = DELETE").fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"copying {database} failed: {exc}") from None
    finally:
        target.close()
        source.close()


def _check(copy: Path) -> tuple[int, int, int]:
    """(size, members, messages) of a copy that passed the integrity check."""
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        verdict = [row[0] for row in db.execute("PRAGMA integrity_check")]
        if verdict != ["ok"]:
            raise BackupError(f"the copy failed the integrity check: {'; '.join(verdict[:5])}")
        members = db.execute("SELECT count(*) FROM members").fetchone()[0]
        messages = db.execute("SELECT count(*) FROM inbound").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"the copy cannot be read back: {exc}") from None
    finally:
        db.close()
    with copy.open("rb+") as file:
        os.fsync(file.fileno())
    return copy.stat().st_size, int(members), int(messages)


def _publish(temporary: Path, destination: Path, overwrite: bool) -> None:
    """Give the checked copy its name; without ``overwrite``, never replace a file that
    appeared meanwhile (a hard link fails where a rename would not)."""
    try:
        if overwrite:
            os.replace(temporary, destination)
        else:
            try:
                os.link(temporary, destination)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links (a FAT stick): check, rename
                if destination.exists():
                    raise FileExistsError from None
                os.replace(temporary, destination)
    except FileExistsError:
        raise BackupError(f"{destination} exists (give --force to replace it)") from None
    except OSError as exc:
        raise BackupError(f"cannot write {destination}: {exc.strerror}") from None
    folder = os.open(destination.absolute().parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name survives a power cut too
    finally:
        os.close(folder)
