"""How much MIME structure and header a message may have before it is refused at DATA.

Python's e-mail parser spends about half a millisecond on every MIME part and recurses
once per nesting level. A 1.4 MB message of 100,000 empty parts takes six seconds to
parse and far longer to render as a bulletin; some 1,000 nested levels raise
``RecursionError`` in every later parse, so such a message would be answered ``250``
and then fail in processing, unseen by its sender. Real mail has a few dozen parts at
most, so past these limits the message is refused (``554 5.6.0``) before anything is
stored.

The header block has a limit of its own. Every session check reads headers, and Python's
header parser takes about 2.5 µs a byte of short words: a header block as big as the
largest message (15 MB) would cost the session checks most of a minute. The big mail
systems pass nothing near ``MAX_HEADER_SIZE`` on (Postfix keeps 100 KB of a header block,
Exchange Online refuses over 256 KB), so past it the message is refused too.

The scan reads bytes and never parses, and it errs towards counting too much:

* parts: every line starting with ``--`` (each MIME part begins with a delimiter line,
  so a message cannot hold more parts than it has such lines), counted only when the
  message mentions ``multipart`` at all;
* containers: every ``Content-Type`` field naming ``multipart/`` or ``message/``
  (each nesting level needs one; a digest's children are message/rfc822 without saying
  so, which at most doubles the depth this allows).
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_CONTAINERS", "MAX_HEADER_SIZE", "MAX_PARTS", "header_refusal", "structure_refusal",
]

MAX_PARTS = 1_000
MAX_CONTAINERS = 200  # nesting that deep stays far below Python's recursion limit
MAX_HEADER_SIZE = 256 * 1024  # bytes of the header block (header_block.py)

# Searched in the lower-cased bytes behind a line end: Python's parser ends a line at CR,
# LF or CRLF, so a line may start after a bare CR too. The value is read at most 200 bytes
# far, so no field costs more than that however long its line.
# (The line-end check follows the literal so the engine can search for the literal fast.)
_CONTAINER_TYPE = re.compile(
    rb"content-type(?<=[\r\n]content-type)[ \t]*:(?:[^\r\n]|(?:\r\n|\r|\n)[ \t]){0,200}?"
    rb"\b(?:multipart|message)[ \t]*/"
)


def structure_refusal(raw: bytes) -> str:
    """Why ``raw`` has too much MIME structure to take, or "" when it has not."""
    lowered = b"\n" + raw.lower()  # the first line starts after a line end too
    containers = sum(1 for _ in _CONTAINER_TYPE.finditer(lowered))
    if containers > MAX_CONTAINERS:
        return f"{containers} multipart/message containers (limit {MAX_CONTAINERS})"
    if b"multipart" not in lowered:
        return ""
    delimiters = lowered.count(b"\n--") + lowered.count(b"\r--")
    if delimiters > MAX_PARTS:
        return f"{delimiters} MIME delimiter lines (limit {MAX_PARTS})"
    return ""


def header_refusal(head: bytes) -> str:
    """Why the header block ``head`` is too big to take, or "" when it is not."""
    if len(head) > MAX_HEADER_SIZE:
        return f"header block of {len(head)} bytes (limit {MAX_HEADER_SIZE})"
    return ""
