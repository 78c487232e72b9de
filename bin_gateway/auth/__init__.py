"""Sender authentication (SPEC §5): who the From says, and whether its domain is proven.

`parse_author` reads the one From mailbox (or refuses an ambiguous From);
`authenticate` decides whether that domain is authenticated by aligned DKIM or SPF (or a
trusted MTA's Authentication-Results); `make_resolver` builds the DNS boundary they use.
"""

from bin_gateway.auth.alignment import aligned, normalise_domain, organizational_domain
from bin_gateway.auth.authenticate import (
    AuthResult,
    Requirement,
    authenticate,
    read_authentication_results,
)
from bin_gateway.auth.author import Author, Refusal, parse_author
from bin_gateway.auth.dkim_verify import DkimResult, DkimTemporaryError, verify_dkim
from bin_gateway.auth.dns import CachingResolver, Resolver, make_resolver
from bin_gateway.auth.spf_check import SpfOutcome, SpfResult, check_spf

__all__ = [
    "AuthResult",
    "Author",
    "CachingResolver",
    "DkimResult",
    "DkimTemporaryError",
    "Refusal",
    "Requirement",
    "Resolver",
    "SpfOutcome",
    "SpfResult",
    "aligned",
    "authenticate",
    "check_spf",
    "make_resolver",
    "normalise_domain",
    "organizational_domain",
    "parse_author",
    "read_authentication_results",
    "verify_dkim",
]
