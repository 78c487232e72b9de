"""DKIM-sign outgoing mail (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519).

Why not dkimpy: its RSA is pure Python (~5.8 ms a copy, a minute for a 10,000-member
bulletin); the same signature through ``cryptography`` (OpenSSL) costs ~0.5 ms and
Ed25519 less. A bulletin's body is the same for every member, so the caller computes
``body_hash()`` once and passes it to ``sign()`` for each member's headers.

What is hashed is what goes on the wire: aiosmtplib turns every bare CR or LF into
CRLF and ends the message with CRLF, so ``body_hash()`` normalises the same way first.
RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic: with a fixed ``timestamp``
a re-signed copy is byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from bin_gateway.keys import DkimPrivateKey, load_private_key, read_private_key

__all__ = ["SIGNED_HEADERS", "Signer"]

SIGNED_HEADERS = (
    "From",
    "Subject",
    "Date",
    "To",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)
_SIGNED_LOWER = {name.lower().encode("ascii"): name for name in SIGNED_HEADERS}
# (separator, text): a fragment of the DKIM-Signature value and what precedes it unfolded.
_Piece = tuple[str, str]

_SIG_NAME = "DKIM-Signature"
# Content per line, without CRLF: keeps every line under 78 characters (RFC 5322 §2.1.1).
_LINE_LIMIT = 76

# Rendered copies share a handful of header patterns; the bound only guards memory.
_H_CACHE_SIZE = 64

_LINE_ENDING = re.compile(rb"\r\n|\n|\r(?!\n)")
# Only runs that change: matching every single SP would make the body pass 3x slower.
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")
_WSP_BEFORE_CRLF = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
# After unfolding, a value must hold no line break or other control character:
# one would start a new header line, i.e. the caller has a header-injection bug.
_BAD_VALUE_CHAR = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class Signer:
    """Signs messages for one domain and selector with one key, loaded once."""

    __slots__ = ("_algorithm", "_h_cache", "_key", "_leading")

    def __init__(self, *, domain: str, selector: str, key: DkimPrivateKey) -> None:
        domain = _dns_name(domain, "domain")
        selector = _dns_name(selector, "selector")
        self._key = key
        self._algorithm = (
            "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
        )
        tags = ("v=1;", f"a={self._algorithm};", "c=relaxed/relaxed;", f"d={domain};")
        self._leading: tuple[_Piece, ...] = (*((" ", tag) for tag in tags), (" ", f"s={selector};"))
        # h= depends only on which signed headers occur how often: cache per pattern.
        self._h_cache: dict[tuple[tuple[bytes, int], ...], tuple[_Piece, ...]] = {}

    @classmethod
    def load(cls, *, domain: str, selector: str, key_path: Path) -> Signer:
        """Read an RSA or Ed25519 PEM key file; problems raise a readable ``ValueError``."""
        return cls(domain=domain, selector=selector, key=read_private_key(key_path))

    @classmethod
    def from_pem(cls, *, domain: str, selector: str, pem: bytes) -> Signer:
        """Like ``load`` for a key already in memory."""
        return cls(domain=domain, selector=selector, key=load_private_key(pem))

    @property
    def algorithm(self) -> str:
        """``"rsa-sha256"`` or ``"ed25519-sha256"``."""
        return self._algorithm

    def body_hash(self, body: bytes) -> str:
        """The ``bh=`` value: base64 SHA-256 of the relaxed-canonical body."""
        return base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode("ascii")

    def sign(
        self,
        headers: Sequence[tuple[str, str]],
        body_hash: str,
        *,
        timestamp: int | None = None,
    ) -> tuple[str, str]:
        """Return ``("DKIM-Signature", value)`` to prepend to the message.

        ``headers`` are ``(name, raw value)`` in message order; a value may be folded
        (CRLF + WSP) and keeps its RFC 2047 words as given. Non-ASCII values are
        hashed as UTF-8 (SMTPUTF8 mail). ``timestamp`` (t=) defaults to now.
        """
        encoded = [
            (name.encode("ascii"), value.encode("utf-8", "surrogateescape"))
            for name, value in headers
        ]
        return _SIG_NAME, self._sign(encoded, body_hash, timestamp)

    def sign_message(self, message: bytes) -> bytes:
        """Return the whole message with a DKIM-Signature header prepended.

        Line endings are first made CRLF, as they will be on the wire.
        """
        message = _wire_form(message)
        headers, body = _split_message(message)
        value = self._sign(headers, self.body_hash(body), None)
        return f"{_SIG_NAME}: {value}\r\n".encode("ascii") + message

    def _sign(
        self, headers: Sequence[tuple[bytes, bytes]], body_hash: str, timestamp: int | None
    ) -> str:
        picked = _pick_signed(headers)
        stamp = int(time.time()) if timestamp is None else timestamp
        pieces = (
            *self._leading,
            (" ", f"t={stamp};"),
            *self._h_pieces(picked),
            (" ", f"bh={body_hash};"),
            (" ", "b="),
        )
        data = bytearray()
        for lower_name, values in picked.items():
            # RFC 6376 §5.4.2: several instances are signed from the bottom up.
            for value in reversed(values):
                data += lower_name + b":" + _relaxed_value(value) + b"\r\n"
        unsigned = _fold(pieces, "")
        data += b"dkim-signature:" + _relaxed_value(unsigned.encode("ascii"))
        signature = base64.b64encode(self._raw_signature(bytes(data))).decode("ascii")
        return _fold(pieces, signature)

    def _h_pieces(self, picked: dict[bytes, list[bytes]]) -> tuple[_Piece, ...]:
        pattern = tuple((name, len(values)) for name, values in picked.items())
        cached = self._h_cache.get(pattern)
        if cached is not None:
            return cached
        if b"from" not in picked:
            raise ValueError("cannot DKIM-sign a message without a From header (RFC 6376 §5.4)")
        names = [_SIGNED_LOWER[name] for name, count in pattern for _ in range(count)]
        # Over-sign From: a From prepended later then has no unsigned slot to hide in.
        names.append("From")
        # FWS is allowed around h='s colons, so the list may break after any of them.
        pieces = [(" ", f"h={names[0]}:")]
        pieces += [("", f"{name}:") for name in names[1:-1]]
        pieces.append(("", f"{names[-1]};"))
        result = tuple(pieces)
        if len(self._h_cache) >= _H_CACHE_SIZE:
            self._h_cache.clear()
        self._h_cache[pattern] = result
        return result

    def _raw_signature(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            # RFC 8463 §3: Ed25519 (PureEdDSA) over the SHA-256 hash of the data.
            return self._key.sign(hashlib.sha256(data).digest())
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _dns_name(name: str, what: str) -> str:
    """Validate a d= or s= value: a tag value must not smuggle ';' or whitespace."""
    if not name.isascii():
        raise ValueError(f"DKIM {what} {name!r} must be ASCII; write an IDN as its xn-- form")
    cleaned = name.lower().rstrip(".")
    labels = cleaned.split(".")
    if not cleaned or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"DKIM {what} {name!r} is not a valid DNS name")
    return cleaned


def _wire_form(message: bytes) -> bytes:
    crlf = message.count(b"\r\n")
    # Counting is far cheaper than the regex, and already-CRLF input is the usual case.
    if message.count(b"\r") != crlf or message.count(b"\n") != crlf:
        message = _LINE_ENDING.sub(b"\r\n", message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 on the body as transmitted (CRLF lines, final CRLF)."""
    body = _wire_form(body) if body else body
    # find() rather than "in": between two calls a worker thread signing a big body lets
    # the event loop have the interpreter lock; four "in" tests in a row keep it 0.1 s.
    if body.find(b" \r\n") != -1 or body.find(b"\t\r\n") != -1:
        body = _WSP_BEFORE_CRLF.sub(b"\r\n", body)
    if body.find(b"\t") != -1 or body.find(b"  ") != -1:
        body = _WSP_RUN.sub(b" ", body)
    # Every CR and LF is now part of a CRLF pair, so this drops exactly the empty lines
    # at the end; a non-empty body keeps one final CRLF, an empty one stays empty.
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _relaxed_value(value: bytes) -> bytes:
    """RFC 6376 §3.4.2 for a header value: unfold, one SP per WSP run, strip."""
    return _WSP_RUN.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t")


def _pick_signed(headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """The signed headers' raw values by lower-case name, in SIGNED_HEADERS order."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in _SIGNED_LOWER:
            continue
        if value.endswith(b"\r\n"):
            value = value[:-2]
        if _BAD_VALUE_CHAR.search(_FOLD.sub(b"", value)):
            raise ValueError(
                f"{name.decode('ascii')} header value holds a line break not followed by "
                "whitespace, or a control character; refusing to sign it"
            )
        found.setdefault(lower, []).append(value)
    return {name: found[name] for name in _SIGNED_LOWER if name in found}


def _split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split a CRLF message into ``(name, raw value)`` headers and the body."""
    head, separator, body = message.partition(b"\r\n\r\n")
    if not separator:
        head, body = message.removesuffix(b"\r\n"), b""
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not headers:
                raise ValueError("message starts with a continuation line, not a header")
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"malformed header line {line[:40]!r}")
        headers.append((name, value))
    return headers, body


def _fold(pieces: Sequence[_Piece], signature: str) -> str:
    """Join ``pieces`` and the b= data into a header value folded at FWS-legal places.

    A piece is ``(separator, text)``; a fold replaces the separator by CRLF + SP. The
    signature may break anywhere. Folding before b= does not depend on ``signature``,
    so the form hashed with an empty b= is what a verifier gets back when it empties
    b= (RFC 6376 §3.5).
    """
    lines: list[str] = []
    line = f"{_SIG_NAME}:"
    for separator, text in pieces:
        if len(line) + len(separator) + len(text) > _LINE_LIMIT:
            lines.append(line)
            line = " " + text
        else:
            line += separator + text
    rest = signature
    while rest:
        room = _LINE_LIMIT - len(line)
        if room <= 0:
            lines.append(line)
            line, room = " ", _LINE_LIMIT - 1
        line, rest = line + rest[:room], rest[room:]
    lines.append(line)
    return "\r\n".join(lines)[len(_SIG_NAME) + 2 :]
