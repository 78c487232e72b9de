"""What every ``bin-gateway`` subcommand shares: the config option, errors, the store.

A command reports an expected failure by raising :class:`CliError` with the exit code;
``cli.main`` prints it to stderr without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeAlias, TypeVar

from .config import Config, MailingList, load_config
from .errors import ConfigError
from .log import configure_logging
from .services import Services, open_services

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "Subparsers",
    "common_options",
    "config_path",
    "format_config_error",
    "known_list",
    "load",
    "local_time",
    "printable",
    "run_with_services",
    "setup_command_logging",
    "warn",
]

CONFIG_ENV = "BIN_GATEWAY_CONFIG"
DEFAULT_CONFIG = Path("/etc/bin-gateway/config.toml")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error")

# what add_subparsers() returns (a string: the class is not subscriptable at run time)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
T = TypeVar("T")


class CliError(Exception):
    """An expected failure: ``message`` goes to stderr, ``code`` becomes the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def common_options(*, suppress: bool) -> argparse.ArgumentParser:
    """``--config`` and ``--log-level``, for the top parser and again for every subcommand.

    Subcommands use ``suppress`` (no default), so an option given *before* the
    subcommand is not overwritten by the subcommand's default.
    """
    parent = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    parent.add_argument(
        "--config", metavar="PATH", default=default,
        help=f"configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})",
    )  # fmt: skip
    parent.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default,
        help="log level (default: info for serve, warning for the other commands)",
    )  # fmt: skip
    return parent


def config_path(args: argparse.Namespace) -> Path:
    given = getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(given)


def format_config_error(exc: ConfigError) -> str:
    lines = [f"configuration error in {exc.source}:"]
    lines += [f"  {problem}" for problem in exc.problems]
    return "\n".join(lines)


def load(args: argparse.Namespace) -> Config:
    """The validated config, or a CliError (exit 2) listing every problem."""
    try:
        return load_config(config_path(args))
    except ConfigError as exc:
        raise CliError(format_config_error(exc)) from None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def setup_command_logging(args: argparse.Namespace) -> None:
    """Admin commands log to stderr (stdout may be a CSV going into a pipe)."""
    configure_logging(level=getattr(args, "log_level", None) or "warning", stream=sys.stderr)


def known_list(config: Config, list_id: str) -> MailingList:
    found = config.list_by_id(list_id)
    if found is None:
        names = ", ".join(lst.id for lst in config.lists)
        raise CliError(f'unknown list "{list_id}" (lists in {config.source}: {names})')
    return found


def run_with_services(config: Config, work: Callable[[Services], Awaitable[T]]) -> T:
    """Open the store (and key), run ``work``, close again; one event loop per command."""

    async def run() -> T:
        try:
            services = await open_services(config)
        except ValueError as exc:  # the DKIM key went missing since the config was read
            raise CliError(str(exc), EXIT_FAILURE) from None
        try:
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(run())


def local_time(timestamp: float | None) -> str:
    """A stored UNIX time as the admin's local time, to the minute; "-" for none."""
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")


_CONTROL = {code: "\ufffd" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
del _CONTROL[ord("\t")], _CONTROL[ord("\n")]


def printable(text: str) -> str:
    """Text from a stranger's mail made safe for a terminal: no escape sequences."""
    return text.translate(_CONTROL)
