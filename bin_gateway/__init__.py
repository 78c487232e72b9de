"""bin-gateway: a mail gateway for a Buurt Informatie Netwerk."""

__version__ = "0.1.0"
