"""The corpus of realistic member replies (tests/messages/replies/) and how to search them.

Each ``<stem>.eml`` is a reply to the bulletin "[BIN Noord] Inbraken in Noord" as one mail
client really writes it; ``cases.toml`` says per stem who the member is, what kind of
reply it is, which of the member's new sentences must survive anonymisation (``present``)
and which identity strings must not appear anywhere in what is relayed (``absent``).
The files hold the placeholder ``{reply_address}`` wherever the client put the gateway's
reply address; ``ReplyCase.raw(address)`` fills it in.

``decoded_dump`` renders everything a reader of a message could get at (headers decoded,
every part decoded, HTML unescaped, image metadata, the raw bytes) into one string, and
``leaks`` searches it for identity strings, case-insensitively and, for phone numbers,
also in digit-only form.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import re
import tomllib
import zlib
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value
from pathlib import Path
from urllib.parse import unquote

from PIL import ExifTags, Image

REPLIES = Path(__file__).resolve().parent.parent / "messages" / "replies"
PLACEHOLDER = b"{reply_address}"
KINDS = ("relay", "auto-reply", "bounce", "quote-only", "encrypted")

_REQUIRED = ("client", "member", "name", "kind", "present", "absent")
_OPTIONAL = ("dropped", "images")


@dataclass(frozen=True, slots=True)
class ReplyCase:
    stem: str
    client: str
    member: str
    name: str
    kind: str
    present: tuple[str, ...]
    absent: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    images: int | None = None

    @property
    def path(self) -> Path:
        return REPLIES / f"{self.stem}.eml"

    def raw(self, reply_address: str) -> bytes:
        """The reply as the gateway receives it: CRLF line ends, the reply address filled in."""
        data = self.path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return data.replace(PLACEHOLDER, reply_address.encode("ascii"))


def load_cases(path: Path | None = None) -> list[ReplyCase]:
    """Every case of cases.toml, in file order."""
    with (path or REPLIES / "cases.toml").open("rb") as f:
        table = tomllib.load(f)
    cases = []
    for stem, entry in table.items():
        missing = [key for key in _REQUIRED if key not in entry]
        unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
        if missing or unknown:
            raise ValueError(f"cases.toml [{stem}]: missing {missing}, unknown {unknown}")
        if entry["kind"] not in KINDS:
            raise ValueError(f"cases.toml [{stem}]: kind {entry['kind']!r} not in {KINDS}")
        cases.append(
            ReplyCase(
                stem=stem,
                client=entry["client"],
                member=entry["member"],
                name=entry["name"],
                kind=entry["kind"],
                present=tuple(entry["present"]),
                absent=tuple(entry["absent"]),
                dropped=tuple(entry.get("dropped", ())),
                images=entry.get("images"),
            )
        )
    return cases


# --- what a reader could see ------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")
_ARMOR = re.compile(
    r"-----BEGIN PGP [A-Z ]+-----\r?\n(?:[\w-]+: .*\r?\n)*\r?\n(.*?)-----END PGP", re.S
)
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)


def _header_texts(part: Message) -> list[str]:
    out = []
    for name, value in part.raw_items():
        out.append(f"{name}: {value}")
        try:
            out.append(f"{name}: {make_header(decode_header(str(value)))}")
        except (ValueError, LookupError, UnicodeError, binascii.Error) as exc:
            out.append(f"{name}: undecodable ({exc})")
        try:
            out.append(f"{name}: {part[name]}")
        except (ValueError, LookupError, UnicodeError, IndexError, TypeError) as exc:
            out.append(f"{name}: unparsable ({exc})")
    for _, value in part.get_params() or ():
        out.append(collapse_rfc2231_value(value))
    for _, value in part.get_params(header="content-disposition") or ():
        out.append(collapse_rfc2231_value(value))
    filename = part.get_filename()
    if filename:
        out.append(filename)
    return out


def _text_views(text: str, *, is_html: bool) -> list[str]:
    views = [text]
    if is_html:
        views.append(html.unescape(text))
        views.append(html.unescape(_TAG.sub("", text)))
        views.append(html.unescape(_TAG.sub(" ", text)))
    return views


def _image_texts(data: bytes) -> list[str]:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        return [f"image: unreadable ({exc})"]
    out = [f"image: {image.format} {image.size}"]
    for key, value in image.info.items():
        shown = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        out.append(f"{key}={shown}")
    exif = image.getexif()
    for tag, value in exif.items():
        out.append(f"{ExifTags.TAGS.get(tag, tag)}={value}")
    for ifd, names in ((0x8769, ExifTags.TAGS), (0x8825, ExifTags.GPSTAGS)):
        for tag, value in exif.get_ifd(ifd).items():
            out.append(f"{names.get(tag, tag)}={value}")
    gps = exif.get_ifd(0x8825)
    for key in (2, 4):  # GPSLatitude, GPSLongitude as decimal degrees
        value = gps.get(key)
        if isinstance(value, tuple) and len(value) == 3:
            degrees = float(value[0]) + float(value[1]) / 60 + float(value[2]) / 3600
            out.append(f"{ExifTags.GPSTAGS[key]}={degrees:.5f}")
    return out


def _binary_texts(data: bytes) -> list[str]:
    out = [data.decode("latin-1"), data.decode("utf-8", "replace")]
    if data.startswith(b"%PDF"):
        for stream in _PDF_STREAM.findall(data):
            try:
                out.append(zlib.decompress(stream).decode("latin-1"))
            except zlib.error:
                out.append(stream.decode("latin-1"))
    return out


def _armor_texts(text: str) -> list[str]:
    out = []
    for body in _ARMOR.findall(text):
        lines = [line for line in body.split() if not line.startswith("=")]
        try:
            out.append(base64.b64decode("".join(lines)).decode("latin-1"))
        except (binascii.Error, ValueError):
            out.append(body)
    return out


def _part_texts(part: Message) -> list[str]:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, binascii.Error) as exc:
        return [f"payload: undecodable ({exc})"]
    if not isinstance(data, bytes):
        return []
    maintype = part.get_content_maintype()
    out = _binary_texts(data)
    if maintype == "text":
        charset = part.get_content_charset() or "utf-8"
        try:
            text = data.decode(charset, "replace")
        except LookupError:
            text = data.decode("latin-1")
        out.extend(_text_views(text, is_html=part.get_content_subtype() == "html"))
    if maintype == "image":
        out.extend(_image_texts(data))
    out.extend(_armor_texts("\n".join(out)))
    return out


def decoded_dump(data: bytes) -> str:
    """Everything a reader of ``data`` could see, as one string to search.

    The raw bytes (latin-1), every header (raw and RFC 2047/2231-decoded) of the message
    and of every part (nested message/rfc822 included), every part's decoded payload
    (transfer encoding undone, text in its charset, HTML raw, unescaped and without tags,
    binary parts as latin-1 and UTF-8, PDF streams, ASCII-armoured OpenPGP blocks
    decoded), images' metadata (Pillow info, EXIF, GPS as decimal degrees), and finally
    all of that again with %-escapes undone (mailto:, tel:, tracker URLs).
    """
    chunks = [data.decode("latin-1")]
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        parts = list(message.walk())
    except Exception as exc:  # a broken message is still dumped raw
        chunks.append(f"unparsable: {exc}")
        parts = []
    for part in parts:
        chunks.extend(_header_texts(part))
        if not part.is_multipart():
            chunks.extend(_part_texts(part))
    text = "\n".join(chunks)
    return text + "\n" + unquote(text, errors="replace")


# --- searching --------------------------------------------------------------------------

_PHONE = re.compile(r"\+?[\d\s\-./()\u00a0]{8,}")
_PHONE_NOISE = re.compile(r"[\s\-./()\u00a0]")


def looks_like_phone(value: str) -> bool:
    return bool(_PHONE.fullmatch(value.strip())) and sum(c.isdigit() for c in value) >= 8


def leaks(dump: str, strings: list[str] | tuple[str, ...]) -> list[str]:
    """The strings that occur in ``dump``: case-insensitive, also across line breaks and
    runs of spaces, and for phone numbers also with spaces, dashes, dots, slashes and
    parentheses left out on both sides (``06-12 34 56 78`` finds ``0612345678``)."""
    folded = dump.casefold()
    squeezed = " ".join(folded.split())
    digits = _PHONE_NOISE.sub("", folded)
    found = []
    for value in strings:
        needle = value.casefold()
        literal = needle in folded or " ".join(needle.split()) in squeezed
        as_phone = looks_like_phone(value) and _PHONE_NOISE.sub("", needle) in digits
        if literal or as_phone:
            found.append(value)
    return found


def squeeze(text: str) -> str:
    """Lower case with every run of whitespace as one space, to compare new text."""
    return " ".join(text.casefold().split())
