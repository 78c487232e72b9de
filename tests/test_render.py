"""Rendering a bulletin once and personalising it per member (SPEC F3)."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import replace
from email import message_from_bytes
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway.render import BulletinSource, BulletinTemplate

CRLF = "\r\n"
PDF = os.urandom(3000) + b"\x00\r\n\r\n.\r\n" + os.urandom(500)  # binary, with smuggling bytes
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(700)

AGENCY_HEADERS = [
    "Return-Path: <bounce-7@politie.example>",
    "Received: from mx.politie.example (mx.politie.example [192.0.2.10]) by mx.bin",
    "Authentication-Results: mx.bin.example.nl; dkim=pass header.d=politie.example",
    "DKIM-Signature: v=1; a=rsa-sha256; d=politie.example; s=sel; h=from:subject; bh=AAAA; b=BBBB",
    "From: Wijkagent Jansen <wijkagent.noord@politie.example>",
    "To: agency@bin.example.nl",
    "Cc: geheim.collega@politie.example",
    "Reply-To: prive.jansen@politie.example",
    "X-Originating-IP: [198.51.100.23]",
    "X-Mailer: Outlook 16",
    "Message-ID: <orig-123@politie.example>",
    "Date: Mon, 3 Jun 2024 10:00:00 +0200",
    "Subject: =?utf-8?q?Inbraken_in_de_Stra=C3=9Fe_en_omgeving?=",
    "MIME-Version: 1.0",
]


def eml(*lines: str | bytes, headers: list[str] | None = None) -> bytes:
    """Join header and body lines into a CRLF message."""
    head = CRLF.join(AGENCY_HEADERS if headers is None else headers).encode()
    body = b"\r\n".join(x if isinstance(x, bytes) else x.encode() for x in lines)
    return head + b"\r\n" + body + b"\r\n"


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", CRLF).rstrip()


MIXED = eml(
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "--outer",
    'Content-Type: multipart/alternative; boundary="alt"',
    "",
    "--alt",
    "Content-Type: text/plain; charset=windows-1252",
    "Content-Transfer-Encoding: 8bit",
    "",
    b"Er is ingebroken in caf\xe9 De Hoek. Schade \x80 2000.",
    "--alt",
    'Content-Type: multipart/related; boundary="rel"',
    "",
    "--rel",
    "Content-Type: text/html; charset=utf-8",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    '<html><head><meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3Dutf-8">'
    "</head><body><p>Er is ingebroken in caf=C3=A9 De Hoek.</p>"
    '<img src=3D"cid:logo@politie"></body></html>',
    "--rel",
    "Content-Type: image/png",
    "Content-ID: <logo@politie>",
    "Content-Disposition: inline",
    "X-Attachment-Id: secret-att-id",
    "Content-Transfer-Encoding: base64",
    "",
    b64(PNG),
    "--rel--",
    "--alt--",
    "--outer",
    'Content-Type: application/pdf; name="=?utf-8?q?opsporing_=C3=A9=C3=A9n.pdf?="',
    'Content-Disposition: attachment; filename="=?utf-8?q?opsporing_=C3=A9=C3=A9n.pdf?="',
    "Content-Transfer-Encoding: base64",
    "",
    b64(PDF),
    "--outer--",
)


def source(original: bytes = MIXED, **overrides: str) -> BulletinSource:
    values: dict[str, str] = {
        "sender_name": "Politie Oost-Brabant",
        "list_id": "buurt-noord",
        "list_name": "BIN Noord",
        "domain": "bin.example.nl",
        "subject_prefix": "[BIN Noord]",
        "note": "Let extra op vanavond.\nGroet, Anna",
        "language": "nl",
        "replies_go_to": "de politie en de coördinator",
    }
    values.update(overrides)
    return BulletinSource(original=original, **values)


MEMBER = {
    "to": "piet@example.org",
    "reply_to": "reactie+tok1@bin.example.nl",
    "message_id": "<b1.m1@bin.example.nl>",
    "date": "Tue, 04 Jun 2024 09:00:00 +0200",
}


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=email_policy.default)


def rendered(src: BulletinSource | None = None, **member: str) -> EmailMessage:
    template = BulletinTemplate.build(src or source())
    return parse(template.message_for(**{**MEMBER, **member}))


def decoded_phrase(msg: EmailMessage, name: str) -> str:
    """The display phrase of header ``name`` decoded per RFC 2047 §6.2.

    CPython's address parser keeps the space between two adjacent encoded-words, which
    the RFC (and mail clients) drop, so long encoded names are decoded here instead.
    """
    raw = "".join(str(v) for k, v in msg.raw_items() if k == name).replace("\r\n", "")
    phrase = raw.rpartition(" <")[0].strip()
    if phrase.startswith('"'):
        return phrase[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return str(make_header(decode_header(phrase)))


def text_of(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return cast(str, part.get_content()).replace("\r\n", "\n")


def test_headers_are_the_gateways_own() -> None:
    """The copy carries From/To/Subject/Reply-To/List-* headers built by the gateway."""
    msg = rendered()
    assert msg["From"].addresses[0].display_name == "Politie Oost-Brabant via BIN Noord"
    assert msg["From"].addresses[0].addr_spec == "buurt-noord@bin.example.nl"
    assert msg["To"] == "piet@example.org"
    assert msg["Reply-To"] == "reactie+tok1@bin.example.nl"
    assert msg["Subject"] == "[BIN Noord] Inbraken in de Straße en omgeving"
    assert msg["Message-ID"] == "<b1.m1@bin.example.nl>"
    assert msg["Date"] == MEMBER["date"]
    assert msg["List-Id"] == "BIN Noord <buurt-noord.bin.example.nl>"
    assert msg["List-Unsubscribe"] == "<mailto:buurt-noord+afmelden@bin.example.nl>"
    assert msg["Precedence"] == "list"
    assert msg["X-Loop"] == "buurt-noord@bin.example.nl"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Post"] is None
    assert msg["List-Unsubscribe-Post"] is None
    assert all(len(msg.get_all(name) or []) == 1 for name in msg)


def test_original_headers_do_not_survive() -> None:
    """Trace, auth, X-, Reply-To and Cc headers of the original, and their values, are gone."""
    template = BulletinTemplate.build(source())
    raw = template.message_for(**MEMBER)
    msg = parse(raw)
    for name in ("Return-Path", "Received", "Authentication-Results", "DKIM-Signature", "Cc"):
        assert msg[name] is None, name
    assert not [k for k in msg if k.lower().startswith("x-") and k != "X-Loop"]
    for leak in (
        b"prive.jansen",
        b"geheim.collega",
        b"198.51.100.23",
        b"Outlook 16",
        b"orig-123",
        b"wijkagent.noord",
        b"secret-att-id",
        b"bh=AAAA",
    ):
        assert leak not in raw, leak


def test_note_and_footer_frame_text_and_html() -> None:
    """The coordinator's note is above the original and the footer below it, in both parts."""
    msg = rendered()
    for subtype in ("plain", "html"):
        body = text_of(msg, subtype)
        note = body.index("Noot van de coördinator:")
        assert note < body.index("Groet, Anna") < body.index("ingebroken in café")
        footer = body.index("Bij spoed: bel 112")
        assert body.index("ingebroken in café") < footer
        assert "lid bent van BIN Noord" in body
        assert "buurt-noord+afmelden@bin.example.nl" in body
        assert "de politie en de coördinator" in body
        assert "$" not in body
    assert "Schade € 2000" in text_of(msg, "plain")  # windows-1252 0x80 is the euro sign
    assert "\n-- \n" in text_of(msg, "plain")  # signature delimiter: clients skip it in replies


def test_empty_note_prints_no_note_block() -> None:
    """Without a note, no note label appears."""
    msg = rendered(source(note="  "))
    assert "Noot van de" not in text_of(msg, "plain")
    assert "Noot van de" not in text_of(msg, "html")


def test_note_is_html_escaped() -> None:
    """Markup in the note is shown as text, never injected into the HTML part."""
    html = text_of(rendered(source(note='<script>alert("x")</script>')), "html")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_attachments_and_inline_images_are_byte_identical() -> None:
    """Attachments and related inline images keep their decoded bytes, names and ids."""
    msg = rendered()
    atts = list(msg.iter_attachments())
    assert len(atts) == 1
    assert atts[0].get_filename() == "opsporing één.pdf"
    assert atts[0].get_content_type() == "application/pdf"
    assert atts[0].get_payload(decode=True) == PDF
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    html_part, image = cast(list[EmailMessage], related.get_payload())
    assert "cid:logo@politie" in html_part.get_content()
    assert image["Content-ID"] == "<logo@politie>"
    assert image.get_payload(decode=True) == PNG


def test_body_is_shared_between_members() -> None:
    """Two members get the same body bytes; only their own headers differ."""
    template = BulletinTemplate.build(source())
    one = template.message_for(**MEMBER)
    two = template.message_for(
        to="marie@example.net",
        reply_to="reactie+tok2@bin.example.nl",
        message_id="b1.m2@bin.example.nl",
        date=MEMBER["date"],
    )
    head_one, _, body_one = one.partition(b"\r\n\r\n")
    head_two, _, body_two = two.partition(b"\r\n\r\n")
    assert body_one == body_two == template.body
    assert head_one != head_two
    second = parse(two)
    assert (second["To"], second["Reply-To"], second["Message-ID"]) == (
        "marie@example.net",
        "reactie+tok2@bin.example.nl",
        "<b1.m2@bin.example.nl>",
    )


def test_rendering_is_deterministic() -> None:
    """Building the same source twice gives identical bytes (a crash re-render matches)."""
    assert BulletinTemplate.build(source()) == BulletinTemplate.build(source())


def test_one_click_url_adds_https_and_post_header() -> None:
    """With a one-click URL, List-Unsubscribe lists both URIs and List-Unsubscribe-Post is set."""
    msg = rendered(one_click_url="https://bin.example.nl/afmelden/tok1")
    assert msg["List-Unsubscribe"] == (
        "<mailto:buurt-noord+afmelden@bin.example.nl>, <https://bin.example.nl/afmelden/tok1>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", "piet@example.org\r\nBcc: x@evil.example"),
        ("to", "piet@example.org\nX: y"),
        ("to", "a@example.org, b@evil.example"),
        ("to", "no-at-sign"),
        ("reply_to", "reactie+t@bin.example.nl\r\nX-Evil: 1"),
        ("message_id", "<id@bin.example.nl>\r\nX-Evil: 1"),
        ("message_id", "<id@bin.example.nl"),
        ("date", "Tue, 04 Jun 2024\r\nX-Evil: 1"),
        ("one_click_url", "https://bin.example.nl/u\r\nX-Evil: 1"),
        ("one_click_url", "http://bin.example.nl/u"),
        ("one_click_url", "https://bin.example.nl/u>, <mailto:x@evil.example"),
    ],
)
def test_unsafe_member_values_are_refused(field: str, value: str) -> None:
    """CR/LF and other header-injection material in per-member values raise ValueError."""
    template = BulletinTemplate.build(source())
    with pytest.raises(ValueError, match=field):
        template.headers_for(**{**MEMBER, field: value})


def test_existing_prefix_is_not_doubled() -> None:
    """A subject that already carries the list prefix is not prefixed again."""
    headers = ["From: a@politie.example", "Subject: Re: [bin noord] Fietsen"]
    original = eml("Content-Type: text/plain", "", "tekst", headers=headers)
    assert rendered(source(original))["Subject"] == "Re: [bin noord] Fietsen"


def test_missing_subject_gets_a_neutral_one() -> None:
    """No Subject gives "(geen onderwerp)" in Dutch and "(no subject)" in English."""
    original = eml("Content-Type: text/plain", "", "tekst", headers=["From: a@politie.example"])
    assert rendered(source(original))["Subject"] == "[BIN Noord] (geen onderwerp)"
    english = rendered(source(original, language="en"))
    assert english["Subject"] == "[BIN Noord] (no subject)"
    assert "In an emergency: call 112" in text_of(english, "plain")


def test_bottom_most_subject_wins() -> None:
    """With two Subject headers the bottom-most (the DKIM-signed one) is used."""
    original = eml(
        "Content-Type: text/plain",
        "",
        "tekst",
        headers=["Subject: Gratis iPhone", "From: a@politie.example", "Subject: Echte melding"],
    )
    assert rendered(source(original))["Subject"] == "[BIN Noord] Echte melding"


def test_long_non_ascii_names_encode_and_round_trip() -> None:
    """Long non-ASCII display names, subjects and list names parse back exactly."""
    name = "Gemeente Ötztal-Ünterwössen, afdeling “Veiligheid” & Handhaving (Wijkteam Zuid)"
    subject = "Waarschuwing: oplichters aan de deur in Śródmieście en Ærøskøbing — " * 3
    original = eml(
        "Content-Type: text/plain",
        "",
        "x",
        headers=["From: a@gemeente.example", f"Subject: {subject}"],
    )
    template = BulletinTemplate.build(source(original, sender_name=name, list_name="BIN Zuid-Ö"))
    raw = template.message_for(**MEMBER)
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii()
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    msg = parse(raw)
    assert decoded_phrase(msg, "From") == f"{name} via BIN Zuid-Ö"
    assert msg["From"].addresses[0].addr_spec == "buurt-noord@bin.example.nl"
    assert msg["Subject"] == "[BIN Noord] " + subject.strip()
    assert msg["List-Id"] == "BIN Zuid-Ö <buurt-noord.bin.example.nl>"


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=130),
    subject=st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
)
def test_any_name_and_subject_round_trip(name: str, subject: str) -> None:
    """Whatever the agency name and subject, the headers parse back to the same one-line text."""
    original = b"Subject: " + subject.encode() + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    template = BulletinTemplate.build(source(original, sender_name=name, subject_prefix=""))
    msg = parse(template.message_for(**MEMBER))
    clean = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", name).split())
    assert decoded_phrase(msg, "From") == f"{clean} via BIN Noord".strip()
    assert msg["From"].addresses[0].addr_spec == "buurt-noord@bin.example.nl"
    assert str(msg["Subject"]) == template.subject
    assert "\r" not in template.subject and "\n" not in template.subject


@pytest.mark.parametrize(
    ("headers", "payload", "expected"),
    [
        (
            ["Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: 8bit"],
            b"Caf\xe9 \x80 5",
            "Café € 5",
        ),
        (
            ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
            base64.b64encode("Straße één".encode()),
            "Straße één",
        ),
        (
            [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
            ],
            b"Stra=C3=9Fe =\r\n=C3=A9=C3=A9n",
            "Straße één",
        ),
        (["Content-Type: text/plain; charset=x-unknown-charset"], b"caf\xc3\xa9", "café"),
        (["Content-Type: text/plain"], b"8-bit zonder label: caf\xc3\xa9", "café"),
        (["Content-Type: text/plain; charset=us-ascii"], b"fout label caf\xe9", "fout label caf"),
        # UTF-8 labelled latin-1 (Outlook's habit): the same rule as for members' replies
        (["Content-Type: text/plain; charset=iso-8859-1"], "Straße één".encode(), "Straße één"),
    ],
)
def test_odd_charsets_are_decoded(headers: list[str], payload: bytes, expected: str) -> None:
    """Text in windows-1252, mislabelled, base64 or QP UTF-8 ends up as the right characters."""
    original = eml(*headers, "", payload, headers=["Subject: s"])
    msg = rendered(source(original))
    assert msg.get_content_type() == "text/plain"  # text-only stays text-only
    assert expected in text_of(msg, "plain")


def test_html_only_original_gets_a_text_part() -> None:
    """An HTML-only original becomes text and HTML alternatives, both framed."""
    original = eml(
        "Content-Type: text/html; charset=windows-1252",
        "",
        b'<html><head><meta charset="windows-1252"><style>p{color:red}</style></head>'
        b"<body><h1>Let op</h1><p>Caf\xe9 &amp; bar</p><ul><li>een</li><li>twee</li></ul>"
        b'<p><a href="https://politie.example/tips">tips</a></p></body></html>',
    )
    msg = rendered(source(original))
    assert msg.get_content_type() == "multipart/alternative"
    plain = text_of(msg, "plain")
    assert "Let op\n" in plain and "Café & bar" in plain and "- twee" in plain
    assert "tips (https://politie.example/tips)" in plain
    assert "color:red" not in plain
    html = text_of(msg, "html")
    assert 'charset="utf-8"' in html and "windows-1252" not in html
    assert (
        html.index("Noot van de")
        < html.index("Caf")
        < html.index("Bij spoed")
        < html.index("</body>")
    )


def test_forwarded_message_attachment_is_kept() -> None:
    """A message/rfc822 attachment survives with its own headers and text."""
    inner = "From: burger@example.org\r\nSubject: Melding\r\n\r\nVerdachte auto.\r\n"
    original = eml(
        'Content-Type: multipart/mixed; boundary="m"',
        "",
        "--m",
        "Content-Type: text/plain",
        "",
        "Zie bijlage.",
        "--m",
        "Content-Type: message/rfc822",
        "Content-Disposition: attachment",
        "",
        inner,
        "--m--",
    )
    msg = rendered(source(original))
    attached = next(p for p in msg.walk() if p.get_content_type() == "message/rfc822")
    forwarded = cast(list[EmailMessage], attached.get_payload())[0]
    assert forwarded["Subject"] == "Melding"
    assert "Verdachte auto." in forwarded.get_content()
    assert "Zie bijlage." in text_of(msg, "plain")


def test_signed_content_is_kept_and_signature_dropped() -> None:
    """A multipart/signed original keeps its text; the now-invalid signature is dropped."""
    original = eml(
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="s"',
        "",
        "--s",
        "Content-Type: text/plain",
        "",
        "Getekend bericht.",
        "--s",
        "Content-Type: application/pkcs7-signature",
        "Content-Transfer-Encoding: base64",
        "",
        "AAAA",
        "--s--",
    )
    msg = rendered(source(original))
    assert "Getekend bericht." in text_of(msg, "plain")
    assert not [p for p in msg.walk() if "signature" in p.get_content_type()]


@pytest.mark.parametrize(
    "original",
    [
        b"Subject: kapot\r\nContent-Type: multipart/mixed\r\n\r\nGeen boundary, wel tekst.\r\n",
        b"Subject: kapot\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!nota64",
        b"\xff\xfe\x00garbage without headers\r\n",
        b"",
        b"Subject: =?x-bogus?q?=FF?= =?utf-8?b?////?=\r\nContent-Type: text/plain; "
        b'charset="utf-8\r\n\r\n\x00\x80 tekst\r',
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\nContent-Type: "
        b"multipart/mixed; boundary=a\r\n\r\n" * 200 + b"diep\r\n",
    ],
)
def test_broken_mime_never_raises(original: bytes) -> None:
    """Broken or hostile MIME still renders a bulletin with footer and clean line endings."""
    template = BulletinTemplate.build(source(original))
    msg = parse(template.message_for(**MEMBER))
    assert "Bij spoed: bel 112" in text_of(msg, "plain")
    assert msg["Subject"].startswith("[BIN Noord] ")
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", template.body) is None


def test_body_is_7bit_with_short_crlf_lines() -> None:
    """The shared body is ASCII, CRLF-terminated and has no line over 998 octets."""
    body = BulletinTemplate.build(source()).body
    assert body.isascii()
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", body) is None
    assert max(len(line) for line in body.split(b"\r\n")) <= 998


def test_bad_settings_are_refused() -> None:
    """An unknown language or a list address with specials is a programming error."""
    with pytest.raises(ValueError, match="language"):
        BulletinTemplate.build(source(language="de"))
    with pytest.raises(ValueError, match="list address"):
        BulletinTemplate.build(replace(source(), list_id="buurt noord\r\nBcc: x"))


def test_header_order_ends_with_mime_headers() -> None:
    """headers_for starts with From and ends with MIME-Version, Content-Type, CTE."""
    headers = BulletinTemplate.build(source()).headers_for(**MEMBER)
    names = [name for name, _ in headers]
    assert names[0] == "From"
    assert names[-3:] == ["MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
    assert headers[-2][1].startswith("multipart/mixed;")
    assert all(value.isascii() for _, value in headers)


def test_footer_values_are_escaped_in_html() -> None:
    """Config text with markup shows as text in the HTML footer, in English too."""
    src = source(language="en", list_name="BIN <b>Noord</b> & Co", replies_go_to="the police")
    msg = rendered(src)
    html = text_of(msg, "html")
    assert "BIN &lt;b&gt;Noord&lt;/b&gt; &amp; Co" in html
    assert "<b>Noord</b>" not in html
    assert "In an emergency: call 112." in html
    assert "Coordinator's note:" in text_of(msg, "plain")
    assert decoded_phrase(msg, "List-Id") == "BIN <b>Noord</b> & Co"
