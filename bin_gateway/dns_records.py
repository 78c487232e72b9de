"""The DNS records a gateway domain must publish, ready to paste into a zone file.

Receivers decide on these records whether a bulletin is genuine: the DKIM key proves the
gateway signed it, SPF names the hosts that may send for the domain, and DMARC tells
receivers to reject mail claiming the domain that is neither. Printed by
``bin-gateway dns-records``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DnsRecord", "dns_records", "format_zone"]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A TXT record is a sequence of character-strings of at most 255 bytes each (RFC 1035).
_TXT_CHUNK = 255


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One record: ``name`` is fully qualified without the final dot; ``value`` is the
    record data as a DNS admin panel takes it (TXT unquoted, MX ``<pref> <host>``)."""

    name: str
    type: str
    value: str
    comment: str


def dns_records(
    *,
    domain: str,
    hostname: str,
    selector: str,
    dkim_txt: str,
    admin: str,
    server_ip: str | None = None,
) -> list[DnsRecord]:
    """MX, (A/AAAA), SPF, DKIM and DMARC records for the gateway ``domain``.

    ``hostname`` is the gateway's host (the MX target), ``dkim_txt`` the value from
    ``keys.dkim_txt_record``, ``admin`` the address that receives DMARC reports.
    """
    domain = _name(domain, "domain")
    hostname = _name(hostname, "hostname")
    selector = _name(selector, "DKIM selector")
    _check_admin(admin)
    if not dkim_txt.startswith("v=DKIM1;") or not dkim_txt.isascii():
        raise ValueError("dkim_txt must be a DKIM key record starting with 'v=DKIM1;'")
    records = [
        DnsRecord(domain, "MX", f"10 {hostname}", f"Mail for {domain} is delivered to the gateway.")
    ]
    if server_ip is not None:
        records.append(_address_record(hostname, server_ip))
    records += [
        DnsRecord(
            domain,
            "TXT",
            "v=spf1 mx -all",
            f"SPF: only the MX host may send mail for {domain}. If mail leaves through a "
            "smarthost (your Postfix elsewhere, or a provider), add its addresses before "
            "-all, e.g. 'v=spf1 mx ip4:192.0.2.25 -all' or 'v=spf1 mx "
            "include:<provider's SPF domain> -all'.",
        ),
        DnsRecord(
            f"{selector}._domainkey.{domain}",
            "TXT",
            dkim_txt,
            f"DKIM public key for selector {selector}; the private key stays on the gateway.",
        ),
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=reject; adkim=s; aspf=r; rua=mailto:{admin}",
            _dmarc_comment(domain, admin),
        ),
    ]
    return records


def format_zone(records: Iterable[DnsRecord]) -> str:
    """Zone-file text: each record preceded by its comment as ``;`` lines."""
    blocks = []
    for record in records:
        comment = "\n".join(f"; {line}" for line in _wrap(record.comment))
        data = record.value
        if record.type == "TXT":
            data = _txt_data(record.value)
        elif record.type == "MX":
            data = f"{record.value}."
        blocks.append(f"{comment}\n{record.name}.\tIN\t{record.type}\t{data}")
    return "\n\n".join(blocks) + "\n"


def _txt_data(value: str) -> str:
    """Quoted 255-byte strings; several go in parentheses, one per line."""
    raw = value.encode("ascii")
    chunks = [raw[i : i + _TXT_CHUNK].decode("ascii") for i in range(0, len(raw), _TXT_CHUNK)]
    quoted = ['"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks]
    if len(quoted) == 1:
        return quoted[0]
    return "( " + "\n\t\t\t".join(quoted) + " )"


def _wrap(text: str, width: int = 86) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def _address_record(hostname: str, server_ip: str) -> DnsRecord:
    try:
        address = ipaddress.ip_address(server_ip)
    except ValueError:
        raise ValueError(f"server_ip {server_ip!r} is not an IPv4 or IPv6 address") from None
    kind = "A" if address.version == 4 else "AAAA"
    return DnsRecord(
        hostname,
        kind,
        address.compressed,
        f"The gateway host's address (an MX must name a host with an A/AAAA record, not a "
        f"CNAME). Also ask your provider to set the reverse DNS (PTR) of {address} to "
        f"{hostname}.",
    )


def _dmarc_comment(domain: str, admin: str) -> str:
    text = (
        f"DMARC: receivers reject mail claiming to be from {domain} unless it carries the "
        f"gateway's DKIM signature for exactly {domain} (adkim=s) or passes SPF; daily "
        f"reports go to {admin}."
    )
    report_domain = admin.rpartition("@")[2].lower().rstrip(".")
    if report_domain != domain and not report_domain.endswith("." + domain):
        text += (
            f" Because {report_domain} is another domain, it must allow the reports by "
            f'publishing {domain}._report._dmarc.{report_domain} TXT "v=DMARC1" (RFC 7489 §7.1).'
        )
    return text


def _name(name: str, what: str) -> str:
    if not name.isascii():
        raise ValueError(f"{what} {name!r} must be ASCII; write an IDN as its xn-- form")
    cleaned = name.lower().rstrip(".")
    if not cleaned or not all(_LABEL.fullmatch(label) for label in cleaned.split(".")):
        raise ValueError(f"{what} {name!r} is not a valid DNS name")
    return cleaned


def _check_admin(admin: str) -> None:
    local, at, domain = admin.rpartition("@")
    # rua= is a comma-separated list of URIs ending at ';' (RFC 7489 §6.4): these would
    # split or end it, and '!' introduces a size limit.
    if not at or not local or any(char in admin for char in ',;! \t"<>') or not admin.isascii():
        raise ValueError(f"admin {admin!r} must be a plain ASCII e-mail address for DMARC rua=")
    _name(domain, "admin address domain")
