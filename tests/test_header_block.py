"""The header block (header_block.py) and its size limit (mime_limits.py).

The session checks parse only the header block; that must give exactly what Python's
parser finds in the whole message, whatever the line ends, or a check could be fooled
by a header the other reading sees and this one does not.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bin_gateway.header_block import header_block
from bin_gateway.mime_limits import MAX_HEADER_SIZE, header_refusal
from tests.support.hostile import corpus
from tests.support.hostile_mime import hostile_messages


def headers_only(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    assert isinstance(message, EmailMessage)
    return message


def assert_same_headers(raw: bytes) -> None:
    whole, head = headers_only(raw), headers_only(header_block(raw))
    assert list(head.raw_items()) == list(whole.raw_items())
    assert [type(d) for d in head.defects] == [type(d) for d in whole.defects]
    assert head.get_content_type() == whole.get_content_type()


# Messages built from the pieces line ends are made of, so every mix of CR, LF, CRLF,
# empty lines, continuation lines and lines that are no header gets tried.
_pieces = st.sampled_from([b"From: a@b.example", b"X-A: 1", b"Subject: s", b"\r", b"\n",
                           b"\r\n", b" folded", b"\tx", b"geen kop", b"body", b":", b""])


@settings(max_examples=500, deadline=None)
@given(st.lists(_pieces, max_size=30).map(b"".join))
def test_line_end_mixtures_give_the_same_headers(raw: bytes) -> None:
    """Any mix of CR, LF and CRLF line ends: the header block parses to the same header
    fields, defects and content type as the whole message read headers-only."""
    assert_same_headers(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_messages())
def test_hostile_mime_gives_the_same_headers(raw: bytes) -> None:
    """Generated hostile MIME: the same headers from the block as from the message."""
    assert_same_headers(raw)


@pytest.mark.parametrize(("name", "raw"), corpus() or [("none", b"")])
def test_the_cpython_corpus_gives_the_same_headers(name: str, raw: bytes) -> None:
    """CPython's e-mail test corpus: the same headers from the block as from the message."""
    assert_same_headers(raw)


@pytest.mark.parametrize(
    ("raw", "block"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n"),
        (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
        (b"A: 1\rB: 2\r\rbody", b"A: 1\rB: 2\r"),
        (b"A: 1\r\n\nbody", b"A: 1\r\n"),
        (b"A: 1\n\r\nbody", b"A: 1\n"),
        (b"A: 1\r\r\nbody", b"A: 1\r"),
        (b"\r\nbody", b""),
        (b"A: 1\r\n folded\r\n", b"A: 1\r\n folded\r\n"),
        (b"A: 1", b"A: 1"),
    ],
)
def test_the_block_ends_before_the_first_empty_line(raw: bytes, block: bytes) -> None:
    """The block runs to the first empty line, whatever ends the lines; all of a message
    without one."""
    assert header_block(raw) == block


def test_a_header_block_over_the_limit_is_refused() -> None:
    """Up to MAX_HEADER_SIZE bytes of header block pass; one more is refused."""
    assert header_refusal(b"x" * MAX_HEADER_SIZE) == ""
    assert "header block" in header_refusal(b"x" * (MAX_HEADER_SIZE + 1))
