"""Token addresses: minting and recognising the secret part of ``moderatie+<token>@``.

A moderation token is 120 random bits (lower-case base32, so it survives mail clients
that change the case of addresses). Only its SHA-256 is stored: a leaked database
does not let anyone approve a held item. Delivery tokens (reply and bounce addresses)
are random too and live in the ``deliveries`` table; they identify a copy, not a power.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

# The local parts of token addresses: <prefix>+<token>@<gateway domain>.
MODERATION_PREFIX = "moderatie"
REPLY_PREFIX = "reactie"
BOUNCE_PREFIX = "bounce"
JOIN_PREFIX = "aanmelding"  # aanmelding+<token>@: the answer confirming a join request
TOKEN_PREFIXES = (MODERATION_PREFIX, REPLY_PREFIX, BOUNCE_PREFIX, JOIN_PREFIX)
# <list>+<word>@: joining and leaving a list by mail (Dutch first, English too).
JOIN_WORDS = frozenset({"aanmelden", "subscribe"})
LEAVE_WORDS = frozenset({"afmelden", "unsubscribe"})

MODERATION_TOKEN = re.compile(r"[a-z2-7]{24}")
DELIVERY_TOKEN = re.compile(r"[0-9a-f]{24}")


def new_moderation_token() -> str:
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


def token_hash(token: str) -> str:
    """What the store keeps of a moderation token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def new_delivery_token() -> str:
    return secrets.token_hex(12)


def token_address(prefix: str, token: str, domain: str) -> str:
    return f"{prefix}+{token}@{domain}"


def is_moderation_token(text: str) -> bool:
    return MODERATION_TOKEN.fullmatch(text) is not None


def is_delivery_token(text: str) -> bool:
    return DELIVERY_TOKEN.fullmatch(text) is not None
