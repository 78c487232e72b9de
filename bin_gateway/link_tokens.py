"""Signed tokens for links in mail (one-click unsubscribe): HMAC-SHA256, expiring.

A token says "member M of list L, until T", signed with a secret kept in the data
directory (created on first use, mode 0600). Nothing is stored per link, so a copy can
be re-rendered byte for byte after a crash; a changed character, another member's id or
a token past its time is refused, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SECRET_NAME = "link-secret"  # noqa: S105 (a file name, not a secret)
_SIG_BYTES = 16  # 128 bits of HMAC: no one forges that by trying


@dataclass(frozen=True, slots=True)
class LinkClaim:
    member_id: int
    list_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("link secret: at least 32 bytes")
        self._secret = secret

    @classmethod
    def load_or_create(cls, data_dir: Path) -> LinkSigner:
        path = data_dir / SECRET_NAME
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def make(self, member_id: int, list_id: str, expires_at: int) -> str:
        payload = f"{member_id}.{list_id}.{expires_at}".encode("ascii")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def unsubscribe_url(
        self, public_url: str, member_id: int, list_id: str, expires_at: int
    ) -> str:
        """The one-click leave link (``/u/<token>``, served by http_app.py)."""
        return f"{public_url}/u/{self.make(member_id, list_id, expires_at)}"

    def read(self, token: str) -> LinkClaim | None:
        """The claim of a well-signed token (expired or not), else None."""
        body, dot, signature = token.partition(".")
        if not dot or len(token) > 300:
            return None
        try:
            payload = _unb64(body)
            given = _unb64(signature)
        except ValueError:
            return None
        if _b64(payload) != body or _b64(given) != signature:
            return None  # one token, one spelling: base64's spare bits allow others
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        member, _, rest = payload.decode("ascii", "replace").partition(".")
        list_id, _, expires = rest.rpartition(".")
        if not (member.isdigit() and expires.isdigit() and list_id):
            return None
        return LinkClaim(int(member), list_id, int(expires))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_SIG_BYTES]
