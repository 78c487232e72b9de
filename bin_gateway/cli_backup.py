"""``bin-gateway backup FILE``: an online copy of the database (see ``backup``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .backup import back_up
from .cli_common import EXIT_FAILURE, EXIT_OK, CliError, Subparsers, load
from .errors import BackupError
from .progress import progress
from .services import DATABASE_NAME

__all__ = ["register"]

RESTORE = """\
The copy is consistent (the database as it was at one instant) and can be made while
the gateway runs: it goes on taking and sending mail. FILE is written under a temporary
name, checked with PRAGMA integrity_check, and only then renamed; it is readable by its
owner only (it holds members' addresses).

To restore, with DATA_DIR the config's data_dir (under systemd: /var/lib/bin-gateway):
  systemctl stop bin-gateway
  cp FILE DATA_DIR/gateway.db
  chown --reference=DATA_DIR DATA_DIR/gateway.db; chmod 600 DATA_DIR/gateway.db
  rm -f DATA_DIR/gateway.db-wal DATA_DIR/gateway.db-shm   (a stale journal would corrupt it)
  systemctl start bin-gateway
The gateway migrates an older copy's schema when it starts.
"""


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "backup", parents=[common], help="copy the database to FILE (safe while running)",
        description="Copy the gateway's database to FILE with SQLite's online backup.",
        epilog=RESTORE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    cmd.add_argument("file", metavar="FILE", type=Path, help="where to write the copy")
    cmd.add_argument("--force", action="store_true", help="replace FILE if it exists")
    cmd.set_defaults(handler=backup)


def backup(args: argparse.Namespace) -> int:
    config = load(args)
    database = config.gateway.data_dir / DATABASE_NAME
    with progress("backup (pages)", 0) as report:
        try:
            result = back_up(database, args.file, overwrite=args.force, on_pages=report)
        except BackupError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None
    print(f"backup of {database} written to {result.path}: {_size(result.size)}, "
          f"{result.members} members, {result.messages} messages, integrity ok")
    return EXIT_OK


def _size(size: int) -> str:
    amount, unit = float(size), "bytes"
    for bigger in ("KB", "MB", "GB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, bigger
    return f"{size} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"
