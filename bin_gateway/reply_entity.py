"""The MIME entity of a relayed reply, written byte by byte from the cleaned parts.

Written by hand rather than with ``email.message.EmailMessage`` so the result is exactly
what we mean: the top has ``MIME-Version``, ``Content-Type`` and
``Content-Transfer-Encoding`` and nothing else; text is quoted-printable UTF-8 and images
are base64, so the entity is 7-bit and survives any smarthost; lines end in CRLF; and
the output is deterministic (boundaries are derived from the content, not random), so
the same reply anonymised twice gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence

from .reply_images import CleanImage

__all__ = ["build_entity"]

_Part = tuple[bytes, bytes]  # header lines (each ending in CRLF), body (ending in CRLF)
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)  # mbox-style relays would mangle it


def build_entity(text: str, html: str | None, images: Sequence[CleanImage]) -> bytes:
    """``text`` (and ``html`` as its alternative), then the images as foto-1.jpg, …"""
    body = _text("plain", text)
    if html is not None:
        body = _multipart("alternative", [body, _text("html", html)])
    if images:
        files = [_image(image, n) for n, image in enumerate(images, start=1)]
        body = _multipart("mixed", [body, *files])
    headers, content = body
    return b"MIME-Version: 1.0\r\n" + headers + b"\r\n" + content


def _text(subtype: str, text: str) -> _Part:
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
    )
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    encoded = _FROM_LINE.sub(b"=46rom ", encoded)
    if not encoded.endswith(b"\r\n"):
        encoded += b"\r\n"
    return headers.encode("ascii"), encoded


def _image(image: CleanImage, number: int) -> _Part:
    name = f"foto-{number}.{'jpg' if image.subtype == 'jpeg' else 'png'}"
    headers = (
        f'Content-Type: image/{image.subtype}; name="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n'
    )
    return headers.encode("ascii"), base64.encodebytes(image.data).replace(b"\n", b"\r\n")


def _multipart(subtype: str, parts: Sequence[_Part]) -> _Part:
    digest = hashlib.sha256()
    for headers, content in parts:
        digest.update(headers)
        digest.update(content)
    # "=_" cannot occur in quoted-printable or base64 text, so no part can hold the line
    boundary = f"=_bin_{subtype}_{digest.hexdigest()[:32]}".encode("ascii")
    headers = b'Content-Type: multipart/' + subtype.encode("ascii") + b'; boundary="' + (
        boundary + b'"\r\n'
    )
    chunks = [b"--" + boundary + b"\r\n" + h + b"\r\n" + c for h, c in parts]
    return headers, b"".join(chunks) + b"--" + boundary + b"--\r\n"
