"""The strict reading of the header From (security.md §3, §3.1; espoofer a8-a19)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from bin_gateway.auth.author import Author, Refusal, _header_lines, parse_author

POLICE = "wijkagent.noord@politie.example"
TAIL = b"To: agency@buurtnet.example\r\nSubject: Melding\r\n\r\nTekst.\r\n"


def read(head: bytes) -> Author | Refusal:
    raw = head + TAIL
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return parse_author(raw, message)


def test_plain_from_gives_the_mailbox() -> None:
    """A single clean From yields its address, display name and domain."""
    author = read(b"From: Wijkagent Noord <wijkagent.noord@politie.example>\r\n")
    assert author == Author(POLICE, "Wijkagent Noord", "politie.example", False)


def test_domain_is_lower_cased_and_local_part_kept() -> None:
    """A mixed-case domain is lower-cased; the local part stays as written."""
    author = read(b"From: W <Wijkagent.Noord@Politie.EXAMPLE>\r\n")
    assert isinstance(author, Author)
    assert author.domain == "politie.example"
    assert author.address == "Wijkagent.Noord@politie.example"


def test_hyphenated_domain_is_kept_whole() -> None:
    """politie-noord.example is read whole, not cut at the hyphen (authheaders' bug)."""
    author = read(b"From: wijkagent@politie-noord.example\r\n")
    assert isinstance(author, Author)
    assert author.domain == "politie-noord.example"


def test_idn_homoglyph_domain_becomes_its_a_label() -> None:
    """A Greek omicron in the domain gives the xn-- A-label, never the police domain."""
    author = read("From: wijkagent.noord@pοlitie.example\r\n".encode())
    assert isinstance(author, Author)
    assert author.domain == "xn--plitie-i0e.example"


def test_encoded_display_name_is_decoded() -> None:
    """An RFC 2047 display name is decoded; it is not part of the address."""
    author = read(b"From: =?utf-8?q?Gemeente_=C3=A9=C3=A9n?= <info@gemeente.example>\r\n")
    assert isinstance(author, Author)
    assert author.display_name == "Gemeente één"
    assert author.address == "info@gemeente.example"


@pytest.mark.parametrize(
    ("head", "shown"),
    [
        # the allow-listed address as the display name of a foreign address
        (b'From: "wijkagent.noord@politie.example" <a@evil.example>\r\n', "a@evil.example"),
        # the allow-listed address inside a comment
        (b"From: a@evil.example (wijkagent.noord@politie.example)\r\n", "a@evil.example"),
    ],
)
def test_address_in_display_name_is_reported(head: bytes, shown: str) -> None:
    """An address in the display name or a comment is allowed but flagged; the real one counts."""
    author = read(head)
    assert isinstance(author, Author)
    assert author.address == shown
    assert author.display_name_has_address


def test_same_address_in_display_name_is_not_flagged() -> None:
    """Repeating the real address as the display name is not a warning sign."""
    author = read(b'From: "Wijkagent.Noord@politie.example" <wijkagent.noord@politie.example>\r\n')
    assert isinstance(author, Author)
    assert not author.display_name_has_address


def test_sender_and_resent_from_do_not_change_the_author() -> None:
    """Sender and Resent-From are not the author (espoofer a12, a13): From decides."""
    author = read(
        b"Sender: wijkagent.noord@politie.example\r\n"
        b"Resent-From: wijkagent.noord@politie.example\r\n"
        b"From: a@evil.example\r\n"
    )
    assert isinstance(author, Author)
    assert author.domain == "evil.example"


REFUSED = {
    "no From": b"Reply-To: wijkagent.noord@politie.example\r\n",
    "two From headers (a8)": b"From: a@evil.example\r\nFrom: wijkagent.noord@politie.example\r\n",
    "From with a leading space (a9)": (
        b" From: a@evil.example\r\nFrom: wijkagent.noord@politie.example\r\n"
    ),
    "space before the colon, first (a10)": (
        b"From : a@evil.example\r\nFrom: wijkagent.noord@politie.example\r\n"
    ),
    "space before the colon, second (a10)": (
        b"From: wijkagent.noord@politie.example\r\nFrom : a@evil.example\r\n"
    ),
    "folded header name (a11)": (
        b"From\r\n : a@evil.example\r\nFrom: wijkagent.noord@politie.example\r\n"
    ),
    "folded header name alone": b"Subject: x\r\nFrom\r\n : wijkagent.noord@politie.example\r\n",
    "two mailboxes (a14)": b"From: wijkagent.noord@politie.example, a@evil.example\r\n",
    "encoded-word address (a15)": (
        b"From: =?utf-8?b?d2lqa2FnZW50Lm5vb3JkQHBvbGl0aWUuZXhhbXBsZQ==?=@evil.example\r\n"
    ),
    "mailsploit encoded NUL": b"From: =?utf-8?q?wijkagent=00?=@politie.example\r\n",
    "route in From (a16)": b"From: <@evil.example:wijkagent.noord@politie.example>\r\n",
    "quoted-pair comma (a17)": b"From: wijkagent.noord@politie.example\\,<a@evil.example>\r\n",
    "special-character precedence (a18)": (
        b"From: wijkagent.noord@politie.example,<a@evil.example>\r\n"
    ),
    "<evil>police (a19)": b"From: <a@evil.example>wijkagent.noord@politie.example\r\n",
    "two angle addresses": b"From: <a@evil.example> <wijkagent.noord@politie.example>\r\n",
    "group": b"From: Politie: wijkagent.noord@politie.example;\r\n",
    "empty group": b"From: undisclosed-recipients:;\r\n",
    "quoted local part with @": b'From: "wijkagent.noord@politie.example"@evil.example\r\n',
    "quoted local part": b'From: "wijk agent"@politie.example\r\n',
    "raw NUL": b"From: wijkagent.noord@politie.example\x00@evil.example\r\n",
    "empty domain": b"From: wijkagent@\r\n",
    "no domain": b"From: wijkagent\r\n",
    "domain literal": b"From: wijkagent@[192.0.2.10]\r\n",
    "single-label domain": b"From: wijkagent@example\r\n",
    "empty From": b"From: \r\n",
    "invalid UTF-8": b"From: wijkagent@politie\xff.example\r\n",
}


@pytest.mark.parametrize("head", list(REFUSED.values()), ids=list(REFUSED))
def test_ambiguous_from_is_refused(head: bytes) -> None:
    """Every From trick of security.md §3 is refused, never resolved to some address."""
    assert isinstance(read(head), Refusal)


def test_refusal_says_why() -> None:
    """A refusal names the problem for the log."""
    refusal = read(b"From: a@evil.example\r\nFrom: wijkagent.noord@politie.example\r\n")
    assert refusal == Refusal("2 From header lines")


def test_message_defect_elsewhere_in_the_header_is_refused() -> None:
    """A broken header block (a non-header line before the From) is refused as a whole."""
    assert isinstance(
        read(b"Subject: x\r\nnot a header\r\nFrom: " + POLICE.encode() + b"\r\n"), Refusal
    )


def test_body_structure_defect_does_not_refuse() -> None:
    """A multipart without its closing boundary still has a clear author."""
    raw = (
        b"From: wijkagent.noord@politie.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nTekst.\r\n"
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    author = parse_author(raw, message)
    assert isinstance(author, Author)
    assert author.address == POLICE


def test_folded_from_value_is_read() -> None:
    """A From value folded over two lines is one mailbox."""
    author = read(b"From: Wijkagent Noord\r\n <wijkagent.noord@politie.example>\r\n")
    assert isinstance(author, Author)
    assert author.address == POLICE


def test_utf8_local_part_is_accepted() -> None:
    """An SMTPUTF8 local part is a mailbox like any other."""
    author = read("From: agënt@politie.example\r\n".encode())
    assert isinstance(author, Author)
    assert author.address == "agënt@politie.example"


@pytest.mark.parametrize(("raw", "lines"), [
    (b"From: a@x.nl\r\nTo: b@y.nl\r\n\r\nFrom: body@evil.nl\r\n", [b"From: a@x.nl", b"To: b@y.nl"]),
    (b"From: a@x.nl\rTo: b@y.nl\n\nbody", [b"From: a@x.nl", b"To: b@y.nl"]),
    (b"From: a@x.nl\r\n\r\n", [b"From: a@x.nl"]),
    (b"From: a@x.nl\r\n From: folded", [b"From: a@x.nl", b" From: folded"]),  # no body
    (b"\r\nFrom: a@x.nl\r\n", []),  # an empty first line: no headers at all
])
def test_the_raw_header_lines_end_at_the_first_empty_line(raw: bytes, lines: list[bytes]) -> None:
    """Lines end at CRLF, CR or LF as Python's parser reads them; the body (a From line in
    it included) is never read."""
    assert _header_lines(raw) == lines
