"""DMARC relaxed alignment: two domains align when their organisational domains are equal.

The organisational domain is the registrable domain by the Public Suffix List (RFC 7489
§3.2), private section included, so `a.github.io` and `b.github.io` are different
organisations. The list ships inside the `publicsuffixlist` package: no network.
"""

from __future__ import annotations

import functools

import idna
from publicsuffixlist import PublicSuffixList

__all__ = ["aligned", "normalise_domain", "organizational_domain"]


@functools.cache
def _psl() -> PublicSuffixList:
    # Parsing the list takes tens of milliseconds: once per process, on first use.
    return PublicSuffixList()


def normalise_domain(domain: str) -> str:
    """Lower-case A-label form without a trailing dot; "" if it is not a usable domain name."""
    bare = domain.strip().rstrip(".")
    if not bare:
        return ""
    try:
        return idna.encode(bare, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return ""


def organizational_domain(domain: str) -> str:
    """The registrable domain of `domain`; the domain itself when it is a public suffix."""
    name = normalise_domain(domain)
    if not name:
        return ""
    registrable = _psl().privatesuffix(name)
    return registrable if registrable else name


def aligned(a: str, b: str) -> bool:
    """True when `a` and `b` share an organisational domain (DMARC relaxed alignment)."""
    org_a = organizational_domain(a)
    return bool(org_a) and org_a == organizational_domain(b)
