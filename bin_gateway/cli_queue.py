"""``bin-gateway queue (list|retry)``: the outgoing deliveries, one row per recipient."""

from __future__ import annotations

import argparse

from .cli_common import (
    EXIT_OK,
    CliError,
    Subparsers,
    load,
    local_time,
    printable,
    run_with_services,
    setup_command_logging,
    warn,
)
from .models import Delivery, DeliveryState
from .progress import progress
from .services import Services

__all__ = ["register"]

DEFAULT_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.FAILED)
RETRY_BATCH = 500  # deliveries re-queued per transaction
_COLUMNS = ("ID", "RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST REPLY")


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    queue = commands.add_parser(
        "queue", parents=[common], help="show and retry outgoing deliveries",
        description="The delivery queue: one row per message and recipient.",
    )  # fmt: skip
    sub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd = sub.add_parser("list", parents=[common], help="show deliveries")
    cmd.add_argument(
        "--state", action="append", choices=[s.value for s in DeliveryState],
        help="show deliveries in this state (repeatable; default: queued, sending, failed)",
    )  # fmt: skip
    cmd.add_argument("--limit", type=_positive, default=100, help="at most N rows (default 100)")
    cmd.set_defaults(handler=queue_list)
    cmd = sub.add_parser(
        "retry", parents=[common], help="make deferred or failed deliveries due now",
        description="Re-queue deliveries by id, or every queued and failed one with --all.",
    )  # fmt: skip
    cmd.add_argument("ids", metavar="ID", type=int, nargs="*")
    cmd.add_argument("--all", action="store_true", help="every queued and failed delivery")
    cmd.set_defaults(handler=queue_retry)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def queue_list(args: argparse.Namespace) -> int:
    config = load(args)
    setup_command_logging(args)
    states = tuple(DeliveryState(s) for s in dict.fromkeys(args.state or DEFAULT_STATES))

    async def work(services: Services) -> list[Delivery]:
        return await services.store.deliveries(states, args.limit)

    deliveries = run_with_services(config, work)
    if not deliveries:
        print(f"no deliveries {' or '.join(states)}")
        return EXIT_OK
    rows = [_COLUMNS, *(_row(d) for d in deliveries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    if len(deliveries) == args.limit:
        print(f"(the first {args.limit}; use --limit for more)")
    return EXIT_OK


def _row(delivery: Delivery) -> tuple[str, ...]:
    due = delivery.state is DeliveryState.QUEUED
    reply = f"{delivery.last_code} {delivery.last_reply}" if delivery.last_code else ""
    return (
        str(delivery.id), delivery.recipient, delivery.state.value, str(delivery.attempts),
        local_time(delivery.next_attempt_at) if due else "-",
        printable(reply).replace("\n", " ")[:80],
    )  # fmt: skip


def queue_retry(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise CliError("give delivery ids or --all (not both)" if args.all else
                       "which deliveries? give their ids, or --all")  # fmt: skip
    config = load(args)
    setup_command_logging(args)
    ids = None if args.all else list(dict.fromkeys(args.ids))

    async def work(services: Services) -> int:
        chosen = await services.store.retryable() if ids is None else ids
        count = 0
        with progress("re-queueing", len(chosen)) as report:
            # In batches: one long write transaction would keep the running gateway's
            # writes (mail being accepted) waiting.
            for start in range(0, len(chosen), RETRY_BATCH):
                count += await services.store.retry(chosen[start : start + RETRY_BATCH])
                report(min(len(chosen), start + RETRY_BATCH))
        return count

    count = run_with_services(config, work)
    print(f"re-queued {count} {'delivery' if count == 1 else 'deliveries'}")
    if ids is not None and count < len(ids):
        warn(f"{len(ids) - count} of the ids were not queued or failed (sent, sending or unknown)")
    return EXIT_OK
