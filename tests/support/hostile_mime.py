"""A hypothesis strategy for hostile MIME: trees of parts written byte by byte, with the
header tricks real junk uses.

Headers: RFC 2047 encoded words (good, with a charset that does not exist, with broken
base64 or quoted-printable, unterminated), folding at odd places (inside a word, before
the colon's value, a continuation line of spaces only), NUL and other control bytes,
8-bit bytes of no declared charset, lines far over 998 octets. Bodies: declared and
undeclared charsets, wrong transfer encodings, broken base64. Structure: multiparts
with bogus boundaries (empty, spaces, quotes, 200 characters, never closed, found inside
a body), message/rfc822 parts, nesting a few levels deep.

The generated message is bytes, never an ``email.message`` object: the email package
would refuse to write most of it.
"""

from __future__ import annotations

from hypothesis import strategies as st

CHARSETS = ("utf-8", "UTF-8", "iso-8859-1", "windows-1252", "us-ascii", "utf-7", "utf-16",
            "x-does-not-exist", "", "utf-8'nl'", "koi8-r", "gb2312", "shift_jis")  # fmt: skip
ENCODINGS = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus",
             "BASE64", "")  # fmt: skip
LEAF_TYPES = ("text/plain", "text/html", "image/jpeg", "image/png", "application/pdf",
              "text/calendar", "text/directory", "application/pkcs7-signature",
              "application/octet-stream", "text/", "/", "text", "multipart/mixed",
              "message/delivery-status", "text/rfc822-headers", "x-unknown/x-thing")  # fmt: skip
SUBTYPES = ("mixed", "alternative", "related", "signed", "encrypted", "report", "digest")
HEADER_NAMES = ("Subject", "To", "Cc", "Reply-To", "Message-ID", "In-Reply-To", "References",
                "Date", "X-Mailer", "Comments", "Content-Description", "Received",
                "Auto-Submitted", "Precedence", "List-Id", "X-Loop", "Content-Type",
                "Content-Disposition", "Content-Transfer-Encoding")  # fmt: skip

_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
)
_raw_bytes = st.binary(max_size=40)


@st.composite
def encoded_word(draw: st.DrawFn) -> bytes:
    """An RFC 2047 encoded word, well-formed or broken."""
    charset = draw(st.sampled_from(CHARSETS)).encode("ascii")
    kind = draw(st.sampled_from((b"Q", b"B", b"q", b"b", b"X", b"")))
    text = draw(_words).encode("utf-8")
    payload = draw(st.sampled_from((
        text.hex().encode(),  # plausible
        b"".join(b"=%02X" % c for c in text),  # quoted-printable of the bytes
        b"!!!" + text,  # not base64, not qp
        b"=ZZ=4",  # broken escapes
        b"SGVsbG8",  # base64 without padding
    )))
    end = draw(st.sampled_from((b"?=", b"?=", b"", b"?")))  # sometimes never terminated
    return b"=?" + charset + b"?" + kind + b"?" + payload + end


@st.composite
def header_value(draw: st.DrawFn) -> bytes:
    pieces = draw(st.lists(st.one_of(
        _words.map(lambda w: w.encode("utf-8")),
        encoded_word(),
        _raw_bytes.filter(lambda b: b"\n" not in b and b"\r" not in b),  # NUL, 8-bit
        st.sampled_from((b"\x00", b"\xff\xfe", b"\xe9", b"\x1b[31m", b"(comment", b'"quote',
                         b"<a@b.example>", b"<>", b",", b";", b"\\",
                         b"multipart/mixed; boundary=b1", b"text/plain; charset*=x-bogus''%ff",
                         b"; name*0*=x-bogus''%ff; name*1=\"a\"", b"; boundary=", b"base64")),
        st.integers(990, 1200).map(lambda n: b"x" * n),  # one line over 998 octets
    ), max_size=5))
    value = b" ".join(pieces)
    fold = draw(st.sampled_from((b"", b"\r\n ", b"\r\n\t", b"\r\n \r\n ", b"\n ")))
    if fold and value:
        at = draw(st.integers(0, len(value)))
        value = value[:at] + fold + value[at:]
    return value


@st.composite
def extra_headers(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_value()), max_size=4))
    return b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields)


@st.composite
def boundary(draw: st.DrawFn) -> bytes:
    return draw(st.sampled_from((
        b"b1", b"", b"with space", b'with"quote', b"=_x" * 70, b"--", b"a" * 200, b"b1 ",
        b"\xe9t\xe9",
    )))


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from(LEAF_TYPES)).encode()
    charset = draw(st.sampled_from(CHARSETS)).encode("ascii")
    cte = draw(st.sampled_from(ENCODINGS)).encode()
    body = draw(st.one_of(
        _words.map(lambda w: w.encode("utf-8")),
        _raw_bytes,
        st.sampled_from((b"PGh0bWw+aGFsbG88L2h0bWw+", b"@@@ not base64 ===", b"=E9t=E9=\r\n",
                         b"<html><body><p>hoi<script>x</script></body>", b"\x00\x00",
                         b"BEGIN:VCARD\r\nFN:Jan\r\nEND:VCARD")),
    ))
    name = draw(st.one_of(st.none(), header_value()))
    head = b"Content-Type: " + ctype + b"; charset=" + charset
    if name is not None:
        head += b'; name="' + name + b'"'
    head += b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n"
    if draw(st.booleans()):
        head += b"Content-Disposition: attachment; filename*=utf-8''%E9%00.pdf\r\n"
    return head + draw(extra_headers()) + b"\r\n" + body + b"\r\n"


def _multipart(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        subtype = draw(st.sampled_from(SUBTYPES)).encode()
        mark = draw(boundary())
        parts = draw(children)
        closed = draw(st.booleans())
        quoted = b'"' + mark + b'"' if draw(st.booleans()) else mark
        head = b"Content-Type: multipart/" + subtype + b"; boundary=" + quoted + b"\r\n\r\n"
        body = b"preamble\r\n" + b"".join(b"--" + mark + b"\r\n" + p for p in parts)
        return head + body + (b"--" + mark + b"--\r\n" if closed else b"")
    return build()


def _message(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return inner.map(lambda part: b"Content-Type: message/rfc822\r\n\r\nSubject: binnen\r\n" + part)


mime_part = st.recursive(
    leaf(),
    lambda inner: st.one_of(_multipart(st.lists(inner, max_size=4)), _message(inner)),
    max_leaves=8,
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A whole message: a From (sometimes odd), hostile headers, a hostile MIME tree."""
    author = draw(st.sampled_from((
        b"Lid Nul <lid0@bewoners.example>", b"=?utf-8?q?Lid_Nul?= <lid0@bewoners.example>",
        b"lid0@bewoners.example", b"<>", b"\x00@x", b"Lid \xe9 <lid0@bewoners.example>",
    )))
    line_end = draw(st.sampled_from((b"\r\n", b"\n")))
    message = (b"From: " + author + b"\r\nMIME-Version: 1.0\r\n" + draw(extra_headers())
               + draw(mime_part))
    return message.replace(b"\r\n", line_end)
