"""The writer's own text: best text part, HTML rendering, quotes and signatures cut."""

from __future__ import annotations

import time
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway.mailtext import (
    LineKind,
    best_text,
    classify_lines,
    decode_bytes,
    html_to_text,
    split_own_text,
)


def _parse(raw: str | bytes) -> Message:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return BytesParser(policy=policy.default).parsebytes(data.replace(b"\n", b"\r\n"))


def _alternative(plain: str, html: str) -> EmailMessage:
    message = EmailMessage()
    message.set_content(plain)
    message.add_alternative(html, subtype="html")
    return message


# --- best_text --------------------------------------------------------------------------


def test_plain_part_wins_over_html() -> None:
    """In multipart/alternative the text/plain part is the text."""
    assert best_text(_alternative("platte tekst", "<p>html tekst</p>")) == "platte tekst"


def test_html_used_when_plain_part_is_empty() -> None:
    """An empty text/plain beside real HTML does not hide the HTML."""
    assert best_text(_alternative("\n \n", "<p>OK</p>")) == "OK"


def test_html_only_message_is_rendered() -> None:
    """An HTML-only message becomes text with entities decoded and tags gone."""
    message = EmailMessage()
    message.set_content("<div>Ja &amp; graag&nbsp;zo</div><div>tweede&#33;</div>", subtype="html")
    assert best_text(message) == "Ja & graag zo\ntweede!"


def test_attachments_and_attached_messages_are_not_the_text() -> None:
    """A text attachment or an attached message/rfc822 is never read as the body."""
    raw = (
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="m"\n\n'
        "--m\nContent-Type: text/plain\n\nmijn tekst\n"
        "--m\nContent-Type: message/rfc822\n\nSubject: x\n\nOK van iemand anders\n"
        '--m\nContent-Type: text/plain\nContent-Disposition: attachment; filename="a.txt"\n\n'
        "OK uit de bijlage\n--m--\n"
    )
    assert best_text(_parse(raw)) == "mijn tekst"


def test_inline_text_parts_around_an_image_are_joined() -> None:
    """Apple Mail's text / image / text body keeps both pieces of text, in order."""
    raw = (
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="m"\n\n'
        "--m\nContent-Type: text/plain\n\nboven\n"
        "--m\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
        "--m\nContent-Type: text/plain\n\nonder\n--m--\n"
    )
    assert best_text(_parse(raw)) == "boven\nonder"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ("charset=windows-1252", b"Nee \x96 foto\x92s", "Nee – foto’s"),
        ("charset=iso-8859-1", b"Caf\xe9 \x93OK\x94", "Café “OK”"),  # mislabelled cp1252
        ("charset=us-ascii", "Oké".encode(), "Oké"),  # mislabelled UTF-8
        ('charset="x-no-such-charset"', "Oké".encode(), "Oké"),
        ("charset=utf-8", b"ok \xff\xfe kapot", "ok ÿþ kapot"),  # bad UTF-8: windows-1252
        ("charset=rot13", b"OK", "OK"),  # a text-to-text codec is not a charset
    ],
)
def test_bad_charsets_still_give_text(headers: str, body: bytes, expected: str) -> None:
    """Wrong, unknown or lying charset labels still produce readable text."""
    raw = f"MIME-Version: 1.0\nContent-Type: text/plain; {headers}\n\n".encode() + body
    assert best_text(_parse(raw)) == expected


def test_quoted_printable_and_base64_are_decoded() -> None:
    """Transfer encodings are undone (QP soft breaks, base64)."""
    qp = "Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain; charset=utf-8"
    assert best_text(_parse(f"{qp}\n\nOk=C3=A9, ga=\n maar\n")) == "Oké, ga maar"
    b64 = "Content-Transfer-Encoding: base64\nContent-Type: text/plain; charset=utf-8"
    assert best_text(_parse(f"{b64}\n\nSmEsIHByaW1h\n")) == "Ja, prima"


def test_format_flowed_lines_are_joined() -> None:
    """RFC 3676 soft breaks are joined, also inside quotes, but not the "-- " line."""
    raw = (
        "Content-Type: text/plain; charset=utf-8; format=flowed\n\n"
        "een lange \nregel\n-- \nJan\n> Op di 3 nov. 2026 schreef \n> X <x@y>:\n"
    )
    assert (
        best_text(_parse(raw)) == "een lange regel\n--\nJan\n> Op di 3 nov. 2026 schreef X <x@y>:"
    )


def test_control_and_invisible_characters_are_removed() -> None:
    """NUL, zero-width spaces and BOMs are dropped; no-break spaces become spaces."""
    raw = "Content-Type: text/plain; charset=utf-8\n\n\ufeff\u200bO\x00K\u00a0ja\n".encode()
    assert best_text(_parse(raw)) == "OK ja"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b'Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: text/plain\n\nOK',
        b"Content-Type: multipart/alternative\n\nno boundary at all\n",
        b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not base64===\n",
        b"Content-Type: text/plain; charset*=''%ff%fe\n\nOK\n",
        b"Subject: \xe9\xff\x00\nContent-Type: text/html\n\n<p>unterminated <b",
        b"Content-Type: message/rfc822\n\nSubject: inner\n\nOK\n",
        b'Content-Type: multipart/mixed; boundary="a"\n\n'
        + b'--a\nContent-Type: multipart/mixed; boundary="a"\n\n' * 60,
    ],
)
def test_broken_mime_never_raises(raw: bytes) -> None:
    """Broken MIME, encodings and structure give a string, never an exception."""
    assert isinstance(best_text(_parse(raw)), str)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_string(data: bytes) -> None:
    """Whatever bytes arrive, best_text returns a string without control characters."""
    text = best_text(_parse(b"Content-Type: text/plain; charset=utf-8\n\n" + data))
    assert "\x00" not in text and "\r" not in text


# --- HTML rendering ---------------------------------------------------------------------


def test_invisible_html_is_dropped() -> None:
    """head, title, style, script, comments and display:none content never show up."""
    html = (
        "<html><head><title>Jan Jansen</title><meta name=author content='Jan'>"
        "<style>p{color:red}</style></head><body><script>var a = 1 < 2;</script>"
        "<!-- Jan Jansen, Dorpsstraat 1 --><p>OK</p>"
        '<div style="display: none">verborgen</div><span hidden>ook weg</span></body></html>'
    )
    assert html_to_text(html) == "OK"


def test_blockquotes_become_quoted_lines() -> None:
    """<blockquote> content gets "> " per level, so it is recognised as quoted."""
    html = "<p>OK</p><blockquote>een<br>twee<blockquote>diep</blockquote>terug</blockquote>na"
    assert html_to_text(html) == "OK\n> een\n> twee\n> > diep\n> terug\nna"


def test_line_breaks_from_br_p_div() -> None:
    """<br>, <p> and <div> end lines; inline tags and source newlines do not."""
    html = "<div>Ja<br>graag</div><p>met <b>vet</b>\n en <a href='x'>link</a></p><div><br></div>z"
    assert html_to_text(html) == "Ja\ngraag\nmet vet en link\n\nz"


def test_gmail_quote_container_is_quoted() -> None:
    """Gmail's gmail_quote div (attribution included) is rendered as quoted text."""
    html = (
        '<div dir="ltr">Akkoord</div><div class="gmail_quote"><div class="gmail_attr">'
        "Op di 3 nov. 2026 schreef X &lt;x@y&gt;:</div><blockquote>OK</blockquote></div>"
    )
    assert html_to_text(html) == "Akkoord\n> Op di 3 nov. 2026 schreef X <x@y>:\n> > OK"


def test_outlook_reply_header_quotes_everything_below() -> None:
    """Below Outlook's divRplyFwdMsg every line is quoted, though it is not nested."""
    html = (
        '<div>Nee</div><div id="divRplyFwdMsg"><b>Van:</b> X<br><b>Verzonden:</b> di</div>'
        "<div>OK van de originele mail</div>"
    )
    assert html_to_text(html) == "Nee\n> Van: X\n> Verzonden: di\n> OK van de originele mail"


def test_signature_containers_get_a_delimiter() -> None:
    """Gmail/Outlook/Apple signature containers start with a "--" line."""
    html = '<div>OK</div><div class="gmail_signature">Jan 06-12345678</div>'
    assert html_to_text(html) == "OK\n--\nJan 06-12345678"


def test_unclosed_head_does_not_swallow_the_body() -> None:
    """A <head> that is never closed ends at <body>."""
    assert html_to_text("<head><meta charset=utf-8><body><p>OK</p>") == "OK"


@pytest.mark.parametrize(
    "html",
    ["<" * 100_000, "<a" * 60_000, "<![CDATA[" * 30_000, "<div>" * 50_000 + "</span>" * 50_000],
)
def test_hostile_html_renders_in_linear_time(html: str) -> None:
    """Input that makes Python 3.11's HTMLParser quadratic (gh-135462) stays fast."""
    started = time.perf_counter()
    html_to_text(html)
    assert time.perf_counter() - started < 3.0


def test_deep_blockquote_nesting_is_bounded() -> None:
    """Thousands of nested quotes do not blow the output up."""
    text = html_to_text("<blockquote>x" * 5000)
    assert max(len(line) for line in text.splitlines()) <= 20


# --- quotes and signatures --------------------------------------------------------------

MOD = "Hallo,\nAntwoord met het woord OK.\nGroet, BIN"
QMOD = "\n".join(f"> {line}" for line in MOD.split("\n"))


@pytest.mark.parametrize(
    ("text", "own"),
    [
        pytest.param(
            f"OK\n\nVerzonden vanaf mijn iPhone\n\n> Op 3 nov. 2026 om 10:12 heeft BIN "
            f"<m@bin.example.nl> het volgende geschreven:\n>\n{QMOD}",
            "OK",
            id="iphone-nl",
        ),
        pytest.param(
            f"Ja\n\n-----Oorspronkelijk bericht-----\nVan: BIN <m@b.nl>\nVerzonden: di\n"
            f"Aan: Jan\nOnderwerp: x\n\n{MOD}",
            "Ja",
            id="outlook-oorspronkelijk",
        ),
        pytest.param(
            f"Yes please\n\n________________________________\nFrom: BIN <m@b.nl>\n"
            f"Sent: Tuesday\nTo: Jan\nSubject: x\n\n{MOD}",
            "Yes please",
            id="outlook-rule-and-english-header",
        ),
        pytest.param(
            f"Akkoord\nVan: BIN <m@b.nl>\nDatum: 3 nov\nOnderwerp: x\n{MOD}",
            "Akkoord",
            id="header-block-without-separator",
        ),
        pytest.param(
            f"Ja\n\nOp di 3 nov. 2026 om 10:12 schreef Moderatie BIN Noord <\n"
            f"moderatie+abc@bin.example.nl>:\n\n{QMOD}",
            "Ja",
            id="gmail-nl-wrapped",
        ),
        pytest.param(
            f"Ja\n\nOp di 3 nov. 2026 om 10:12\nschreef BIN <m@b.nl>:\n{QMOD}",
            "Ja",
            id="gmail-nl-wrapped-before-verb",
        ),
        pytest.param(
            f"Gut\n\nAm Di., 3. Nov. 2026 um 10:12 Uhr schrieb BIN <m@b.nl>:\n{QMOD}",
            "Gut",
            id="german",
        ),
        pytest.param(
            f"Bien\n\nLe mar. 3 nov. 2026 à 10:12, BIN <m@b.nl> a écrit :\n{QMOD}",
            "Bien",
            id="french",
        ),
        pytest.param(
            f"Dobrze\n\nW dniu 3.11.2026 o 10:12, BIN pisze:\n{QMOD}", "Dobrze", id="polish"
        ),
        pytest.param(
            f"On Tue, 3 Nov 2026 at 10:12, BIN <m@b.nl> wrote:\n{QMOD}\n\nApprove\nnote",
            "Approve\nnote",
            id="bottom-post",
        ),
        pytest.param(
            "On Tue, Nov 3, 2026 at 10:12 AM BIN <m@b.nl> wrote:\n> vraag 1\nantwoord 1\n"
            "> vraag 2\nantwoord 2\n",
            "antwoord 1\nantwoord 2",
            id="interleaved",
        ),
        pytest.param(
            f"OK\n-- \nJan Jansen\nDorpsstraat 1\n\n{QMOD}", "OK", id="dash-dash-signature"
        ),
        pytest.param(
            "Prima\n\nMet vriendelijke groet,\n\nPiet de Boer\n06-12345678", "Prima", id="groet"
        ),
        pytest.param("Groetjes, Jan", "Groetjes, Jan", id="greeting-alone-is-own-text"),
        pytest.param(
            "Zoals ik al schreef:\nDe auto staat er weer.",
            "Zoals ik al schreef:\nDe auto staat er weer.",
            id="prose-is-not-an-attribution",
        ),
        pytest.param(
            f"Nee\n\nOp 3 nov. 2026 schreef BIN <m@b.nl>:\n{MOD}\nOK",
            "Nee",
            id="attribution-without-quote-marks",
        ),
        pytest.param(f"OK\nSent from my iPhone\n{QMOD}", "OK", id="sent-from-iphone"),
        pytest.param("OK\n\nVerstuurd vanaf mijn Samsung Galaxy-smartphone.", "OK", id="samsung"),
        pytest.param("OK\n\nOutlook voor Android downloaden", "OK", id="outlook-mobile"),
        pytest.param("OK\nVon meinem iPhone gesendet", "OK", id="german-iphone"),
        pytest.param(
            "Grote schade aan de auto\nGrote schade",
            "Grote schade aan de auto\nGrote schade",
            id="word-starting-like-a-greeting",
        ),
    ],
)
def test_own_text(text: str, own: str) -> None:
    """Quotes, attributions, header blocks and signatures are cut; own lines stay."""
    assert split_own_text(text).own == own


def test_quoted_part_is_returned() -> None:
    """The quote (attribution included) comes back in `quoted`, the signature in neither."""
    result = split_own_text("OK\n-- \nJan\n\nOp 3 nov. 2026 schreef X <x@y>:\n> vraag\n")
    assert result.own == "OK"
    assert result.quoted == "Op 3 nov. 2026 schreef X <x@y>:\n> vraag"
    assert "Jan" not in result.own + result.quoted


def test_every_line_is_classified_once() -> None:
    """classify_lines labels each input line exactly once, in order."""
    text = "OK\n-- \nsig\n> q\nnog"
    lines = classify_lines(text)
    assert [line.text for line in lines] == text.split("\n")
    assert [line.kind for line in lines] == [
        LineKind.OWN,
        LineKind.SIGNATURE,
        LineKind.SIGNATURE,
        LineKind.QUOTED,
        LineKind.OWN,
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_own_text_only_holds_unquoted_input_lines(text: str) -> None:
    """Own text is made of input lines only, never of a ">" line."""
    own = split_own_text(text).own
    source = {line.rstrip() for line in text.replace("\r", "\n").split("\n")}
    for line in own.split("\n"):
        assert not line.lstrip().startswith(">")
        assert line == "" or line in source


def test_large_text_is_split_quickly() -> None:
    """A long reply (tens of thousands of lines) is classified in well under a second each."""
    text = "eigen regel\n> geciteerd\nOp 3 nov. 2026 schreef x\n" * 20_000
    started = time.perf_counter()
    split_own_text(text)
    assert time.perf_counter() - started < 3.0


def test_decode_bytes_never_raises() -> None:
    """decode_bytes falls back to UTF-8, then windows-1252 with replacement."""
    assert decode_bytes(b"\x81\x8d", "nonsense") == "\ufffd\ufffd"
    assert decode_bytes("é".encode(), "") == "é"


def test_lists_and_tables_keep_their_structure() -> None:
    """List items start with "- "; table cells of a row stay apart, rows become lines."""
    html = "<ul><li>een<li>twee</ul><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></table>"
    assert html_to_text(html) == "- een\n- twee\na b\nc"
