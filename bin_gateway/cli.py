"""The ``bin-gateway`` command: parse, call, print.

Every subcommand has ``--help`` and takes ``--config PATH`` (before or after the
subcommand; default ``$BIN_GATEWAY_CONFIG``, else ``/etc/bin-gateway/config.toml``).
Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error. Human output goes
to stdout, errors and warnings to stderr; an expected error never shows a traceback.

The subcommands live beside this module: ``cli_members``, ``cli_held``, ``cli_queue``,
``cli_keys``, ``cli_privacy``, ``cli_backup``; what they share is in ``cli_common``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable

from . import (
    __version__,
    cli_backup,
    cli_held,
    cli_keys,
    cli_members,
    cli_privacy,
    cli_queue,
    cli_stats,
    demo,
)
from .cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subparsers,
    common_options,
    config_path,
    format_config_error,
    load,
)
from .config import Config, DeliveryMode
from .errors import ConfigError, GatewayError, TlsFilesError
from .log import configure_logging
from .server_tls import load_tls

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bin-gateway", parents=[common_options(suppress=False)],
        description="Mail gateway for a Buurt Informatie Netwerk: moderated bulletins, "
        "anonymised replies.",
        epilog="Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options(suppress=True)
    _register(commands, common)
    for module in (cli_members, cli_held, cli_queue, cli_keys, cli_privacy, cli_stats,
                   cli_backup, demo):
        module.register(commands, common)
    return parser


def _register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "serve", parents=[common], help="run the gateway (SMTP server and workers)",
        description="Run until SIGTERM or SIGINT; SIGHUP reloads the configuration file (a "
        "bad file is refused and logged, the old one stays). Logs go to stdout: JSON lines, "
        "or readable lines on a terminal.",
    )  # fmt: skip
    cmd.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal")
    cmd.set_defaults(handler=serve)
    cmd = commands.add_parser(
        "check-config", parents=[common], help="validate the configuration file",
        description="Read the configuration like serve does; list every problem (exit 2) or "
        "print a summary (exit 0).",
    )  # fmt: skip
    cmd.set_defaults(handler=check_config)


def serve(args: argparse.Namespace) -> int:
    config = load(args)
    configure_logging(json=True if args.log_json else None, level=args.log_level or "info")
    from .app import serve as run_gateway  # the daemon's imports are only needed here

    # app.serve logs config.warnings() itself (also after a reload), so not again here.
    try:
        asyncio.run(run_gateway(config))
    except SystemExit as exc:  # app.serve exits 1 when a worker died
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    return EXIT_OK


def check_config(args: argparse.Namespace) -> int:
    config = load(args)
    if config.tls is not None:
        # The reader checks the files can be read; whether they make a pair is known only
        # once OpenSSL loads them, which the gateway does at start: so here too.
        try:
            load_tls(config.tls)
        except TlsFilesError as exc:
            problems = ConfigError(str(config.source), [f"tls: {exc}"])
            raise CliError(format_config_error(problems)) from None
    for warning in config.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    print(f"config OK: {config_path(args)}")
    print(_summary(config))
    return EXIT_OK


def _summary(config: Config) -> str:
    gateway, delivery = config.gateway, config.delivery
    where = delivery.maildir if delivery.mode is DeliveryMode.MAILDIR else delivery.smarthost
    lines = [
        f"  domain:    {gateway.domain} (host {gateway.hostname}, intake "
        f"{gateway.intake}@{gateway.domain}, admin {gateway.admin})",
        f"  listen:    {', '.join(str(hp) for hp in gateway.listen)}"
        f"{' with STARTTLS' if config.tls else ''}",
        f"  dkim:      selector {config.dkim.selector}, key {config.dkim.private_key}",
        f"  delivery:  {delivery.mode.value} to {where}",
        f"  data:      {gateway.data_dir}",
        f"  lists:     {len(config.lists)}",
    ]
    for lst in config.lists:
        lines.append(
            f'    {lst.id}@{gateway.domain} "{lst.name}": {len(lst.coordinators)} '
            f"coordinator(s), subscription {lst.subscription.value}, replies to "
            f"{' and '.join(lst.replies_to)}"
        )
    lines.append(f"  agencies:  {len(config.agencies)}")
    for agency in config.agencies:
        targets = ", ".join(agency.lists) or "no intake lists"
        lines.append(
            f'    {agency.id} "{agency.name}": {len(agency.senders)} sender entr'
            f"{'y' if len(agency.senders) == 1 else 'ies'}, intake mail to {targets}"
        )
    return "\n".join(lines)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    parsed = _parse(build_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    handler: Handler = parsed.handler
    try:
        return handler(parsed)
    except CliError as exc:
        print(f"bin-gateway: {exc.message}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `members export | head`: the reader left early
        _silence_stdout()
        return EXIT_FAILURE
    except (GatewayError, OSError, sqlite3.Error) as exc:
        print(f"bin-gateway: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("bin-gateway: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """After a broken pipe, stop the interpreter's final flush from failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # stdout is not a real file (tests)
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
