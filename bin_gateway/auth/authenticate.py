"""Is the author domain authenticated? SPEC §5, whatever the domain's DMARC policy says.

Pass (ALIGNED): a valid DKIM signature whose d= aligns (relaxed) with the author domain,
or an SPF pass for a MAIL FROM (HELO for a null sender) domain aligned with it.
Pass (DKIM): the DKIM half only. NONE passes everything (tests; logged at start).
Behind a trusted MTA, its Authentication-Results header (the topmost one carrying a
listed authserv-id) may give the pass instead; other A-R headers are never read.

No pass, and some lookup failed temporarily: `DnsTemporaryError` (the SMTP side answers
451 and the sender retries) — a timeout must never turn genuine mail into a 550.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import StrEnum

from bin_gateway.auth.alignment import aligned, normalise_domain
from bin_gateway.auth.dkim_verify import DkimResult, DkimTemporaryError, verify_dkim
from bin_gateway.auth.dns import Resolver
from bin_gateway.auth.spf_check import SpfOutcome, check_spf
from bin_gateway.errors import DnsTemporaryError
from bin_gateway.header_block import header_block
from bin_gateway.offload import offload

__all__ = ["AuthResult", "Requirement", "authenticate", "read_authentication_results"]


class Requirement(StrEnum):
    ALIGNED = "aligned"
    DKIM = "dkim"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class AuthResult:
    passed: bool
    method: str  # "dkim", "spf", "authres", "none" (require=none), or "" when failed
    domain: str  # the author domain judged
    detail: str  # for the log, e.g. "dkim=pass d=politie.example s=s1; spf=fail"


async def authenticate(
    raw: bytes,
    *,
    author_domain: str,
    mail_from: str,
    client_ip: str,
    helo: str,
    requirement: Requirement,
    resolver: Resolver,
    trusted_authserv_ids: Sequence[str] = (),
    spf_timeout: float = 20.0,
) -> AuthResult:
    """Judge `author_domain` (the From domain from `parse_author`) for this message."""
    domain = normalise_domain(author_domain)
    if requirement is Requirement.NONE:
        return AuthResult(True, "none", domain, "require=none")
    if not domain:
        return AuthResult(False, "", author_domain, "author domain unusable")
    notes: list[str] = []
    if trusted_authserv_ids:
        verdict = await offload(len(raw), read_authentication_results, raw, domain,
                                trusted_authserv_ids)
        notes.append(verdict)
        if verdict.startswith("authres=pass"):
            return AuthResult(True, "authres", domain, verdict)

    temporary = False
    try:
        dkim_results = await verify_dkim(raw, resolver)
    except DkimTemporaryError as exc:
        dkim_results, temporary = exc.results, True
    notes += [_describe(r, domain) for r in dkim_results] or ["dkim=none"]
    passing = next((r for r in dkim_results if r.valid and aligned(r.domain, domain)), None)
    if passing is not None:
        return AuthResult(True, "dkim", domain, "; ".join(notes))

    if requirement is Requirement.ALIGNED:
        spf_note, spf_passed, spf_temporary = await _spf(
            raw_mail_from=mail_from,
            client_ip=client_ip,
            helo=helo,
            domain=domain,
            resolver=resolver,
            budget=spf_timeout,
        )
        notes.append(spf_note)
        if spf_passed:
            return AuthResult(True, "spf", domain, "; ".join(notes))
        temporary = temporary or spf_temporary

    detail = "; ".join(notes)
    if temporary:
        raise DnsTemporaryError(f"authentication of {domain} incomplete: {detail}")
    return AuthResult(False, "", domain, detail)


async def _spf(
    *,
    raw_mail_from: str,
    client_ip: str,
    helo: str,
    domain: str,
    resolver: Resolver,
    budget: float,
) -> tuple[str, bool, bool]:
    """(note, passed, temporary). Only an aligned identity can help, so only that is checked."""
    sender = raw_mail_from.strip().removeprefix("<").removesuffix(">")
    identity = sender.rpartition("@")[2] if sender else helo
    if not aligned(identity, domain):
        return f"spf=skipped (unaligned {_safe(identity) or 'empty'} identity)", False, False
    result = await check_spf(client_ip, sender, helo, resolver, budget)
    note = f"spf={result.result} smtp.mailfrom={_safe(result.domain)}"
    passed = result.result is SpfOutcome.PASS and aligned(result.domain, domain)
    return note, passed, result.result is SpfOutcome.TEMPERROR


def _describe(result: DkimResult, author_domain: str) -> str:
    if result.valid:
        verdict = "pass"
    elif result.temporary:
        verdict = "temperror"
    else:
        verdict = "fail"
    text = f"dkim={verdict} d={_safe(result.domain)} s={_safe(result.selector)}"
    if not result.valid:
        return f"{text} ({_safe(result.reason)})"
    return text if aligned(result.domain, author_domain) else f"{text} (unaligned)"


def _safe(text: str, limit: int = 100) -> str:
    cleaned = "".join(c if c.isprintable() and c.isascii() and c != ";" else "?" for c in text)
    return cleaned[:limit]


# --- Authentication-Results (RFC 8601) -------------------------------------------------

_TOKEN = re.compile(r'(?:[^\s";]+|"(?:[^"\\]|\\.)*")+|;')
_PROPERTY = re.compile(r"([A-Za-z0-9_.-]+)=(.*)")


def read_authentication_results(raw: bytes, domain: str, trusted_ids: Sequence[str]) -> str:
    """A log note, "authres=pass ..." when a trusted MTA's header vouches for `domain`.

    Only the topmost Authentication-Results whose authserv-id is trusted is read.
    Accepted: `dmarc=pass` with `header.from=<domain>`, or `dkim=pass` whose `header.d=`
    aligns with `domain`. Anything else gives a note starting "authres=" but not "=pass".
    """
    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    for value in headers.get_all("Authentication-Results") or []:
        statements = _statements(str(value))
        if not statements or not statements[0] or statements[0][0].lower() not in trusted:
            continue
        serv_id = _safe(statements[0][0])
        for statement in statements[1:]:
            if _vouches(statement, domain):
                return f"authres=pass ({serv_id}: {_safe(' '.join(statement))})"
        return f"authres=fail ({serv_id}: no aligned pass)"
    return "authres=none"


def _statements(value: str) -> list[list[str]]:
    """The header split into ;-separated statements of tokens, comments removed."""
    statements: list[list[str]] = [[]]
    for piece in _TOKEN.findall(_strip_comments(value.replace("\r", " ").replace("\n", " "))):
        if piece == ";":
            statements.append([])
        else:
            statements[-1].append(piece)
    return statements


def _strip_comments(value: str) -> str:
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if char == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            continue
        elif not quoted and char == ")" and depth > 0:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


def _vouches(statement: list[str], domain: str) -> bool:
    if not statement:
        return False
    method, _, result = statement[0].partition("=")
    method = method.split("/")[0].lower()
    if result.lower() != "pass":
        return False
    props: dict[str, str] = {}
    for token in statement[1:]:
        match = _PROPERTY.fullmatch(token)
        if match:
            props.setdefault(match.group(1).lower(), match.group(2).strip('"'))
    if method == "dmarc":
        return normalise_domain(props.get("header.from", "")) == domain
    if method == "dkim":
        signer = normalise_domain(props.get("header.d", ""))
        return bool(signer) and aligned(signer, domain)
    return False
