"""``bin-gateway stats [--list L] [--since DATE] [--json]``: what each list is doing."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from .cli_common import (
    EXIT_OK,
    CliError,
    Subparsers,
    load,
    run_with_services,
    setup_command_logging,
)
from .services import Services

__all__ = ["register"]

_ROWS = (
    ("members", "members (active)"), ("disabled", "members disabled (bounces)"),
    ("joined", "members added"), ("bulletins", "bulletins"), ("copies_sent", "copies sent"),
    ("copies_failed", "copies failed"), ("copies_pending", "copies waiting"),
    ("bounces_permanent", "bounces, permanent"), ("bounces_temporary", "bounces, temporary"),
    ("replies", "member replies"), ("replies_relayed", "replies passed on"),
    ("answers", "answers to members"),
)  # fmt: skip


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "stats", parents=[common], help="per list: members, bulletins, deliveries, replies",
        description="Counts per list since DATE (default: ever). Reply rate = member replies "
        "per 100 copies sent. Anonymous: no address appears.",
    )  # fmt: skip
    cmd.add_argument("--list", dest="list_id", metavar="LIST", help="only this list")
    cmd.add_argument("--since", type=_date, default=None, metavar="DATE",
                     help="count from this day on (YYYY-MM-DD, local time)")
    cmd.add_argument("--json", action="store_true", help="JSON for machines")
    cmd.set_defaults(handler=stats)


def _date(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%d").astimezone().timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None


def stats(args: argparse.Namespace) -> int:
    config = load(args)
    lists = [lst.id for lst in config.lists]
    if args.list_id is not None:
        if args.list_id not in lists:
            raise CliError(f"no list {args.list_id!r} in the configuration")
        lists = [args.list_id]
    setup_command_logging(args)
    since = args.since or 0.0

    async def work(services: Services) -> dict[str, dict[str, int]]:
        return {list_id: await services.store.list_stats(list_id, since) for list_id in lists}

    found: dict[str, dict[str, float]] = {
        list_id: dict(counts) for list_id, counts in run_with_services(config, work).items()
    }
    for counts in found.values():
        sent = counts["copies_sent"]
        counts["reply_rate_per_100"] = round(100 * counts["replies"] / sent, 1) if sent else 0.0
    if args.json:
        print(json.dumps({"since": since or None, "lists": found}, indent=2))
        return EXIT_OK
    width = max(len(label) for _, label in _ROWS)
    for list_id, counts in found.items():
        period = datetime.fromtimestamp(since).strftime("%Y-%m-%d") if since else "the start"
        print(f"{list_id} (since {period})")
        for key, label in _ROWS:
            print(f"  {label:<{width}}  {counts[key]}")
        print(f"  {'reply rate per 100 copies':<{width}}  {counts['reply_rate_per_100']}")
    return EXIT_OK
