"""``bin-gateway dkim keygen`` and ``bin-gateway dns-records``: what to put in DNS.

``dkim keygen`` runs before the gateway has a key, when loading the config fails
exactly because ``[dkim] private_key`` does not exist yet. It therefore takes
``--out``, ``--selector`` and ``--domain`` from the command line, and whatever is
missing from the config file's raw TOML, without validating the rest of it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    Subparsers,
    config_path,
    load,
    warn,
)
from .dns_records import DnsRecord, dns_records, format_zone
from .keys import dkim_txt_record, generate_key, write_private_key

__all__ = ["register"]


@dataclass(frozen=True, slots=True)
class _Target:
    out: Path
    selector: str
    domain: str


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    dkim = commands.add_parser(
        "dkim", parents=[common], help="DKIM signing key tools",
        description="The gateway signs every copy it sends with this key (DKIM).",
    )  # fmt: skip
    sub = dkim.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd = sub.add_parser(
        "keygen", parents=[common], help="make a new DKIM private key and show its DNS record",
        description="Write a new private key (mode 0600) and print the TXT record to publish. "
        "Without --out, --selector and --domain the values come from the config file, which "
        "may still be incomplete (the key it names need not exist yet).",
    )  # fmt: skip
    cmd.add_argument("--type", choices=("rsa", "ed25519"), default="rsa",
                     help="key type (default rsa: every receiver verifies it)")  # fmt: skip
    cmd.add_argument("--bits", type=int, default=None, help="RSA key size (default 2048)")
    cmd.add_argument("--out", type=Path, help="key file (default: [dkim] private_key)")
    cmd.add_argument("--selector", help="DKIM selector (default: [dkim] selector)")
    cmd.add_argument("--domain", help="signing domain (default: [gateway] domain)")
    cmd.add_argument(
        "--force", action="store_true",
        help="replace an existing key file (its DNS record then stops working)",
    )  # fmt: skip
    cmd.set_defaults(handler=dkim_keygen)
    cmd = commands.add_parser(
        "dns-records", parents=[common], help="print the MX, SPF, DKIM and DMARC records",
        description="Print the DNS records the gateway's domain needs, as zone-file lines.",
    )  # fmt: skip
    cmd.add_argument("--server-ip", metavar="IP", help="also print the A/AAAA record of the host")
    cmd.set_defaults(handler=print_dns_records)


def _raw_settings(path: Path) -> dict[str, object]:
    """``dkim.private_key``, ``dkim.selector`` and ``gateway.domain`` as written, if readable."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    dkim, gateway = raw.get("dkim"), raw.get("gateway")
    found: dict[str, object] = {}
    if isinstance(dkim, dict):
        found["out"] = dkim.get("private_key")
        found["selector"] = dkim.get("selector")
    if isinstance(gateway, dict):
        found["domain"] = gateway.get("domain")
    return found


def _target(args: argparse.Namespace) -> _Target:
    path = config_path(args)
    given: dict[str, object] = {"out": args.out, "selector": args.selector, "domain": args.domain}
    raw = {} if all(given.values()) else _raw_settings(path)
    for key, value in raw.items():
        if not given[key] and isinstance(value, str) and value:
            # as the config reads it: relative to the config file's directory
            given[key] = path.parent / Path(value).expanduser() if key == "out" else value
    missing = [f"--{key}" for key, value in given.items() if not value]
    if missing:
        raise CliError(f"give {', '.join(missing)}: {path} does not say (or cannot be read)")
    return _Target(Path(str(given["out"])), str(given["selector"]), str(given["domain"]))


def _write(out: Path, pem: bytes, *, force: bool) -> None:
    """Write a new key file; with ``force`` replace an existing one atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not force:
        write_private_key(out, pem)
        return
    temporary = out.with_name(f".{out.name}.new-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    write_private_key(temporary, pem)
    os.replace(temporary, out)


def dkim_keygen(args: argparse.Namespace) -> int:
    target = _target(args)
    if target.out.exists() and not args.force:
        raise CliError(
            f"{target.out} already exists; not replacing a key whose public half may be in "
            "DNS (use another --out/--selector, or --force)", EXIT_FAILURE,
        )  # fmt: skip
    if args.type == "ed25519" and args.bits is not None:
        warn("--bits is ignored for ed25519 keys")
    try:
        pem = generate_key(args.type, args.bits or 2048)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        _write(target.out, pem, force=args.force)
    except OSError as exc:
        raise CliError(f"cannot write {target.out}: {exc.strerror}", EXIT_FAILURE) from None
    record = DnsRecord(
        f"{target.selector}._domainkey.{target.domain.lower().rstrip('.')}", "TXT",
        dkim_txt_record(pem), f"DKIM public key for selector {target.selector}.",
    )  # fmt: skip
    print(f"wrote a new {args.type} DKIM key to {target.out} (mode 0600)")
    print("make sure the user the gateway runs as can read it, then publish:\n")
    print(format_zone([record]), end="")
    return EXIT_OK


def print_dns_records(args: argparse.Namespace) -> int:
    config = load(args)
    gateway = config.gateway
    try:
        dkim_txt = dkim_txt_record(config.dkim.private_key)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    try:
        records = dns_records(
            domain=gateway.domain, hostname=gateway.hostname, selector=config.dkim.selector,
            dkim_txt=dkim_txt, admin=gateway.admin, server_ip=args.server_ip,
        )  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"; DNS records for {gateway.domain}: publish these at the domain's DNS provider\n")
    print(format_zone(records), end="")
    return EXIT_OK
