"""The MIME parts of a member's reply, sorted into what may be relayed and what may not.

``collect(message)`` walks the MIME tree once (bounded in depth and in parts) and
returns the body's text, its HTML sources, its images, and a key for every part that is
dropped. Nothing here decides *what of the text* is relayed: that is ``anonymise``'s
job. What is decided here is which parts can carry the member's text at all:

* text/plain and text/html shown inline (an attached .txt is a file, not the body);
* the signed content of multipart/signed (the signature names the signer);
* images, for re-encoding;
* everything else (vCards, calendar invites, attached messages, signatures, keys,
  documents) is dropped: each is a container of personal data no text rule can clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from .mailtext import best_text

__all__ = ["ImagePart", "Parts", "collect", "label"]

_MAX_DEPTH = 20  # as mailtext: deeper nesting is hostile, not mail
_MAX_PARTS = 300

_LABELS: dict[str, tuple[str, str]] = {
    "vcard": ("visitekaartje (vCard)", "contact card (vCard)"),
    "calendar": ("agenda-uitnodiging", "calendar invitation"),
    "message": ("doorgestuurd bericht", "forwarded message"),
    "signature": ("digitale handtekening", "digital signature"),
    "pgp_key": ("PGP-sleutel", "PGP key"),
    "encrypted": ("versleuteld deel", "encrypted part"),
    "pdf": ("PDF-bestand", "PDF file"),
    "document": ("document (Word, ODT of RTF)", "document (Word, ODT or RTF)"),
    "spreadsheet": ("spreadsheet (Excel, ODS of CSV)", "spreadsheet (Excel, ODS or CSV)"),
    "presentation": ("presentatie (PowerPoint)", "presentation (PowerPoint)"),
    "archive": ("gecomprimeerd bestand (zip)", "compressed file (zip)"),
    "audio": ("geluidsbestand", "audio file"),
    "video": ("video", "video"),
    "text_file": ("tekstbestand", "text file"),
    "heic": ("foto in HEIC-formaat", "photo in HEIC format"),
    "image_other": ("afbeelding in een ander formaat", "image in another format"),
    "image_unreadable": ("afbeelding die niet te lezen was", "image that could not be read"),
    "image_too_many": ("foto (meer dan 10)", "photo (more than 10)"),
    "image_context": ("afbeelding uit ondertekening of citaat", "image from a signature or quote"),
    "unreadable": ("onleesbaar deel", "unreadable part"),
    "attachment": ("bijlage", "attachment"),
}

_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp"}
)
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
_EXACT: dict[str, str] = {
    "text/vcard": "vcard", "text/x-vcard": "vcard", "text/directory": "vcard",
    "application/vcard": "vcard",
    "text/calendar": "calendar", "text/x-vcalendar": "calendar", "application/ics": "calendar",
    "application/pkcs7-signature": "signature", "application/x-pkcs7-signature": "signature",
    "application/pgp-signature": "signature", "application/pgp-keys": "pgp_key",
    "application/pgp-encrypted": "encrypted", "application/pdf": "pdf",
    "application/msword": "document", "application/rtf": "document", "text/rtf": "document",
    "application/vnd.ms-excel": "spreadsheet", "text/csv": "spreadsheet",
    "application/vnd.ms-powerpoint": "presentation", "image/heic": "heic",
    "image/heif": "heic", "application/zip": "archive",
    "application/x-zip-compressed": "archive", "application/gzip": "archive",
    "application/x-7z-compressed": "archive", "application/x-rar-compressed": "archive",
    "application/vnd.rar": "archive", "application/x-tar": "archive",
}  # fmt: skip
_CONTAINS: tuple[tuple[str, str], ...] = (
    ("wordprocessingml", "document"), ("opendocument.text", "document"),
    ("spreadsheetml", "spreadsheet"), ("opendocument.spreadsheet", "spreadsheet"),
    ("presentationml", "presentation"), ("opendocument.presentation", "presentation"),
)  # fmt: skip
# formats a reader cannot see and we cannot rebuild: the whole reply goes back
_ENCRYPTED = frozenset({"multipart/encrypted"})
_PKCS7_MIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_SILENT = frozenset({"text/rfc822-headers"})  # PGP "protected headers" for old clients


def label(key: str, language: str) -> str:
    """A dropped part's key as a short phrase in ``language`` ("nl" or "en")."""
    nl, en = _LABELS.get(key, _LABELS["attachment"])
    return nl if language == "nl" else en


@dataclass(frozen=True, slots=True)
class ImagePart:
    data: bytes
    content_id: str  # normalised ("image001.png@01da…"), "" when there is none


@dataclass(slots=True)
class Parts:
    texts: list[str] = field(default_factory=list)
    html: list[Message] = field(default_factory=list)  # text/html parts of the body
    images: list[ImagePart] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # keys of _LABELS
    encrypted: bool = False  # an encrypted (unreadable) part was met
    visited: int = 0

    @property
    def text(self) -> str:
        return "\n".join(t for t in self.texts if t.strip())


def collect(message: Message) -> Parts:
    """Sort every part of ``message``. Never raises: a broken part is dropped as such."""
    parts = Parts()
    _walk(message, 0, parts, text=True)
    return parts


def _walk(part: Message, depth: int, parts: Parts, *, text: bool) -> None:
    """``text``: this part's text counts (False inside an alternative, whose text
    ``best_text`` has already chosen)."""
    parts.visited += 1
    if depth > _MAX_DEPTH or parts.visited > _MAX_PARTS:
        parts.dropped.append("unreadable")
        return
    try:
        _sort(part, depth, parts, text=text)
    except Exception:  # one hostile part must not cost the rest of the reply
        parts.dropped.append("unreadable")


def _sort(part: Message, depth: int, parts: Parts, *, text: bool) -> None:
    ctype = part.get_content_type()
    if ctype in _ENCRYPTED or ctype in _PKCS7_MIME:
        _encrypted(part, ctype, parts)
    elif ctype.startswith("message/"):  # first: an attached message "is multipart" too
        parts.dropped.append("message")
    elif part.is_multipart() and ctype.startswith("multipart/"):
        _multipart(part, depth, parts, text=text)
    elif part.is_multipart() or ctype.startswith("multipart/"):
        parts.dropped.append("unreadable")  # a multipart without its boundary, or worse
    elif ctype in ("text/plain", "text/html") and (depth == 0 or not _is_file(part)):
        if text:
            parts.texts.append(best_text(part))
        if ctype == "text/html":
            parts.html.append(part)
    elif ctype in _SILENT:
        pass
    elif _is_image(part, ctype):
        _image(part, parts)
    else:
        parts.dropped.append(_kind(part, ctype))


def _encrypted(part: Message, ctype: str, parts: Parts) -> None:
    if ctype in _PKCS7_MIME and str(part.get_param("smime-type", "")).lower() == "certs-only":
        parts.dropped.append("signature")  # a certificate: names its holder
        return
    # enveloped-data cannot be read; opaque signed-data could be, but only by parsing
    # the CMS structure, which we do not do: either way it goes back to the member
    parts.encrypted = True
    parts.dropped.append("encrypted")


def _multipart(part: Message, depth: int, parts: Parts, *, text: bool) -> None:
    children = [c for c in part.get_payload() if isinstance(c, Message)]
    subtype = part.get_content_subtype()
    if subtype == "signed":
        if children:
            _walk(children[0], depth + 1, parts, text=text)
        if len(children) > 1:
            parts.dropped.append("signature")
        return
    if subtype == "alternative" and text:
        parts.texts.append(best_text(part))
        text = False
    for child in children:
        _walk(child, depth + 1, parts, text=text)


def _is_file(part: Message) -> bool:
    """An attached text file: a disposition of "attachment", or a file name (Apple Mail
    marks attached files "inline" when it can show them; body text has no file name).
    A message that is one text part is its body, whatever it is called."""
    return part.get_content_disposition() == "attachment" or bool(part.get_filename())


def _is_image(part: Message, ctype: str) -> bool:
    if ctype in _IMAGE_TYPES:
        return True
    name = (part.get_filename() or "").lower()
    return ctype == "application/octet-stream" and name.endswith(_IMAGE_EXTENSIONS)


def _image(part: Message, parts: Parts) -> None:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        parts.dropped.append("image_unreadable")
        return
    content_id = str(part.get("Content-ID", "")).strip().strip("<>").strip().lower()
    parts.images.append(ImagePart(payload, content_id))


def _kind(part: Message, ctype: str) -> str:
    if ctype in _EXACT:
        return _EXACT[ctype]
    for fragment, key in _CONTAINS:
        if fragment in ctype:
            return key
    major = ctype.split("/", 1)[0]
    if major in ("audio", "video"):
        return major
    if major == "image":
        return "image_other"
    if major == "text":
        return "text_file"
    name = (part.get_filename() or "").lower()
    return "pdf" if name.endswith(".pdf") else "attachment"
