"""CPU work on a message: inline when the message is small, in a worker thread when big.

Parsing, encoding and signing cost time in proportion to the bytes they read, and the
largest message the gateway takes (``max_message_size``, 15 MB by default) makes that a
second or more. On the event loop that second stalls every SMTP session, the outbox and
the processor; in a worker thread the loop keeps answering meanwhile (it gets the
interpreter lock back at every switch interval, 5 ms). A hop to a thread costs about
70 µs of CPU, more than all the work on a typical 5 KB reply, so small input stays inline:
below ``INLINE_LIMIT`` the worst case inline (a header block of short words, which
Python's header parser reads at about 2 µs a byte) stays under 40 ms.

A thread gives the lock back only between two steps of Python: one C call over 20 MB (a
regex pass, base64) keeps the loop waiting for its whole length, 0.1-0.2 s. ``in_pieces``
cuts such a call into pieces of about a megabyte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["INLINE_LIMIT", "PIECE", "in_pieces", "offload"]

INLINE_LIMIT = 16 * 1024  # bytes
PIECE = 1 << 20  # bytes a C call of in_pieces reads: some 5-10 ms

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def offload(size: int, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)``: inline when ``size`` (the bytes it reads) is at most
    ``INLINE_LIMIT``, otherwise through ``asyncio.to_thread``. Its result or exception
    either way."""
    if size <= INLINE_LIMIT:
        return func(*args, **kwargs)
    return await asyncio.to_thread(func, *args, **kwargs)


def in_pieces(transform: Callable[[bytes], bytes], data: bytes, *, step: int = 0) -> bytes:
    """``transform(data)``, computed piece by piece and joined, so that a worker thread
    running it lets the event loop in between pieces. Pieces are about ``PIECE`` bytes
    and end just after a line feed (no CR LF is cut), or, with ``step``, at a multiple of
    ``step`` bytes. Only for a transform that gives the same bytes that way: one that
    works line by line, or one on fixed-size groups (base64's 57-byte lines)."""
    if len(data) <= PIECE:
        return transform(data)
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        if step:
            end = start + max(step, PIECE - PIECE % step)
        else:
            found = data.find(b"\n", start + PIECE)
            end = len(data) if found == -1 else found + 1
        pieces.append(transform(data[start:end]))
        start = end
    return b"".join(pieces)
