"""Verify every DKIM signature of a message, stricter than dkimpy alone.

dkimpy 1.1.8 checks one signature (`idx`), accepts `l=`, accepts an `h=` without From,
accepts `a=rsa-sha1`, allows `x=` ten hours in the past, and raises odd exceptions on odd
input (security.md §3). Here every signature is judged, those policy points are checked
before any lookup, keys are fetched through the async `Resolver` (so DNS goes where the
configuration says, with its timeouts), and dkimpy then runs in a worker thread with a
`dnsfunc` that only serves the records already fetched.

Alignment is not judged here: a valid `d=evil.example` signature is valid. The caller
compares `DkimResult.domain` with the author domain.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

import dkim
from dkim.util import parse_tag_value

from bin_gateway.auth.dns import Resolver, valid_lookup_name
from bin_gateway.errors import DnsTemporaryError
from bin_gateway.offload import offload

__all__ = ["MAX_SIGNATURES", "DkimResult", "DkimTemporaryError", "verify_dkim"]

# Each signature costs a DNS lookup and an RSA operation; past this many (topmost first)
# the rest are reported as not checked. Real mail carries one to three.
MAX_SIGNATURES = 8

_DOMAIN_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_SELECTOR_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_QUIET = logging.getLogger("bin_gateway.auth.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # dkimpy logs attacker-controlled text at ERROR level


@dataclass(frozen=True, slots=True)
class DkimResult:
    domain: str  # d=, lower-cased ("" if unreadable)
    selector: str  # s=
    valid: bool
    reason: str  # "pass" or why not, for the log
    temporary: bool = False  # the key lookup failed temporarily: the verdict may change


class DkimTemporaryError(DnsTemporaryError):
    """A key lookup failed temporarily; `results` holds the verdicts of every signature."""

    def __init__(self, message: str, results: list[DkimResult]) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True, slots=True)
class _Signature:
    index: int  # position among the DKIM-Signature fields, as dkimpy counts them
    domain: str
    selector: str
    refusal: str  # non-empty: fails without a lookup

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


async def verify_dkim(
    raw: bytes, resolver: Resolver, *, now: float | None = None
) -> list[DkimResult]:
    """One result per DKIM-Signature field (topmost first).

    Raises `DkimTemporaryError` (a `DnsTemporaryError`) when a key lookup timed out or
    SERVFAILed; the exception carries the full list of results.
    """
    try:
        # dkimpy splits the whole message into lines (a second for 15 MB): off the loop.
        headers, _body = await offload(len(raw), dkim.rfc822_parse, raw)
    except Exception as exc:
        # dkimpy's parser raises IndexError & co.
        return [DkimResult("", "", False, f"unparseable message ({type(exc).__name__})")]
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    moment = time.time() if now is None else now
    signatures = [_read(i, value, moment) for i, value in enumerate(values[:MAX_SIGNATURES])]
    keys, failures = await _fetch_keys(signatures, resolver)
    results = await asyncio.to_thread(_verify_all, raw, signatures, keys, failures)
    results += [
        DkimResult("", "", False, f"not checked: more than {MAX_SIGNATURES} signatures")
        for _ in values[MAX_SIGNATURES:]
    ]
    if failures:
        raise DkimTemporaryError("DKIM key lookup failed: " + "; ".join(failures.values()), results)
    return results


def _read(index: int, value: bytes, now: float) -> _Signature:
    """The signature's d= and s=, and a refusal for anything judged without the key."""
    try:
        tags = parse_tag_value(value)
        domain = _text(tags.get(b"d", b"")).lower()
        selector = _text(tags.get(b"s", b"")).lower()
    except Exception as exc:
        # malformed tag lists raise several kinds
        return _Signature(index, "", "", f"malformed signature ({type(exc).__name__})")
    refusal = _refusal(tags, domain, selector, now)
    if refusal:
        return _Signature(index, _printable(domain), _printable(selector), refusal)
    return _Signature(index, domain, selector, "")


def _text(value: bytes) -> str:
    return re.sub(r"\s+", "", value.decode("ascii", "replace"))


def _refusal(tags: dict[bytes, bytes], domain: str, selector: str, now: float) -> str:
    if not _is_domain(domain):
        return "d= is not a domain name"
    if not selector or not all(_SELECTOR_LABEL.fullmatch(p) for p in selector.split(".")):
        return "s= is not a selector"
    if valid_lookup_name(f"{selector}._domainkey.{domain}") is None:
        return "key name too long"
    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        return "a=rsa-sha1 is not accepted (RFC 8301)"
    if b"l" in tags:
        return "l= present: the body is not fully signed"
    signed = {h.strip().lower() for h in re.split(rb"\s*:\s*", tags.get(b"h", b""))}
    if b"from" not in signed:
        return "h= does not sign From"
    expiry = tags.get(b"x")
    if expiry is not None and (not expiry.strip().isdigit() or int(expiry) < now):
        return "x= expired"
    return ""


def _is_domain(domain: str) -> bool:
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and len(domain) <= 253
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


async def _fetch_keys(
    signatures: list[_Signature], resolver: Resolver
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Key records by name, and the names whose lookup failed temporarily (with why)."""
    names = sorted({s.key_name for s in signatures if not s.refusal})
    answers = await asyncio.gather(*(resolver.txt(n) for n in names), return_exceptions=True)
    keys: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, DnsTemporaryError):
            failures[name] = str(answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            keys[name] = answer
    return keys, failures


def _verify_all(
    raw: bytes,
    signatures: list[_Signature],
    keys: dict[str, list[str]],
    failures: dict[str, str],
) -> list[DkimResult]:
    """Runs in a worker thread: dkimpy is synchronous and CPU-bound."""
    # One parse of the message for all signatures (verify() leaves headers and body alone).
    verifier = dkim.DKIM(raw, logger=_QUIET, minkey=1024)
    results = []
    for sig in signatures:
        if sig.refusal:
            results.append(DkimResult(sig.domain, sig.selector, False, sig.refusal))
        elif sig.key_name in failures:
            results.append(
                DkimResult(sig.domain, sig.selector, False, "temperror: key lookup", True)
            )
        else:
            record = _key_record(keys.get(sig.key_name, []))
            reason = _check(verifier, sig, record) if record else "no key published"
            results.append(DkimResult(sig.domain, sig.selector, reason == "pass", reason))
    return results


def _key_record(records: list[str]) -> str:
    """The key record to use: the first that carries a p= tag (RFC 6376 §6.1.2 lets us pick)."""
    for record in records:
        if "p=" in record:
            return record
    return ""


def _check(verifier: dkim.DKIM, sig: _Signature, record: str) -> str:
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        # Served only from what was fetched for this very signature.
        asked = name.decode("ascii", "replace").rstrip(".").lower()
        return record.encode("utf-8", "surrogateescape") if asked == sig.key_name else None

    try:
        if verifier.verify(idx=sig.index, dnsfunc=dnsfunc):
            return "pass"
        return "signature did not verify"
    except dkim.KeyFormatError as exc:
        return f"key rejected: {_printable(str(exc))}"
    except Exception as exc:
        # any dkimpy exception is a fail, never a crash
        return f"{type(exc).__name__}: {_printable(str(exc))}"


def _printable(text: str, limit: int = 120) -> str:
    """Attacker-controlled text made safe for one log field."""
    cleaned = "".join(c if c.isprintable() and c.isascii() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."
