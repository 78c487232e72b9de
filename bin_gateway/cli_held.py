"""``bin-gateway held (list|show|approve|reject)``: agency mail waiting for a coordinator.

An admin's decision goes through the same code as a coordinator's reply
(``approval.decide_by_admin``): the first decision wins, the agency is told, and the
audit log names the admin as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import getpass
import os
from email.message import Message

from .cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    Subparsers,
    load,
    local_time,
    printable,
    run_with_services,
    setup_command_logging,
)
from .errors import GatewayError
from .mailtext import best_text
from .models import Submission, SubmissionState
from .services import Services

__all__ = ["register"]

_COLUMNS = ("ID", "LIST", "AGENCY", "SENDER", "SUBJECT", "CREATED", "EXPIRES", "STATE")


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    held = commands.add_parser(
        "held", parents=[common], help="list, show, approve or reject held agency mail",
        description="Agency mail held for a coordinator's decision, one item per list.",
    )  # fmt: skip
    sub = held.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd = sub.add_parser("list", parents=[common], help="show the items waiting for a decision")
    cmd.add_argument("--all", action="store_true", help="also show decided and expired items")
    cmd.set_defaults(handler=held_list)
    cmd = sub.add_parser("show", parents=[common], help="show one item with its message text")
    cmd.add_argument("item_id", metavar="ID", type=int)
    cmd.set_defaults(handler=held_show)
    cmd = sub.add_parser("approve", parents=[common], help="approve an item: send it to the list")
    cmd.add_argument("item_id", metavar="ID", type=int)
    cmd.add_argument("--note", default="", help="a coordinator's note printed above the bulletin")
    cmd.set_defaults(handler=held_decide, approve=True)
    cmd = sub.add_parser("reject", parents=[common], help="reject an item; the agency is told")
    cmd.add_argument("item_id", metavar="ID", type=int)
    cmd.add_argument("--reason", default="", help="the reason sent to the agency")
    cmd.set_defaults(handler=held_decide, approve=False)


def held_list(args: argparse.Namespace) -> int:
    config = load(args)
    setup_command_logging(args)
    state = None if args.all else SubmissionState.HELD

    async def work(services: Services) -> list[Submission]:
        return await services.store.submissions(state)

    items = run_with_services(config, work)
    if not items:
        print("no items" if args.all else "nothing is held")
        return EXIT_OK
    rows = [_COLUMNS, *(_row(item) for item in items)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    return EXIT_OK


def _row(item: Submission) -> tuple[str, ...]:
    subject = printable(item.subject).replace("\n", " ")
    subject = subject if len(subject) <= 40 else subject[:39] + "…"
    return (
        str(item.id), item.list_id, item.agency_id or "(reply)", printable(item.sender), subject,
        local_time(item.created_at), local_time(item.expires_at), item.state.value,
    )  # fmt: skip


def held_show(args: argparse.Namespace) -> int:
    config = load(args)
    setup_command_logging(args)

    async def work(services: Services) -> tuple[Submission, bytes]:
        item = await services.store.submission(args.item_id)
        if item is None:
            raise CliError(f"no held item {args.item_id}", EXIT_FAILURE)
        if item.reply_id is not None:
            # A member reply is shown as it would be relayed: the admin's terminal is no
            # place for the member's identity either.
            record = await services.store.reply_record(item.reply_id)
            return item, (record[3] or b"") if record is not None else b""
        inbound = await services.store.inbound(item.inbound_id)
        return item, inbound.raw if inbound is not None else b""

    item, raw = run_with_services(config, work)
    _print_item(item)
    print()
    _print_message(email.message_from_bytes(raw, policy=email.policy.default))
    return EXIT_OK


def _print_item(item: Submission) -> None:
    print(f"held item {item.id}: {item.state.value}")
    print(f"  list:     {item.list_id}")
    if item.reply_id is not None:
        print("  kind:     a member's reply, anonymised (as it would be passed on)")
    else:
        print(f"  agency:   {item.agency_id} ({printable(item.sender)})")
    print(f"  created:  {local_time(item.created_at)}")
    print(f"  expires:  {local_time(item.expires_at)}")
    if item.decided_at:
        print(f"  decided:  {local_time(item.decided_at)} by {printable(item.decided_by)}")
    for label, text in (("reason", item.reason), ("note", item.note)):
        if text:
            print(f"  {label + ':':<9} {printable(text)}")


def _header(message: Message, name: str) -> str:
    try:
        return printable(str(message.get(name, ""))).replace("\n", " ")
    except Exception:  # a malformed header must not hide the rest of the item
        return "(unreadable)"


def _print_message(message: Message) -> None:
    for name in ("From", "To", "Date", "Subject"):
        print(f"{name}: {_header(message, name)}")
    names = _attachment_names(message)
    if names:
        print("Attachments: " + ", ".join(names))
    print()
    print(printable(best_text(message)).rstrip() or "(no text)")


def _attachment_names(message: Message) -> list[str]:
    try:
        names = [part.get_filename() for part in message.walk()]
    except Exception:  # broken MIME parameters: the text is what matters
        return ["(unreadable)"]
    return [printable(name) for name in names if name]


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a container)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def held_decide(args: argparse.Namespace) -> int:
    config = load(args)
    setup_command_logging(args)
    text = args.note if args.approve else args.reason

    async def work(services: Services) -> str:
        from .approval import decide_by_admin  # the approval flow is only needed here

        try:
            return await decide_by_admin(
                services, args.item_id, approve=args.approve, text=text, actor=_actor()
            )
        except GatewayError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None

    print(run_with_services(config, work))
    return EXIT_OK
