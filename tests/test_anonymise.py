"""anonymise: a member's reply rebuilt with nothing of the member in it (flow F4).

Each message is written the way a real client writes it (Gmail, Outlook, Apple Mail,
Thunderbird, Samsung, eM Client; quoted-printable with soft breaks, base64 UTF-8, HTML
only, signed, encrypted, with photos and vCards). The output is read whole: every header
decoded, every text part decoded (also HTML entities and URL escapes), image metadata
listed, plus the raw bytes; none of the member's identity strings may be in it, and the
member's new text must be.
"""

from __future__ import annotations

import base64
import html
import io
import re
import time
import unicodedata
from email import message_from_bytes
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo

from bin_gateway.anonymise import REDACTED, Identity, Policy, Report, anonymise, cut_own_text

MEMBER = "jan.devries@bewoners.example"
NAME = "Jan de Vries"
PHONE = "06-12345678"
IDENTITY = Identity(addresses=(MEMBER,), names=(NAME,))
OWN = "Ik zag gisteren rond 23:00 een rode scooter bij de school."
BULLETIN = "Heeft u een blauwe bestelbus gezien?"
SECRETS = (
    MEMBER, "devries", NAME, "Vries", "12345678", "Dorpsstraat", "192.0.2.77", "laptop-jan",
    "4711", BULLETIN, "bestelbus",
)

MEMBER_HEADERS = (
    "Return-Path: <jan.devries@bewoners.example>\r\n"
    "Received: from laptop-jan.bewoners.example (laptop-jan [192.0.2.77])\r\n"
    "\tby mx.bewoners.example with ESMTPSA; Tue, 3 Nov 2026 10:20:00 +0100\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; d=bewoners.example; s=laptop-jan; b=AAAA\r\n"
    "From: Jan de Vries <jan.devries@bewoners.example>\r\n"
    "To: reactie+t0k3n@bin.example.nl\r\n"
    "Subject: Re: Bulletin 4711 Noord\r\n"
    "Date: Tue, 3 Nov 2026 10:20:00 +0100\r\n"
    "Message-ID: <4711.abc@laptop-jan.bewoners.example>\r\n"
    "X-Originating-IP: [192.0.2.77]\r\n"
    "User-Agent: Mozilla Thunderbird laptop-jan\r\n"
    "Organization: Dorpsstraat 12\r\n"
    "Reply-To: Jan de Vries <jan.devries@bewoners.example>\r\n"
    "Disposition-Notification-To: jan.devries@bewoners.example\r\n"
    "Autocrypt: addr=jan.devries@bewoners.example; keydata=bGFwdG9wLWphbg==\r\n"
    "MIME-Version: 1.0\r\n"
)


# --- reading the output whole ---------------------------------------------------------


def fold(text: str) -> str:
    """Case, diacritics and whitespace folded, as a reader would not notice them."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(bare.split())


def decoded_dump(entity: bytes) -> str:
    """Everything a recipient could read: headers decoded, parts decoded, image metadata,
    and the raw text of the entity (base64 bodies left out: random letters are noise)."""
    out = [line for line in entity.decode("latin-1").split("\r\n")
           if not re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line)]
    message = message_from_bytes(entity, policy=email_policy.compat32)
    for part in message.walk():
        for key, value in part.items():
            out.append(f"{key}: {make_header(decode_header(value))}")
        out.append(str(part.get_filename() or ""))
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_maintype() == "text":
            text = payload.decode(part.get_content_charset() or "utf-8")
            out += [text, html.unescape(text), unquote(text)]
        elif part.get_content_maintype() == "image":
            with Image.open(io.BytesIO(payload)) as image:
                out += [repr(image.info), repr(dict(image.getexif()))]
    return "\n".join(out)


def leaks(entity: bytes, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    dump = fold(decoded_dump(entity))
    return [s for s in secrets if re.search(rf"(?<![a-z]){re.escape(fold(s))}(?![a-z])", dump)]


def text_of(entity: bytes) -> str:
    message = message_from_bytes(entity, policy=email_policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


DEFAULT = Policy()


def run(raw: bytes | str, identity: Identity = IDENTITY,
        policy: Policy = DEFAULT) -> tuple[bytes, Report]:  # fmt: skip
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    entity, report = anonymise(data, identity, policy)
    assert_well_formed(entity)
    return entity, report


def assert_well_formed(entity: bytes) -> None:
    """Only MIME headers, 7-bit, CRLF, parseable."""
    head = entity.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = {line.split(":", 1)[0].lower() for line in head.split("\r\n") if ":" in line}
    assert names <= {"mime-version", "content-type", "content-transfer-encoding"}, names
    assert all(b < 0x80 for b in entity)
    assert b"\n" not in entity.replace(b"\r\n", b"")
    assert max(len(line) for line in entity.split(b"\r\n")) <= 998


def assert_clean(entity: bytes, *present: str, secrets: tuple[str, ...] = SECRETS) -> None:
    assert leaks(entity, secrets) == []
    text = fold(text_of(entity))
    for phrase in present:
        assert fold(phrase) in text, (phrase, text)


# --- client by client -----------------------------------------------------------------

GMAIL = MEMBER_HEADERS + (
    'Content-Type: multipart/alternative; boundary="000000000000a1b2"\r\n\r\n'
    "--000000000000a1b2\r\n"
    'Content-Type: text/plain; charset="UTF-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    f"{OWN}\r\n\r\n"
    "Met vriendelijke groet,\r\nJan de Vries\r\nDorpsstraat 12\r\n06-12345678\r\n\r\n"
    "Op di 3 nov. 2026 om 10:12 schreef Jan de Vries <jan.devries@bewoners.exa=\r\n"
    "mple>:\r\n\r\n"
    f"> {BULLETIN}\r\n"
    "--000000000000a1b2\r\n"
    'Content-Type: text/html; charset="UTF-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    f'<div dir=3D"ltr">{OWN}<br><br>Met vriendelijke groet,<br><div class=3D"gmail_signa=\r\n'
    'ture">Jan de Vries<br>Dorpsstraat 12<br>06-12345678</div></div><br><div class=3D"gm=\r\n'
    'ail_quote"><div class=3D"gmail_attr">Op di 3 nov. 2026 om 10:12 schreef Jan de Vries=\r\n'
    ' &lt;<a href=3D"mailto:jan.devries@bewoners.example">jan.devries@bewoners.example</a>&gt=\r\n'
    f';:<br></div><blockquote class=3D"gmail_quote">{BULLETIN}</blockquote></div>\r\n'
    "--000000000000a1b2--\r\n"
)


def test_gmail_reply_keeps_only_the_new_text() -> None:
    entity, report = run(GMAIL)
    assert_clean(entity, OWN, "Met vriendelijke groet,")
    assert report.own_text and report.quote_removed and report.signature_removed
    assert not report.encrypted and report.dropped == ()
    assert b"multipart/alternative" in entity  # HTML in, HTML (rebuilt) out


def test_output_html_is_rebuilt_from_the_clean_text() -> None:
    entity, _ = run(GMAIL)
    message = message_from_bytes(entity, policy=email_policy.default)
    page = message.get_body(("html",))
    assert page is not None
    markup = str(page.get_content())
    tags = set(re.findall(r"</?([a-zA-Z!]+)", markup))
    assert tags <= {"!DOCTYPE", "html", "head", "meta", "body", "p", "br"}
    assert "href" not in markup and "class=" not in markup and "mailto" not in markup
    assert html.escape(OWN) in markup


OUTLOOK_DESKTOP = MEMBER_HEADERS.replace("User-Agent: Mozilla Thunderbird laptop-jan\r\n", "") + (
    "Thread-Index: AQHZ1234laptopjan==\r\nX-MS-Has-Attach: yes\r\n"
    "X-MS-Exchange-Organization-AuthSource: LAPTOP-JAN.bewoners.example\r\n"
    'Content-Type: multipart/related; boundary="_rel_"; type="multipart/alternative"\r\n\r\n'
    "--_rel_\r\n"
    'Content-Type: multipart/alternative; boundary="_alt_"\r\n\r\n'
    "--_alt_\r\n"
    'Content-Type: text/plain; charset="iso-8859-1"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    "Goedemorgen,\r\n\r\nDe scooter stond er om 23:00 ook al.\r\n\r\n"
    "Met vriendelijke groet,\r\n\r\nJan de Vries\r\nNotaris | Dorpsstraat 12\r\n"
    "T 06-12345678\r\n[cid:image001.png@01DA0F5E.3B7C1230]\r\n\r\n"
    "-----Oorspronkelijk bericht-----\r\nVan: Politie Noord <reactie+t0k3n@bin.example.nl>\r\n"
    "Verzonden: dinsdag 3 november 2026 10:12\r\n"
    "Aan: Jan de Vries <jan.devries@bewoners.example>\r\n"
    f"Onderwerp: Bulletin 4711 Noord\r\n\r\n{BULLETIN}\r\n"
    "--_alt_\r\n"
    'Content-Type: text/html; charset="iso-8859-1"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    '<html><head><meta name=3D"Generator" content=3D"Microsoft Word 15"></head><body>'
    "<p>Goedemorgen,</p><p>De scooter stond er om 23:00 ook al.</p>"
    "<p>Met vriendelijke groet,</p><p>Jan de Vries<br>Notaris | Dorpsstraat 12<br>"
    'T 06-12345678<br><img src=3D"cid:image001.png@01DA0F5E.3B7C1230" alt=3D"Notariskantoor =\r\n'
    'De Vries"></p><div style=3D"border:none;border-top:solid #E1E1E1 1.0pt">'
    "<p><b>Van:</b> Politie Noord &lt;reactie+t0k3n@bin.example.nl&gt;<br>"
    "<b>Verzonden:</b> dinsdag 3 november 2026 10:12<br>"
    "<b>Aan:</b> Jan de Vries &lt;jan.devries@bewoners.example&gt;<br>"
    f"<b>Onderwerp:</b> Bulletin 4711 Noord</p></div><p>{BULLETIN}</p>"
    '<p><img src=3D"cid:image002.jpg@01DA0F5E.3B7C1230"></p></body></html>\r\n'
    "--_alt_--\r\n"
    "--_rel_\r\n"
    "Content-Type: image/png; name=\"image001.png\"\r\n"
    "Content-ID: <image001.png@01DA0F5E.3B7C1230>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "{logo}\r\n"
    "--_rel_\r\n"
    "Content-Type: image/jpeg; name=\"image002.jpg\"\r\n"
    "Content-ID: <image002.jpg@01DA0F5E.3B7C1230>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "{logo}\r\n"
    "--_rel_--\r\n"
)


def png_bytes(size: tuple[int, int] = (40, 20), text: str = "") -> bytes:
    info = PngInfo()
    if text:
        info.add_text("Author", text)
        info.add_itxt("Description", text)
    out = io.BytesIO()
    Image.new("RGBA", size, (10, 20, 200, 255)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_outlook_desktop_signature_logo_and_quoted_images_are_dropped() -> None:
    logo = base64.b64encode(png_bytes(text="Notariskantoor De Vries")).decode()
    entity, report = run(OUTLOOK_DESKTOP.replace("{logo}", logo))
    assert_clean(entity, "De scooter stond er om 23:00 ook al.",
                 secrets=(*SECRETS, "Notaris", "image001", "AQHZ", "Thread-Index"))
    assert report.images_kept == 0
    assert report.dropped == ("afbeelding uit ondertekening of citaat (2×)",)
    assert report.quote_removed and report.signature_removed


OUTLOOK_WEB_HTML_ONLY = MEMBER_HEADERS + (
    'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + base64.encodebytes(
        (
            '<html><head><meta name="author" content="Jan de Vries"><title>Jan de Vries '
            "thuis</title><!-- sent from laptop-jan --></head><body>"
            '<div id="divtagdefaultwrapper">'
            "<p>Ik heb ook iets gezien: een man met een rode jas.</p>"
            '<div style="display:none">Jan de Vries, Dorpsstraat 12</div>'
            '<div hidden>06-12345678</div>'
            '<img src="https://tracker.example/p.gif?u=jan.devries" width="1" height="1" '
            'alt="Jan de Vries">'
            '<p>Mail <a href="mailto:jan.devries@bewoners.example">mij</a> gerust.</p></div>'
            '<hr><div id="divRplyFwdMsg"><b>From:</b> Politie Noord<br><b>Sent:</b> '
            "Tuesday, November 3, 2026<br><b>To:</b> Jan de Vries &lt;jan.devries@"
            f"bewoners.example&gt;<br><b>Subject:</b> Bulletin 4711</div><p>{BULLETIN}</p>"
            "</body></html>"
        ).encode()
    ).decode().replace("\n", "\r\n")
)


def test_html_only_hidden_content_is_not_relayed() -> None:
    entity, report = run(OUTLOOK_WEB_HTML_ONLY)
    assert_clean(entity, "een man met een rode jas", "gerust",
                 secrets=(*SECRETS, "tracker", "thuis", "laptop"))
    assert b"multipart/alternative" in entity
    assert b"<img" not in entity and b"href" not in entity
    assert report.own_text and report.quote_removed


def jpeg_with_metadata(size: tuple[int, int] = (64, 48)) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Artist] = "Jan de Vries"
    exif[ExifTags.Base.Copyright] = "Jan de Vries"
    exif[ExifTags.Base.Model] = "iPhone 15 laptop-jan"
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: shown rotated by 90 degrees
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 5.0, 30.0), 3: "E", 4: (5.0, 7.0, 12.0)}
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(
        out, "JPEG", exif=exif, comment=b"Jan de Vries",
        xmp=b"<x:xmpmeta><dc:creator>Jan de Vries</dc:creator></x:xmpmeta>",
    )
    return out.getvalue()


def jpeg_markers(data: bytes) -> list[int]:
    """The JPEG segment markers before the image data."""
    markers, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: the rest is image data
            break
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return markers


def png_chunks(data: bytes) -> set[bytes]:
    chunks, i = set(), 8
    while i + 8 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        chunks.add(data[i + 4 : i + 8])
        i += 12 + length
    return chunks


def images_of(entity: bytes) -> list[tuple[str, str, bytes]]:
    message = message_from_bytes(entity, policy=email_policy.compat32)
    found = []
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if part.get_content_maintype() == "image" and isinstance(payload, bytes):
            found.append((part.get_content_type(), str(part.get_filename()), payload))
    return found


def apple_mail(photo: bytes) -> str:
    vcard = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Vries;Jan;de;;\r\nFN:Jan de Vries\r\n"
        "ADR;TYPE=HOME:;;Dorpsstraat 12;Eindhoven;;5611 AA;\r\nTEL;TYPE=CELL:06-12345678\r\n"
        "EMAIL:jan.devries@bewoners.example\r\nEND:VCARD\r\n"
    )
    return MEMBER_HEADERS + (
        'Content-Type: multipart/mixed; boundary="Apple-Mail-1"\r\n\r\n'
        "--Apple-Mail-1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Hier is een foto van de scooter.\r\n\r\n"
        "--Apple-Mail-1\r\nContent-Type: image/jpeg; name=\"Jan de Vries IMG_0001.jpeg\"\r\n"
        'Content-Disposition: inline; filename="Jan de Vries IMG_0001.jpeg"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.encodebytes(photo).decode()}\r\n"
        "--Apple-Mail-1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Verzonden vanaf mijn iPhone\r\n\r\n"
        "> Op 3 nov. 2026 om 10:12 heeft Politie Noord <reactie+t0k3n@bin.example.nl> het vo=\r\n"
        f"lgende geschreven:\r\n>\r\n> {BULLETIN}\r\n\r\n"
        "--Apple-Mail-1\r\nContent-Type: text/directory; name=\"Jan de Vries.vcf\"\r\n"
        'Content-Disposition: attachment; filename="Jan de Vries.vcf"\r\n\r\n'
        f"{vcard}\r\n"
        "--Apple-Mail-1--\r\n"
    )


def test_iphone_photo_is_re_encoded_without_any_metadata() -> None:
    entity, report = run(apple_mail(jpeg_with_metadata()))
    assert_clean(entity, "Hier is een foto van de scooter.",
                 secrets=(*SECRETS, "IMG_0001", "5611", "iPhone"))
    assert report.images_kept == 1 and report.signature_removed and report.quote_removed
    assert report.dropped == ("visitekaartje (vCard)",)
    assert "[Niet doorgestuurd: visitekaartje (vCard)]" in text_of(entity)
    [(ctype, name, data)] = images_of(entity)
    assert (ctype, name) == ("image/jpeg", "foto-1.jpg")
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
        assert image.size == (48, 64)  # turned upright before the orientation tag went
    assert b"Jan de Vries" not in data and b"Exif" not in data and b"xmp" not in data
    assert set(jpeg_markers(data)) <= {0xE0, 0xDB, 0xC0, 0xC4, 0xDA}  # no APPn, no COM


def test_inline_photo_in_the_own_html_text_is_kept() -> None:
    photo = base64.encodebytes(jpeg_with_metadata()).decode()
    raw = MEMBER_HEADERS + multipart(
        "alternative",
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{OWN}\r\n",
        multipart(
            "related",
            f'Content-Type: text/html\r\n\r\n<div>{OWN}<br><img src="cid:F00D@mac" '
            'alt="Jan de Vries"></div><div>Verzonden vanaf mijn iPhone</div><blockquote '
            f'type="cite">{BULLETIN}<img src="cid:LOGO@politie"></blockquote>',
            "Content-Type: image/jpeg; name=IMG_1.jpeg\r\nContent-ID: <f00d@mac>\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{photo}",
            "Content-Type: image/jpeg; name=logo.jpeg\r\nContent-ID: <LOGO@politie>\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{photo}",
        ),
    )
    entity, report = run(raw, Identity(("Jan de Vries <jan.devries@bewoners.example>",), ()))
    assert_clean(entity, OWN)
    assert report.images_kept == 1
    assert report.dropped == ("afbeelding uit ondertekening of citaat",)


def test_png_text_chunks_are_gone() -> None:
    message = EmailMessage()
    message["From"] = f"{NAME} <{MEMBER}>"
    message.set_content("Zie de schermafdruk.\n")
    message.add_attachment(png_bytes(text="Jan de Vries, Dorpsstraat 12"), maintype="image",
                           subtype="png", filename="Jan de Vries.png")
    entity, report = run(message.as_bytes())
    assert_clean(entity, "Zie de schermafdruk.")
    [(ctype, name, data)] = images_of(entity)
    assert (ctype, name) == ("image/png", "foto-1.png")
    assert png_chunks(data) <= {b"IHDR", b"IDAT", b"IEND"}
    assert b"Vries" not in data and report.images_kept == 1


THUNDERBIRD = MEMBER_HEADERS + (
    "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "On 11/3/26 10:12, Politie Noord wrote:\r\n"
    f"> {BULLETIN}\r\n\r\n"
    "Yes, I saw a red scooter there around 23:00, the driver wore a \r\n"
    "white helmet.\r\n\r\n"
    "-- \r\nJan de Vries\r\nDorpsstraat 12, Eindhoven\r\n+31 6 12345678\r\n"
)


def test_thunderbird_bottom_post_with_flowed_text_and_signature() -> None:
    entity, report = run(THUNDERBIRD, policy=Policy(language="en"))
    assert_clean(entity, "the driver wore a white helmet.")
    assert report.signature_removed and report.quote_removed
    assert b"multipart" not in entity  # plain in, plain out


SAMSUNG = MEMBER_HEADERS + (
    "Return-Receipt-To: jan.devries@bewoners.example\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + base64.encodebytes(
        (
            "Ja, die bus heb ik ook gezien bij de Lidl.\n\n\n"
            "Verzonden vanaf mijn Samsung Galaxy-smartphone.\n\n"
            "-------- Oorspronkelijk bericht --------\nVan: Politie Noord "
            "<reactie+t0k3n@bin.example.nl>\nDatum: 03-11-2026 10:12 (GMT+01:00)\n"
            f"Aan: Jan de Vries <jan.devries@bewoners.example>\nOnderwerp: Bulletin 4711\n\n"
            f"{BULLETIN}\n"
        ).encode()
    ).decode().replace("\n", "\r\n")
)


def test_samsung_base64_with_original_message_block() -> None:
    entity, report = run(SAMSUNG)
    assert_clean(entity, "Ja, die bus heb ik ook gezien bij de Lidl.")
    assert report.quote_removed and report.signature_removed


def test_quoted_printable_address_with_soft_break_is_redacted() -> None:
    raw = MEMBER_HEADERS + (
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Mijn andere adres is jan.devries=40bewo=\r\nners.example en mijn werk: j.de.vries=\r\n"
        "=40notaris.example, of j.devries(at)bewoners(dot)example.\r\n"
    )
    entity, report = run(raw)
    assert_clean(entity, "Mijn andere adres is", secrets=(*SECRETS, "notaris"))
    assert report.identity_redacted >= 2 and report.addresses_redacted >= 1


def test_base64_utf8_names_with_diacritics() -> None:
    identity = Identity(
        addresses=("jose.nunez@bewoners.example",),
        names=("=?utf-8?b?Sm9zw6kgTnXDscOpei3DmHJzdGVk?=", '"Núñez-Ørsted, José"'),
    )
    body = ("Groeten van JOSE nunez-orsted: ik, José Núñez, zag het.\n"
            "Orsted is mijn achternaam; Ørsted ook.\n")
    raw = (
        "From: =?utf-8?b?Sm9zw6kgTnXDscOpei3DmHJzdGVk?= <jose.nunez@bewoners.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body.encode()).decode()
    )
    entity, report = run(raw, identity)
    text = text_of(entity)
    assert leaks(entity, ("José", "Jose", "Núñez", "Nunez", "Ørsted", "Orsted")) == []
    assert "ik, [afgeschermd] [afgeschermd], zag het." in text
    assert report.identity_redacted == 5


# --- parts that are never passed on ---------------------------------------------------


def multipart(subtype: str, *parts: str, extra: str = "") -> str:
    boundary = f"b-{subtype}-{len(parts)}"
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return (f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra}\r\n\r\n'
            f"{body}--{boundary}--\r\n")


PLAIN = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{OWN}\r\n"


def test_calendar_invite_is_dropped() -> None:
    ics = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nORGANIZER;CN=Jan de Vries:mailto:"
           "jan.devries@bewoners.example\r\nLOCATION:Dorpsstraat 12\r\nEND:VEVENT\r\n"
           "END:VCALENDAR")
    raw = MEMBER_HEADERS + multipart(
        "alternative", PLAIN, f"Content-Type: text/html\r\n\r\n<p>{OWN}</p>",
        f"Content-Type: text/calendar; method=REQUEST\r\n\r\n{ics}",
    )
    entity, report = run(raw)
    assert_clean(entity, OWN)
    assert report.dropped == ("agenda-uitnodiging",)


def test_smime_signed_reply_keeps_text_and_drops_the_signature() -> None:
    p7s = base64.encodebytes(b"0\x82\x03\x00CN=Jan de Vries/emailAddress=" + MEMBER.encode())
    raw = MEMBER_HEADERS + multipart(
        "signed", PLAIN,
        "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n{p7s.decode()}",
        extra='; protocol="application/pkcs7-signature"; micalg=sha-256',
    )
    entity, report = run(raw)
    assert_clean(entity, OWN)
    assert report.dropped == ("digitale handtekening",) and report.own_text


def test_pgp_mime_signed_reply_with_key_attached() -> None:
    inner = multipart(
        "mixed", PLAIN,
        "Content-Type: application/pgp-keys; name=\"OpenPGP_0xJANDEVRIES.asc\"\r\n"
        'Content-Disposition: attachment; filename="OpenPGP_0xJANDEVRIES.asc"\r\n\r\n'
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nJan de Vries\r\n"
        "-----END PGP PUBLIC KEY BLOCK-----",
        extra='; protected-headers="v1"',
    )
    raw = MEMBER_HEADERS + multipart(
        "signed", inner,
        "Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n\r\n"
        "-----BEGIN PGP SIGNATURE-----\r\nwsB5BAABCAAjFiEE\r\n-----END PGP SIGNATURE-----",
        extra='; protocol="application/pgp-signature"; micalg=pgp-sha256',
    )
    entity, report = run(raw)
    assert_clean(entity, OWN, secrets=(*SECRETS, "JANDEVRIES", "wsB5"))
    assert report.dropped == ("PGP-sleutel", "digitale handtekening")


def test_inline_pgp_clearsigned_text() -> None:
    raw = MEMBER_HEADERS + (
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\n"
        f"{OWN}\r\n- -- dash-escaped line\r\n"
        "-----BEGIN PGP SIGNATURE-----\r\n\r\niQEzBAEBCAAdFiEEjan\r\n=ab12\r\n"
        "-----END PGP SIGNATURE-----\r\n"
    )
    entity, report = run(raw)
    assert_clean(entity, OWN, "-- dash-escaped line", secrets=(*SECRETS, "PGP", "iQEz"))
    assert report.dropped == ("digitale handtekening",)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(multipart(
            "encrypted", "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1",
            "Content-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
            "hQEMA\r\n-----END PGP MESSAGE-----",
            extra='; protocol="application/pgp-encrypted"'), id="pgp-mime"),
        pytest.param(
            'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggFA\r\n",
            id="smime"),
        pytest.param("Content-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n"
                     "hQEMA1234\r\n-----END PGP MESSAGE-----\r\n", id="inline-pgp"),
    ],
)
def test_encrypted_reply_is_unreadable(body: str) -> None:
    entity, report = run(MEMBER_HEADERS + body)
    assert report.encrypted and not report.own_text and report.dropped == ()
    assert leaks(entity, (*SECRETS, "hQEMA", "MIAGCSq")) == []
    assert "versleuteld" in text_of(entity)


def test_attached_message_and_files_are_dropped_with_a_note() -> None:
    inner = (
        "From: Piet Buurman <piet@buren.example>\r\nTo: Jan de Vries <jan.devries@"
        "bewoners.example>\r\nReceived: from host [198.51.100.9]\r\nSubject: Buurtapp\r\n\r\n"
        "Hoi Jan, bel me op 06-87654321.\r\n"
    )
    raw = MEMBER_HEADERS + multipart(
        "mixed", PLAIN,
        f"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n{inner}",
        'Content-Type: application/pdf; name="Aangifte Jan de Vries.pdf"\r\n'
        'Content-Disposition: attachment; filename="Aangifte Jan de Vries.pdf"\r\n\r\n'
        "%PDF-1.4 /Author (Jan de Vries)",
        'Content-Type: text/plain; name="notities.txt"\r\n'
        'Content-Disposition: attachment; filename="notities.txt"\r\n\r\nDorpsstraat 12',
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;"
        ' name="brief.docx"\r\n\r\nPK',
        'Content-Type: image/heic; name="IMG_0002.HEIC"\r\n\r\nftypheic',
        'Content-Type: application/pdf; name="b.pdf"\r\n\r\n%PDF-1.4',
    )
    entity, report = run(raw)
    assert_clean(entity, OWN, secrets=(*SECRETS, "Piet", "buren", "87654321", "198.51.100.9",
                                       "Aangifte", "notities", "IMG_0002"))
    assert report.dropped == (
        "doorgestuurd bericht", "PDF-bestand (2×)", "tekstbestand",
        "document (Word, ODT of RTF)", "foto in HEIC-formaat",
    )
    assert text_of(entity).rstrip().endswith(
        "[Niet doorgestuurd: doorgestuurd bericht, PDF-bestand (2×), tekstbestand, "
        "document (Word, ODT of RTF), foto in HEIC-formaat]"
    )


def test_english_notes() -> None:
    raw = MEMBER_HEADERS + multipart(
        "mixed", PLAIN, "Content-Type: text/vcard\r\n\r\nBEGIN:VCARD\r\nEND:VCARD")
    entity, report = run(raw, policy=Policy(language="en"))
    assert report.dropped == ("contact card (vCard)",)
    assert "[Not passed on: contact card (vCard)]" in text_of(entity)


@pytest.mark.parametrize(
    ("intro", "separator"),
    [
        ("Kijk hier eens naar.", "---------- Doorgestuurd bericht ---------"),
        ("Look at this.", "---------- Forwarded message ---------"),
        ("Zie hieronder.", "Begin doorgestuurd bericht:"),
        ("Schau mal.", "---------- Weitergeleitete Nachricht ---------"),
    ],
)
def test_inline_forward_is_cut_and_noted(intro: str, separator: str) -> None:
    raw = MEMBER_HEADERS + (
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{intro}\r\n\r\n{separator}\r\n"
        "Van: Piet Buurman <piet@buren.example>\r\nDatum: di 3 nov 2026\r\n"
        "Onderwerp: auto\r\nAan: Jan de Vries <jan.devries@bewoners.example>\r\n\r\n"
        "Bel me op 06-87654321\r\n"
    )
    entity, report = run(raw)
    assert_clean(entity, intro, secrets=(*SECRETS, "Piet", "87654321"))
    assert report.dropped == ("doorgestuurd bericht",)


# --- the text rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "own", "kept"),
    [
        ("Ik zag het ook.\n\nMet vriendelijke groet,\nJan de Vries\nDorpsstraat 12\n"
         "06-12345678", "Ik zag het ook.\n\nMet vriendelijke groet,", True),
        ("Ik zag het ook.\nGroetjes, Jantje\nDorpsstraat 12", "Ik zag het ook.\nGroetjes,",
         True),
        ("Ik zag het ook.\nMvg Jantje de Boer\nDorpsstraat 12", "Ik zag het ook.\nMvg", True),
        ("Seen it too.\n\nKind regards,\nJantje\n+44 20 7946 0958", "Seen it too.\n\n"
         "Kind regards,", True),
        ("Cheers\nJantje", "Cheers", False),  # a greeting alone is nothing of one's own
        ("Groeten uit Utrecht, het was daar ook raak.", "Groeten uit Utrecht, het was daar "
         "ook raak.", True),
        ("Best wel eng allemaal.\nGroet,\nJantje", "Best wel eng allemaal.\nGroet,", True),
        ("Grote schade aan de auto.", "Grote schade aan de auto.", True),
    ],
)
def test_undelimited_signature_after_a_greeting(text: str, own: str, kept: bool) -> None:
    cut = cut_own_text(text)
    assert cut.own == own
    assert bool(cut.substance) is kept


@pytest.mark.parametrize(
    ("text", "own"),
    [
        ("Ik zag het ook.\n\nJan de Vries\nDorpsstraat 12\n5611 AA Eindhoven\n06-12345678",
         "Ik zag het ook."),
        ("Ik zag het ook.\n\nJan | 06-12345678", "Ik zag het ook."),
        ("Bel me:\n06-12345678\nDe auto was rood en stond bij de kerk.",
         f"Bel me:\n{REDACTED}\nDe auto was rood en stond bij de kerk."),
        ("06-12345678", REDACTED),  # nothing before it: not a signature
    ],
)
def test_signature_recognised_by_the_name_line(text: str, own: str) -> None:
    entity, report = run(f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n",
                         Identity((MEMBER,), (NAME, "Jan")))
    assert text_of(entity).strip() == own
    assert report.signature_removed is (own != text and "Bel" not in own and own != REDACTED)


@pytest.mark.parametrize(
    "attribution",
    [
        "Op di 3 nov. 2026 om 10:12 schreef Jan de Vries <jan.devries@bewoners.example>:",
        "Op di 3 nov. 2026 om 10:12 schreef Jan de Vries <\njan.devries@bewoners.example>:",
        "On Tue, Nov 3, 2026 at 10:12 AM Jan de Vries <jan.devries@bewoners.example> wrote:",
        "Am Di., 3. Nov. 2026 um 10:12 Uhr schrieb Jan de Vries <jan.devries@bewoners.example>:",
        "Le mar. 3 nov. 2026 à 10:12, Jan de Vries <jan.devries@bewoners.example> a écrit :",
        "W dniu 3.11.2026 o 10:12, Jan de Vries pisze:",
        "Jan de Vries <jan.devries@bewoners.example> schreef:",
    ],
)
def test_attributions_naming_the_member_are_cut(attribution: str) -> None:
    text = f"{OWN}\n\n{attribution}\n> {BULLETIN}\n>> Op 2 nov. schreef Jan de Vries <\n" \
           "> jan.devries@bewoners.example>:\n"
    entity, report = run(MEMBER_HEADERS + f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}")
    assert_clean(entity, OWN)
    assert report.identity_redacted == 0  # cut with the quote, not redacted: nothing left


def test_em_client_original_message_block() -> None:
    raw = MEMBER_HEADERS + (
        "Content-Type: text/plain; charset=utf-8\r\n\r\nKlopt, ik zag hem ook.\r\n\r\n"
        "------ Origineel bericht ------\r\nVan \"Jan de Vries\" <jan.devries@bewoners.example>"
        "\r\nAan \"Politie Noord\" <reactie+t0k3n@bin.example.nl>\r\nDatum 3-11-2026 10:12:00"
        f"\r\nOnderwerp Bulletin 4711\r\n\r\n{BULLETIN}\r\n"
    )
    entity, report = run(raw)
    assert_clean(entity, "Klopt, ik zag hem ook.")
    assert report.quote_removed


@pytest.mark.parametrize(
    "phone",
    ["06-12345678", "06 1234 5678", "0612345678", "+31 6 12345678", "+31612345678",
     "0031 6 12345678", "+31 (0)6 1234 5678", "020-1234567", "(020) 123 45 67",
     "0800-0123", "+32 470 12 34 56", "+49 30 1234567", "06–1234 5678", "06.12.34.56.78",
     "0 6 1 2 3 4 5 6 7 8", "tel:+31612345678", "https://wa.me/31612345678"],
)
def test_phone_numbers_are_redacted(phone: str) -> None:
    raw = f"Content-Type: text/plain; charset=utf-8\r\n\r\nBel mij op {phone} vanavond.\r\n"
    entity, report = run(raw)
    assert text_of(entity).strip() == f"Bel mij op {REDACTED} vanavond."
    assert report.phones_redacted == 1


@pytest.mark.parametrize(
    "text",
    ["Op 12-03-2026 om 14:00 reed hij weg.", "Om 14.30 uur bij huisnummer 112.",
     "Postcode 5611 AA, kenteken 12-ABC-3.", "Tussen 10.00 - 12.00 uur.", "Bel 112!"],
)
def test_dates_times_and_numbers_are_not_phone_numbers(text: str) -> None:
    entity, report = run(f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n")
    assert text_of(entity).strip() == text and report.phones_redacted == 0


def test_other_contact_details_stay_when_the_list_allows_them() -> None:
    raw = (f"Content-Type: text/plain; charset=utf-8\r\n\r\nMail piet@buren.example of bel "
           f"06-87654321. Of mij: {MEMBER}, Jan de Vries.\r\n")
    entity, report = run(raw, policy=Policy(redact_contact_details=False))
    text = text_of(entity)
    assert "piet@buren.example" in text and "06-87654321" in text
    assert leaks(entity) == [] and report.identity_redacted == 2
    assert (report.addresses_redacted, report.phones_redacted) == (0, 0)
    entity, report = run(raw)
    assert "piet" not in text_of(entity) and "87654321" not in text_of(entity)
    assert (report.addresses_redacted, report.phones_redacted) == (1, 1)


def test_particles_alone_are_never_redacted() -> None:
    raw = "Content-Type: text/plain\r\n\r\nDe auto van de buren stond bij het huis van der Berg."
    entity, _ = run(raw, Identity((), ("Vries, Jan van der", "van", "de", "Het")))
    assert "De auto van de buren stond bij het huis van der Berg." in text_of(entity)


def test_a_single_text_part_is_the_body_whatever_its_name() -> None:
    raw = f'Content-Type: text/plain; name="bericht.txt"\r\n\r\n{OWN}\r\n'
    entity, report = run(raw)
    assert OWN in text_of(entity) and report.own_text and report.dropped == ()


@pytest.mark.parametrize(
    "names",
    [("Jan de Vries",), ("Vries, Jan de",), ('"de Vries, Jan"',), ("=?utf-8?q?Jan_de_Vries?=",),
     ("", "Jan de Vries"), ("J. de Vries", "Jan de Vries"),
     ("Jan de Vries <jan.devries@bewoners.example>",)],
)
def test_name_forms(names: tuple[str, ...]) -> None:
    raw = ("Content-Type: text/plain; charset=utf-8\r\n\r\nIk ben JAN DE VRIES, "
           "jan  de\nvries, De Vries, JanDeVries, devries, Jan_de_Vries.jpg, in januari.\r\n")
    entity, _ = run(raw, Identity((MEMBER,), names))
    text = text_of(entity)
    assert "vries" not in text.lower() and "januari" in text


def test_quote_only_reply_has_no_own_text() -> None:
    raw = MEMBER_HEADERS + (
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Op di 3 nov. 2026 om 10:12 schreef Politie Noord <x@bin.example.nl>:\r\n> {BULLETIN}"
        "\r\n\r\nVerzonden vanaf mijn iPhone\r\n"
    )
    entity, report = run(raw)
    assert not report.own_text and report.quote_removed and not report.encrypted
    assert leaks(entity) == []


# --- images: limits ---------------------------------------------------------------------


def test_at_most_ten_images_downscaled() -> None:
    message = EmailMessage()
    message.set_content("Foto's van de schade.\n")
    big = io.BytesIO()
    Image.new("RGB", (3000, 1000), (1, 2, 3)).save(big, "JPEG")
    message.add_attachment(b"not an image", maintype="image", subtype="png", filename="y.png")
    for n in range(12):
        message.add_attachment(big.getvalue() if n == 0 else png_bytes(), maintype="image",
                               subtype="jpeg" if n == 0 else "png", filename=f"x{n}.img")
    entity, report = run(message.as_bytes())
    assert report.images_kept == 10
    assert report.dropped == ("afbeelding die niet te lezen was", "foto (meer dan 10) (2×)")
    names = [name for _, name, _ in images_of(entity)]
    assert names == ["foto-1.jpg", *(f"foto-{n}.png" for n in range(2, 11))]
    with Image.open(io.BytesIO(images_of(entity)[0][2])) as first:
        assert first.size == (2048, 683)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_dropped() -> None:
    message = EmailMessage()
    message.set_content("Kijk.\n")
    for size in ((20000, 10000), (10000, 9000)):
        bomb = io.BytesIO()
        Image.new("1", size).save(bomb, "PNG")
        message.add_attachment(bomb.getvalue(), maintype="image", subtype="png")
    _, report = run(message.as_bytes())
    assert report.images_kept == 0
    assert report.dropped == ("afbeelding die niet te lezen was (2×)",)


def test_image_only_reply_is_own_content() -> None:
    message = EmailMessage()
    message.set_content("\n> quoted bulletin\n")
    message.add_attachment(jpeg_with_metadata(), maintype="image", subtype="jpeg")
    _, report = run(message.as_bytes())
    assert report.own_text and report.images_kept == 1


# --- hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
        b"Content-Type: text/plain; charset=x-unknown-7\r\n\r\nhallo \xe9\xff",
        b"Content-Type: text/plain; charset=\"\xff\xfe\"\r\n\r\nhallo",
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSk",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSGFsbG8gd2Vy=",
        b"Content-Type: text/html\r\n\r\n" + b"<div>" * 50_000 + b"<!--",
        b"Content-Type: text/plain\r\n\r\n" + b"a" * 300_000 + b"@",
        b"Content-Type: text/plain\r\n\r\n" + b"1 " * 100_000,
        b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                 for i in range(2_000)),
    ],
    ids=["empty", "garbage", "truncated", "no-boundary", "bad-charset", "binary-charset",
         "truncated-jpeg", "bad-base64", "html-nesting", "long-word", "digits", "deep-nesting"],
)
def test_hostile_mime_never_raises(raw: bytes) -> None:
    start = time.perf_counter()
    entity, report = run(raw)
    assert time.perf_counter() - start < 5
    assert isinstance(report, Report) and entity.startswith(b"MIME-Version: 1.0\r\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_an_entity(raw: bytes) -> None:
    run(raw)


def test_long_text_is_capped_between_words() -> None:
    raw = ("Content-Type: text/plain; charset=utf-8\r\n\r\n" + "woord " * 9_999
           + "bel 06 1234 5678 " + "woord " * 5_000 + "\r\n")
    entity, _ = run(raw)
    text = text_of(entity)
    assert len(text) < 50_100 and "1234" not in text and text.rstrip().endswith("[…]")


# --- the whole: headers, determinism, speed -------------------------------------------


def test_no_input_header_survives() -> None:
    entity, _ = run(GMAIL)
    message: Message = message_from_bytes(entity, policy=email_policy.compat32)
    names = {key.lower() for part in message.walk() for key in part}
    assert names <= {"mime-version", "content-type", "content-transfer-encoding",
                     "content-disposition"}
    assert leaks(entity, ("Bulletin 4711", "Thunderbird", "Autocrypt", "bGFwdG9w")) == []


def test_same_input_same_output() -> None:
    raw = apple_mail(jpeg_with_metadata()).encode()
    assert anonymise(raw, IDENTITY)[0] == anonymise(raw, IDENTITY)[0]


def test_plain_reply_is_fast() -> None:
    raw = GMAIL.encode()
    times = []
    for _ in range(30):
        start = time.perf_counter()
        anonymise(raw, IDENTITY)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.005
