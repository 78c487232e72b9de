"""A member's reply, rebuilt so that nothing in it identifies the member (flow F4).

    anonymise(raw, identity, policy) -> (entity bytes, Report)

Pure: bytes in, bytes and a report out; no I/O, no configuration, never raises.

The rule is **rebuild, don't edit**. A mail carries its writer's identity in places no
list of known places is complete for: headers of every kind (Received, X-Originating-IP,
Organization, Autocrypt, Message-ID host names), the quoted bulletin's attribution
("Op … schreef Jan de Vries <jan@…>:"), signatures, HTML ``<title>``/``<meta>``/comments
and hidden blocks, file names, vCards, calendar invites, S/MIME certificates, EXIF GPS
and PNG text chunks. Removing the bad parts from the original misses whatever is not on
the list; building a new message from the few things we positively want cannot carry
over what we did not put in. So the output is made of exactly:

* the member's own text (the best text part, quotes, attributions, forwarded messages
  and signatures cut by :mod:`bin_gateway.mailtext`, plus an undelimited signature
  after a greeting), with the member's addresses and names (and, by policy, all other
  e-mail addresses and phone numbers) replaced by ``[afgeschermd]``
  (:mod:`bin_gateway.redact`);
* an HTML version generated *from that text* (never the member's HTML), cleaned by nh3
  with an allow-list of ``<p>`` and ``<br>``;
* images re-encoded from their pixels alone (:mod:`bin_gateway.reply_images`), named
  ``foto-1.jpg`` …, and only those the member put in their own text;
* a note naming what was not passed on (vCard, PDF, …).

The entity has only MIME headers; the caller writes From, To, Subject and the rest.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from urllib.parse import unquote

import nh3

from .mailtext import LineKind, classify_lines, decode_bytes, html_to_text, tidy_lines
from .redact import REDACTED, redact
from .reply_entity import build_entity
from .reply_images import CleanImage, reencode
from .reply_parts import Parts, collect, label

__all__ = ["REDACTED", "Identity", "Policy", "Report", "anonymise"]

_MAX_OWN_TEXT = 50_000  # characters of own text relayed; the rest is cut
_MAX_IMAGES = 10


@dataclass(frozen=True, slots=True)
class Identity:
    """Who must not be recognisable in the output."""

    addresses: tuple[str, ...]  # the member's address(es): members table and From header
    names: tuple[str, ...]  # display names (members table, From); may be empty strings


@dataclass(frozen=True, slots=True)
class Policy:
    redact_contact_details: bool = True  # also other e-mail addresses and ALL phone numbers
    language: str = "nl"  # "nl" | "en": language of the short notes put into the text
    note: str = ""  # the gateway's own line above the text (e.g. how the reply came in)
    # Staff answering a thread: their full name and address go, but not each part of
    # the name ("Wijkagent Noord" would blank every "Noord" of an answer about Noord).
    whole_names_only: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    own_text: bool  # False: nothing of the member's own (quote, signature, empty)
    encrypted: bool  # S/MIME or PGP encrypted: cannot be read, goes back to the member
    quote_removed: bool
    signature_removed: bool
    identity_redacted: int  # the member's own address/name replaced
    addresses_redacted: int  # other e-mail addresses replaced
    phones_redacted: int
    images_kept: int  # images re-encoded without metadata
    dropped: tuple[str, ...]  # what was not passed on, in policy.language


_NOTES = {
    "nl": ("[Niet doorgestuurd: {}]", "[Dit bericht was versleuteld en kon niet worden "
           "gelezen.]", "[Dit bericht kon niet worden gelezen.]"),
    "en": ("[Not passed on: {}]", "[This message was encrypted and could not be read.]",
           "[This message could not be read.]"),
}  # fmt: skip


def anonymise(raw: bytes, identity: Identity, policy: Policy = Policy()) -> tuple[bytes, Report]:
    """The reply rebuilt without the member's identity, and what was done to it."""
    try:
        return _anonymise(raw, identity, policy)
    except Exception:  # hostile MIME must never stop the relay; "unreadable" is an answer
        report = Report(
            own_text=False, encrypted=False, quote_removed=False, signature_removed=False,
            identity_redacted=0, addresses_redacted=0, phones_redacted=0, images_kept=0,
            dropped=(label("unreadable", policy.language),),
        )
        return build_entity(_notes(policy.language)[2], None, ()), report


def _anonymise(raw: bytes, identity: Identity, policy: Policy) -> tuple[bytes, Report]:
    # compat32: it parses anything and its accessors do not raise on broken headers
    message = message_from_bytes(raw, policy=email_policy.compat32)
    parts = collect(message)
    cut = cut_own_text(parts.text)
    images, image_drops = _images(parts)
    own = _capped(unicodedata.normalize("NFKC", cut.own))
    done = redact(own, identity.addresses, identity.names,
                  contact_details=policy.redact_contact_details,
                  name_parts=not policy.whole_names_only)
    own, tail_cut = _without_signature_tail(done.text)
    has_own = bool(cut.substance.strip()) or bool(images)
    encrypted = (parts.encrypted or cut.encrypted) and not has_own
    keys = [*parts.dropped, *cut.dropped, *image_drops]
    # an unreadable reply goes back whole: its encrypted part is no "attachment left out"
    dropped = _describe([k for k in keys if k != "encrypted" or not encrypted], policy.language)
    text = _final_text(own, dropped, policy.language, encrypted=encrypted)
    if policy.note and not encrypted:
        text = f"{policy.note}\n\n{text}"
    page = _html(text) if parts.html else None
    report = Report(
        own_text=has_own and not encrypted, encrypted=encrypted, quote_removed=cut.quote_removed,
        signature_removed=cut.signature_removed or tail_cut,
        identity_redacted=done.identity, addresses_redacted=done.addresses,
        phones_redacted=done.phones, images_kept=len(images), dropped=dropped,
    )
    return build_entity(text, page, images), report


def _notes(language: str) -> tuple[str, str, str]:
    return _NOTES.get(language, _NOTES["en"])


def _final_text(own: str, dropped: tuple[str, ...], language: str, *, encrypted: bool) -> str:
    notes = _notes(language)
    pieces = [notes[1]] if encrypted else [own] if own.strip() else []
    if dropped:
        pieces.append(notes[0].format(", ".join(dropped)))
    return "\n\n".join(pieces) + "\n"


def _describe(keys: list[str], language: str) -> tuple[str, ...]:
    """Labels in order of first appearance, "PDF-bestand (2×)" for repeats."""
    counts = Counter(keys)
    return tuple(
        label(key, language) + (f" ({n}×)" if n > 1 else "") for key, n in counts.items()
    )


def _capped(text: str) -> str:
    """At most _MAX_OWN_TEXT characters, cut between words and never inside a number
    (half a phone number is no longer found, and would still be half a phone number)."""
    if len(text) <= _MAX_OWN_TEXT:
        return text
    cut = text[:_MAX_OWN_TEXT]
    cut = cut[: max(cut.rfind(" "), cut.rfind("\n"), 0)]
    head, tail = cut[:-200], cut[-200:]  # the tail only: a regex anchored at \Z is slow
    return head + re.sub(r"[\d\s().+/\-]+\Z", "", tail) + "\n[…]"


_MARKER_ONLY = re.compile(rf"[\s|,;:/()·•–-]*(?:{re.escape(REDACTED)}[\s|,;:/()·•–-]*)+")
_SIGNATURE_LINE = re.compile(r".{0,50}(?<![.?!:])")  # short, and not the end of a sentence


def _without_signature_tail(text: str) -> tuple[str, bool]:
    """Cut a signature without greeting or delimiter, recognised after redaction: a line
    that was only the member's name (or number), then a few short lines to the end
    ("Jan de Vries / Dorpsstraat 12 / 06-…" becomes "[afgeschermd] / Dorpsstraat 12 /
    [afgeschermd]": the street would stay)."""
    lines = text.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    first = max(len(filled) - 5, 0)  # at most four lines may follow the name line
    for n in range(first, len(filled)):
        if not _MARKER_ONLY.fullmatch(lines[filled[n]]):
            continue
        before = (lines[i] for i in filled[:n])
        after = (lines[i] for i in filled[n + 1 :])
        if any(not _MARKER_ONLY.fullmatch(b) for b in before) and all(
            _SIGNATURE_LINE.fullmatch(a) for a in after
        ):
            return tidy_lines(lines[: filled[n]]), True
    return text, False


# --- the own text ---------------------------------------------------------------------

# A greeting that ends a mail; whatever follows it (name, street, phone) is signature.
# The greeting itself stays: it is part of the writer's voice and names nobody.
_GREETING = re.compile(
    r"^((?:(?:alvast\s+)?(?:bedankt|dank|thanks)(?:\s+en|\s+and|,)?\s+)?"
    r"(?:met\s+)?(?:(?:vriendelijke|hartelijke|beste|lieve|warme|veel|hele)\s+)?"
    r"(?:groet(?:en|jes)?|gr\.?|mvg|m\.v\.g\.?|vr\.?\s?gr\.?|liefs|kind regards|"
    r"best regards|warm regards|regards|best wishes|cheers|yours sincerely|sincerely|"
    r"mit freundlichen gr[üu](?:ß|ss)en|viele gr[üu](?:ß|ss)e|cordialement|"
    r"bien [àa] vous|pozdrawiam|z powa[żz]aniem)"
    r"(?!\w))([,.!]*)(.{0,80})$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^[-_=*\s]*(?:forwarded message|doorgestuurd bericht|weitergeleitete nachricht|"
    r"message transf[ée]r[ée]|wiadomo[śs][ćc] przekazana|begin (?:forwarded|doorgestuurd))",
    re.IGNORECASE,
)
# where a client put an inline image into its text part: the file name can name someone
_PLACEHOLDER = re.compile(
    r"\[(?:image|afbeelding|cid|bild|photo|foto|inline image)\s*:[^\]\n]{0,300}\]", re.I
)
_ARMOUR = re.compile(r"^-----(BEGIN|END) PGP ([A-Z ]+?)-----\s*$")
_ARMOUR_KEYS = {"SIGNATURE": "signature", "PUBLIC KEY BLOCK": "pgp_key",
                "PRIVATE KEY BLOCK": "pgp_key", "MESSAGE": "encrypted"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class OwnCut:
    own: str  # the member's own lines, greeting kept
    substance: str  # the same without the greeting: empty means "nothing of their own"
    quote_removed: bool
    signature_removed: bool
    encrypted: bool  # an inline PGP message
    dropped: tuple[str, ...]  # keys for reply_parts.label


def _greeting(line: str) -> str | None:
    """The greeting words (with their punctuation) if ``line`` closes a mail."""
    stripped = line.strip()
    match = _GREETING.match(stripped) if len(stripped) <= 100 else None
    if match is None:
        return None
    words, punctuation, rest = match.groups()
    # "Groet, Jan de Vries" or "Mvg Jan": yes; "Regards the car: it was red" is prose
    if rest.strip() and not punctuation and len(rest.split()) > 3:
        return None
    return words + punctuation


def cut_own_text(text: str) -> OwnCut:
    """The member's own text of a reply's body text, and what was cut from it."""
    text, dropped, encrypted = _unarmour(text)
    lines = classify_lines(_PLACEHOLDER.sub("", text))
    own: list[str] = []
    substance: list[str] = []
    quoted = signature = forwarded = in_signature = False
    for line in lines:
        if line.kind is LineKind.QUOTED:
            in_signature = False
            forwarded = forwarded or (not line.text.startswith(">") and bool(
                _FORWARD.match(line.text.strip())))
            quoted = quoted or (not forwarded and bool(line.text.strip("> \t")))
            continue
        greeting = None if in_signature else _greeting(line.text)
        if greeting is not None:
            own.append(greeting)
            signature = signature or greeting != line.text.strip()
            in_signature = True
        elif in_signature or line.kind is LineKind.SIGNATURE:
            signature = signature or bool(line.text.strip())
            in_signature = in_signature or line.kind is LineKind.SIGNATURE
        else:
            own.append(line.text)
            substance.append(line.text)
    if forwarded:
        dropped = (*dropped, "message")
    return OwnCut(tidy_lines(own), tidy_lines(substance), quoted, signature, encrypted, dropped)


def _unarmour(text: str) -> tuple[str, tuple[str, ...], bool]:
    """Inline PGP: the signed text kept, signature/key/encrypted blocks dropped."""
    if "-----BEGIN PGP" not in text:
        return text, (), False
    out: list[str] = []
    dropped: list[str] = []
    block: str | None = None  # the armour block being skipped
    in_header = signed = False
    for line in text.split("\n"):
        armour = _ARMOUR.match(line.strip())
        if armour and armour.group(1) == "BEGIN":
            kind = armour.group(2)
            if kind == "SIGNED MESSAGE":
                in_header = signed = True
            else:
                block = kind
                dropped.append(_ARMOUR_KEYS.get(kind, "signature"))
        elif armour or block is not None:
            block = None if armour else block  # an unterminated block hides the rest
        elif in_header:
            in_header = bool(line.strip())  # "Hash: SHA256" lines up to a blank line
        else:
            out.append(line[2:] if signed and line.startswith("- ") else line)
    return "\n".join(out), tuple(dropped), "encrypted" in dropped


# --- images ---------------------------------------------------------------------------

_CID_IMAGE = re.compile(
    r"<img\b[^>]{0,2000}?\bsrc\s*=\s*[\"']?\s*cid:([^\"'\s>]{1,300})[^>]{0,2000}>", re.I
)
_MARKER = re.compile("\ue000([^\ue001]{1,300})\ue001")


def _images(parts: Parts) -> tuple[list[CleanImage], list[str]]:
    """The images to relay (re-encoded) and the keys of those dropped."""
    referenced, owned = _cid_places(parts)
    kept: list[CleanImage] = []
    dropped: list[str] = []
    for image in parts.images:
        if image.content_id in referenced and image.content_id not in owned:
            dropped.append("image_context")  # a logo in a signature, a quoted image
        elif len(kept) >= _MAX_IMAGES:
            dropped.append("image_too_many")
        elif (clean := reencode(image.data)) is None:
            dropped.append("image_unreadable")
        else:
            kept.append(clean)
    return kept, dropped


def _cid_places(parts: Parts) -> tuple[set[str], set[str]]:
    """Content-IDs the HTML refers to, and those it shows in the member's own text.

    An image that the HTML shows only inside the quote or the signature (a company logo,
    the bulletin's own pictures) is not the member's: the same cutting rules as for the
    text decide, by rendering the HTML with a marker where each image was."""
    if not parts.html or not any(image.content_id for image in parts.images):
        return set(), set()
    referenced: set[str] = set()
    owned: set[str] = set()
    for part in parts.html:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        source = decode_bytes(payload, part.get_content_charset() or "")

        def marker(match: re.Match[str]) -> str:
            cid = _cid(match.group(1))
            referenced.add(cid)
            return f" \ue000{cid}\ue001 "

        own = cut_own_text(html_to_text(_CID_IMAGE.sub(marker, source))).own
        owned.update(_MARKER.findall(own))
    return referenced, owned


def _cid(value: str) -> str:
    return unquote(html.unescape(value)).strip().strip("<>").lower()


# --- HTML -----------------------------------------------------------------------------


def _html(text: str) -> str:
    """The cleaned text as HTML: paragraphs and line breaks, nothing else."""
    paragraphs = re.split(r"\n[ \t]*\n", text.strip())
    body = "".join(
        "<p>" + "<br>".join(html.escape(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in paragraphs
    )
    # Built from escaped text it cannot hold anything else; nh3 makes that a guarantee.
    clean = nh3.clean(body, tags={"p", "br"}, attributes={}, url_schemes=set(),
                      strip_comments=True, link_rel=None)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
            f"{clean}\n</body></html>\n")
