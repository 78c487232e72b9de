"""The exception tree of bin-gateway.

Verdicts describe expected outcomes (a spoofed sender, an unknown address); exceptions
are for faults only::

    GatewayError
    ├── ConfigError            the configuration file is wrong (carries every problem)
    ├── DnsTemporaryError      a lookup timed out or SERVFAILed: the sender must retry (451)
    ├── StoreError             the database cannot do what was asked
    ├── DeliveryError          the outbound side is misconfigured (not a per-message result)
    ├── BackupError            ``backup`` could not make a good copy (nothing left behind)
    └── TlsFilesError          the STARTTLS certificate and key cannot be used together
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error bin-gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` lists every problem with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class DnsTemporaryError(GatewayError):
    """A DNS lookup could not be completed now (timeout, SERVFAIL): never a pass."""


class StoreError(GatewayError):
    """The store failed in a way the caller cannot repair."""


class DeliveryError(GatewayError):
    """The delivery side cannot work at all (bad smarthost credentials file, ...)."""


class BackupError(GatewayError):
    """The backup could not be made; nothing was left at the destination."""


class TlsFilesError(GatewayError):
    """The configured certificate and key cannot be used; the text says why (no key data)."""
