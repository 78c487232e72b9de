"""``bin-gateway forget ADDRESS`` and ``members export-person ADDRESS``: the AVG/GDPR
rights to erasure (article 17) and of access (article 15), for the admin to carry out."""

from __future__ import annotations

import argparse

from .cli_common import (
    EXIT_OK,
    Subparsers,
    load,
    run_with_services,
    setup_command_logging,
)
from .config import normalise_address
from .services import Services
from .store.privacy import Erased, as_json

__all__ = ["register", "register_export"]


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "forget", parents=[common], help="erase a person everywhere (AVG/GDPR)",
        description="Remove ADDRESS from every list, every pending delivery and every reply "
        "thread, and replace every stored message that carries it by a tombstone; only "
        "anonymous counts stay. Prints what was removed. Cannot be undone.",
    )  # fmt: skip
    cmd.add_argument("address", metavar="ADDRESS")
    cmd.set_defaults(handler=forget)


def register_export(members: Subparsers, common: argparse.ArgumentParser) -> None:
    cmd = members.add_parser(
        "export-person", parents=[common], help="print everything stored about ADDRESS (JSON)",
        description="The right of access: every membership, join request, delivery count, "
        "reply thread and received message of one person, as JSON on stdout.",
    )  # fmt: skip
    cmd.add_argument("address", metavar="ADDRESS")
    cmd.set_defaults(handler=export_person)


def _address(text: str) -> str:
    try:
        return normalise_address(text)
    except ValueError:
        return text.strip()  # an address we would refuse today may still be stored


def forget(args: argparse.Namespace) -> int:
    config = load(args)
    address = _address(args.address)
    setup_command_logging(args)

    async def work(services: Services) -> Erased:
        return await services.store.forget(address)

    erased = run_with_services(config, work)
    lists = ", ".join(erased.lists) or "none"
    print(f"forgot {address}:")
    print(f"  memberships removed:      {erased.memberships} (lists: {lists})")
    print(f"  join requests removed:    {erased.join_requests}")
    print(f"  pending copies dropped:   {erased.pending_deliveries}")
    print(f"  delivery records emptied: {erased.deliveries}")
    print(f"  reply threads unlinked:   {erased.reply_threads}")
    print(f"  received mail erased:     {erased.stored_messages}")
    print(f"  sent mail erased:         {erased.sent_messages}")
    print(f"  other mentions removed:   {erased.other_mentions}")
    return EXIT_OK


def export_person(args: argparse.Namespace) -> int:
    config = load(args)
    address = _address(args.address)
    setup_command_logging(args)

    async def work(services: Services) -> dict[str, object]:
        return await services.store.person(address)

    print(as_json(run_with_services(config, work)))
    return EXIT_OK
