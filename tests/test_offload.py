"""CPU work off the event loop (offload.py): where it runs, and pieces that add up.

``in_pieces`` lets a worker thread give the event loop the interpreter lock between
pieces; what it computes must be the same bytes as one call over the whole input. Its
users: base64 of a notice's attachment, and the wire form of a message for DATA (which
must be what aiosmtplib's own ``data()`` would have sent).
"""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway import offload
from bin_gateway.notices import _base64_lines
from bin_gateway.offload import INLINE_LIMIT, in_pieces
from bin_gateway.smarthost import _data_payload

_wire_bytes = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" "]),
                       max_size=60).map(b"".join)


def aiosmtplib_data(message: bytes) -> bytes:
    """What aiosmtplib's execute_data_command writes after DATA."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


async def test_small_work_runs_inline_and_big_work_in_a_thread() -> None:
    """At most INLINE_LIMIT bytes: on the calling thread; more: in a worker thread."""
    inline = await offload.offload(INLINE_LIMIT, threading.get_ident)
    big = await offload.offload(INLINE_LIMIT + 1, threading.get_ident)
    assert inline == threading.get_ident() != big


async def test_an_exception_comes_back_from_either_side() -> None:
    """A fault of the work raises in the caller, inline or from the thread."""
    for size in (1, INLINE_LIMIT + 1):
        with pytest.raises(ZeroDivisionError):
            await offload.offload(size, lambda: 1 // 0)
    await asyncio.sleep(0)


@settings(max_examples=300, deadline=None)
@given(_wire_bytes, st.integers(1, 9))
def test_the_data_payload_is_aiosmtplibs_in_any_pieces(message: bytes, piece: int) -> None:
    """DATA's bytes, made in pieces of any size, equal aiosmtplib's own: CRLF everywhere,
    leading dots doubled, a last line end, the end marker."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offload, "PIECE", piece)
        assert _data_payload(message) == aiosmtplib_data(message)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 200))
def test_base64_in_pieces_is_base64(data: bytes, piece: int) -> None:
    """A notice's attachment, base64-encoded in pieces of any size, is the same bytes as
    base64 of the whole (76-character CRLF lines)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offload, "PIECE", piece)
        assert _base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


def test_pieces_end_after_a_line_feed() -> None:
    """Line by line: every piece the transform sees ends with LF (no CRLF cut), except
    the last."""
    seen: list[bytes] = []

    def record(piece: bytes) -> bytes:
        seen.append(piece)
        return piece

    data = b"ab\r\ncd\r\n\r\nef\rgh\n" * 50
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offload, "PIECE", 10)
        assert in_pieces(record, data) == data
    assert len(seen) > 10
    assert all(piece.endswith(b"\n") for piece in seen[:-1])
