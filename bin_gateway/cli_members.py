"""``bin-gateway members (list|add|remove|import|export)``: the members of one list.

Addresses are compared as the config compares them (``address_key``: case-insensitive),
so ``Jan@example.nl`` is not added next to an existing ``jan@example.nl`` and removing
``JAN@example.nl`` removes the stored ``jan@example.nl``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from .cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subparsers,
    known_list,
    load,
    run_with_services,
    setup_command_logging,
    warn,
)
from .cli_privacy import register_export
from .config import address_key
from .members_csv import MemberRow, normalise_address, read_members_csv, write_members_csv
from .models import Member, MemberState
from .progress import progress
from .services import Services

__all__ = ["register"]

BATCH = 1000  # rows per transaction on import (the gateway's writes wait meanwhile)


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    members = commands.add_parser(
        "members", parents=[common], help="list, add, remove, import and export list members",
        description="Manage the members of a list (LIST is a [[lists]] id from the config).",
    )  # fmt: skip
    sub = members.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd = sub.add_parser("list", parents=[common], help="show the members of LIST")
    cmd.add_argument("list_id", metavar="LIST")
    cmd.set_defaults(handler=members_list)
    cmd = sub.add_parser("add", parents=[common], help="add addresses to LIST")
    cmd.add_argument("list_id", metavar="LIST")
    cmd.add_argument("addresses", metavar="ADDRESS", nargs="+")
    cmd.set_defaults(handler=members_add)
    cmd = sub.add_parser("remove", parents=[common], help="remove addresses from LIST")
    cmd.add_argument("list_id", metavar="LIST")
    cmd.add_argument("addresses", metavar="ADDRESS", nargs="+")
    cmd.set_defaults(handler=members_remove)
    cmd = sub.add_parser(
        "enable", parents=[common],
        help="switch members of LIST on again (after bounces disabled them)",
    )
    cmd.add_argument("list_id", metavar="LIST")
    cmd.add_argument("addresses", metavar="ADDRESS", nargs="+")
    cmd.set_defaults(handler=members_enable)
    cmd = sub.add_parser(
        "import", parents=[common], help="add the members in a CSV file (email,name) to LIST",
        description="Add the rows of a CSV file with the header email,name (';' works too) to "
        "LIST. Every bad row is reported with its line number; the good rows are added. "
        "Exit status 1 when some rows were bad, 2 when the file is unusable.",
    )  # fmt: skip
    cmd.add_argument("list_id", metavar="LIST")
    cmd.add_argument("file", metavar="FILE", help="the CSV file, or - for standard input")
    cmd.set_defaults(handler=members_import)
    cmd = sub.add_parser(
        "export", parents=[common], help="write the members of LIST as CSV to stdout"
    )
    cmd.add_argument("list_id", metavar="LIST")
    cmd.set_defaults(handler=members_export)
    register_export(sub, common)


def _normalised(addresses: list[str]) -> list[str]:
    """Every address normalised, or a CliError naming each bad one (nothing is changed)."""
    good: list[str] = []
    problems: list[str] = []
    for address in addresses:
        try:
            good.append(normalise_address(address))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise CliError("\n".join([*problems, "nothing was changed"]))
    return good


def _by_key(members: list[Member]) -> dict[str, Member]:
    return {address_key(m.email) or m.email: m for m in members}


async def _add_new(services: Services, list_id: str, people: list[tuple[str, str]]) -> int:
    """Add the people whose address is not on the list yet (in any letter case)."""
    existing = _by_key(await services.store.members(list_id))
    new: dict[str, tuple[str, str]] = {}
    for email, name in people:
        new.setdefault(address_key(email) or email, (email, name))
    fresh = [person for key, person in new.items() if key not in existing]
    return await services.store.add_members(list_id, fresh) if fresh else 0


def members_add(args: argparse.Namespace) -> int:
    config = load(args)
    lst = known_list(config, args.list_id)
    addresses = _normalised(args.addresses)
    setup_command_logging(args)

    async def work(services: Services) -> int:
        return await _add_new(services, lst.id, [(email, "") for email in addresses])

    added = run_with_services(config, work)
    already = len({address_key(a) for a in addresses}) - added
    note = f" ({already} already a member)" if already else ""
    print(f"added {added} to {lst.id}{note}")
    return EXIT_OK


def members_remove(args: argparse.Namespace) -> int:
    async def remove(services: Services, list_id: str, found: list[Member]) -> int:
        return await services.store.remove_members(list_id, sorted({m.email for m in found}))

    return _change_members(args, remove, "removed {n} from {list}")


def members_enable(args: argparse.Namespace) -> int:
    async def enable(services: Services, list_id: str, found: list[Member]) -> int:
        return await services.store.enable_members([m.id for m in found])

    return _change_members(args, enable, "enabled {n} on {list}")


def _change_members(
    args: argparse.Namespace,
    change: Callable[[Services, str, list[Member]], Awaitable[int]],
    done: str,
) -> int:
    """Apply ``change`` to the named members of LIST; warn about each non-member (exit 1)."""
    config = load(args)
    lst = known_list(config, args.list_id)
    addresses = _normalised(args.addresses)
    setup_command_logging(args)

    async def work(services: Services) -> tuple[int, list[str]]:
        existing = _by_key(await services.store.members(lst.id))
        keys = {address: address_key(address) or address for address in addresses}
        found = [existing[key] for key in dict.fromkeys(keys.values()) if key in existing]
        missing = [address for address, key in keys.items() if key not in existing]
        changed = await change(services, lst.id, found) if found else 0
        return changed, missing

    changed, missing = run_with_services(config, work)
    for address in missing:
        warn(f"{address} is not a member of {lst.id}")
    print(done.format(n=changed, list=lst.id))
    return EXIT_FAILURE if missing else EXIT_OK


def members_list(args: argparse.Namespace) -> int:
    config = load(args)
    lst = known_list(config, args.list_id)
    setup_command_logging(args)

    async def work(services: Services) -> list[Member]:
        return await services.store.members(lst.id)

    members = run_with_services(config, work)
    if not members:
        print(f"{lst.id} has no members")
        return EXIT_OK
    width = max(len(m.email) for m in members)
    for member in members:
        flag = "  (disabled)" if member.state is MemberState.DISABLED else ""
        print(f"{member.email:<{width}}  {member.name}{flag}".rstrip())
    active = sum(m.state is MemberState.ACTIVE for m in members)
    print(f"{len(members)} members of {lst.id}, {active} active")
    return EXIT_OK


def members_export(args: argparse.Namespace) -> int:
    config = load(args)
    lst = known_list(config, args.list_id)
    setup_command_logging(args)

    async def work(services: Services) -> list[Member]:
        return await services.store.members(lst.id)

    members = run_with_services(config, work)
    sys.stdout.write(write_members_csv((m.email, m.name) for m in members))
    return EXIT_OK


def _read_text(file: str) -> str:
    """The file's text: UTF-8, else Windows-1252 (what Dutch Excel saves as "CSV")."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        warn(f"{file} is not UTF-8; reading it as Windows-1252")
        return data.decode("cp1252", errors="replace")


def members_import(args: argparse.Namespace) -> int:
    config = load(args)
    lst = known_list(config, args.list_id)
    result = read_members_csv(_read_text(args.file))
    for problem in result.problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if not result.rows and any(p.startswith(("line 1:", "the file is")) for p in result.problems):
        return EXIT_USAGE  # no usable header: the wrong file, nothing to add
    setup_command_logging(args)
    added = run_with_services(config, lambda services: _import_rows(services, lst.id, result.rows))
    skipped = len(result.rows) - added
    print(
        f"imported {args.file} into {lst.id}: {added} added, {skipped} already members, "
        f"{len(result.problems)} bad rows"
    )
    if result.problems:
        warn(f"{len(result.problems)} rows were not imported (see above); fix and import again")
        return EXIT_FAILURE
    return EXIT_OK


async def _import_rows(services: Services, list_id: str, rows: list[MemberRow]) -> int:
    added = 0
    with progress(f"importing into {list_id}", len(rows)) as report:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            added += await _add_new(services, list_id, [(row.email, row.name) for row in batch])
            report(start + len(batch))
    return added
