"""Redaction of a member's identity and of contact details in the text of a reply.

Pure functions over already decoded text (quoted-printable soft breaks and ``=40`` are
gone by the time text gets here)::

    redact(text, addresses, names, contact_details=True) -> Redacted

The member's own addresses and names always go; other e-mail addresses and every phone
number go too when ``contact_details`` is set. Each occurrence becomes ``REDACTED``.

Names are matched on a *folded* copy of the text (case, diacritics and a few special
letters folded: José == JOSE, Łukasz == Lukasz) and mapped back to the original
positions, so the replacement cuts exactly the name out of the original text. Name
parts match on letter boundaries only: "Jan" matches "Jan," and "jan_1975" but not
"januari". Over-redaction (a surname that is also a word, "Bakker") is accepted: a
leaked name is the worse mistake.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import parseaddr

import phonenumbers

__all__ = ["REDACTED", "Redacted", "redact"]

REDACTED = "[afgeschermd]"

_MAX_NAMES = 12  # identity strings per kind; more is a hostile or broken caller
_MAX_NAME_LENGTH = 200
_MIN_PART = 3  # letters in a name part that is redacted on its own
_MIN_LOCAL = 4  # characters in an address's local part that is redacted on its own
_MAX_PHONE_CANDIDATE = 60  # longer digit stretches never reach the (slow) matcher



def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Dutch (and a few Belgian, German, French, Arabic) particles: on their own they name
# nobody, and "van", "der" or "het" redacted everywhere would wreck the text.
_PARTICLES = _words(
    "van de der den het ter ten te op in aan bij uit onder over voor 't 's la le les du "
    "des d' l' da dos del di von vom zu zum zur am auf dem el al"
)
# Local parts that are words, not people: "info@…" must not redact every "info".
_GENERIC_LOCAL = _words(
    "info mail email post contact admin office home thuis familie fam noreply reply "
    "postmaster hallo hello"
)
# Mailbox providers: their domain names nobody; any other domain may be the member's own
# (a vanity domain, a small employer) and is redacted with the address.
_SHARED_DOMAINS = _words(
    "gmail.com googlemail.com hotmail.com hotmail.nl outlook.com outlook.nl live.nl "
    "live.com msn.com yahoo.com yahoo.nl ymail.com icloud.com me.com mac.com ziggo.nl "
    "kpnmail.nl kpnplanet.nl planet.nl home.nl xs4all.nl hetnet.nl chello.nl upcmail.nl "
    "telfort.nl tele2.nl online.nl caiway.nl zeelandnet.nl solcon.nl quicknet.nl "
    "proton.me protonmail.com pm.me gmx.de gmx.net gmx.com web.de t-online.de aol.com "
    "mail.com skynet.be telenet.be"
)

_LETTER_BEFORE = r"(?<![^\W\d_])"  # not preceded by a letter (digits and "_" are fine)
_LETTER_AFTER = r"(?![^\W\d_])"
_NAME_JOIN = r"[\s.,_'\-]*"  # "Jan de Vries", "jan.devries", "JanDeVries", "de Vries, Jan"
_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")

# Spelled-out addresses. Never across a line break, and a bare " at " counts only with a
# spelled-out " dot " or a common top-level domain: "the playground at night.\nMet" is
# prose, "jan at example.nl" is not.
_BRACKET_AT = r"(?:[ \t]*(?:@|[(\[{<][ \t]*(?:at|apenstaartje)[ \t]*[)\]}>])[ \t]*)"
_WORD_AT = r"(?:[ \t]+(?:at|apenstaartje)[ \t]+)"
_SPELLED_DOT = r"(?:[ \t]*[(\[{<][ \t]*(?:dot|punt)[ \t]*[)\]}>][ \t]*|[ \t]+(?:dot|punt)[ \t]+)"
_DOT = rf"(?:\.|{_SPELLED_DOT})"
_AT = rf"(?:{_BRACKET_AT}|{_WORD_AT})"
# Every pattern that starts with a repeated class starts with a lookbehind as well, so a
# match can only begin where a run of such characters begins: without it a long run with
# no "@" costs quadratic time.
_ADDRESS = re.compile(
    r"(?:mailto:)?(?<![\w.!#$%&*+/=?^{|}~-])[\w.!#$%&*+/=?^{|}~-]+@[\w-]+(?:\.[\w-]+)+",
    re.IGNORECASE,
)
_OBFUSCATED = re.compile(
    rf"(?<![\w.+-])[\w.+-]+(?:{_BRACKET_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}"
    rf"|{_WORD_AT}[\w-]+(?:{_DOT}[\w-]+)*{_SPELLED_DOT}"
    rf"|{_WORD_AT}[\w-]+(?:\.[\w-]+)*\.(?=(?:nl|be|de|com|net|org|eu)(?![\w-])))"
    rf"[a-z]{{2,6}}(?![\w-])",
    re.IGNORECASE,
)
_PHONE_LINK = re.compile(
    r"(?:\b(?:tel|callto|sms|facetime|whatsapp):[^\s<>\"')\]]+"
    r"|(?:https?://)?(?:www\.)?(?:wa\.me/|api\.whatsapp\.com/send\S*?phone=|signal\.me/#p/|"
    r"t\.me/\+)\+?[\d \t-]*\d[^\s<>\"')\]]*)",
    re.IGNORECASE,
)
# Gmail's text part writes a link as "WhatsApp <https://wa.me/316…>": the link's text
# stays, so the target can go without a trace
_LINK_NOTE = re.compile(
    r"[ \t]*<(?:(?:tel|callto|sms|whatsapp):|(?:https?://)?(?:www\.)?(?:wa\.me|"
    r"api\.whatsapp\.com|signal\.me|t\.me)/)[^<>\s]*>",
    re.IGNORECASE,
)
_SEP = r"[ \t.\-/()\u2010-\u2015\u2212]"
# a stretch of digits and separators that might hold a phone number: the phonenumbers
# matcher is slow, so it only ever sees these stretches, never the whole text
# (a hard-wrapped text part may break a number over two lines: "(040)\n245 67 89")
_PHONE_CANDIDATE = re.compile(rf"(?<![\d+(])[+(]*\d(?:(?:{_SEP}|\n){{0,3}}\d){{6,}}")
# numbers the matcher does not know (foreign formats, typos, a digit too many): 9 or more
# digits in one run, unless the run starts with a date ("12-03-2024 14:00")
_DIGIT_RUN = re.compile(rf"(?<![\d+(])\+?\(?\d(?:{_SEP}{{0,3}}\d){{8,}}")
# (a date with a four-digit year: "06.12.34.56.78" is a phone number, not 6 December 34)
_DATE = re.compile(
    r"\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)\d\d(?!\d)|(?:19|20)\d\d[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)"
)
_SPECIAL = str.maketrans(
    {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "æ": "ae", "Æ": "ae",
     "œ": "oe", "Œ": "oe", "þ": "th", "ı": "i", "’": "'", "‘": "'", "`": "'", "ʼ": "'",
     "´": "'"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    identity: int  # the member's own addresses and names
    addresses: int  # other e-mail addresses
    phones: int


def redact(
    text: str, addresses: Iterable[str], names: Iterable[str], *, contact_details: bool,
    name_parts: bool = True,
) -> Redacted:
    """``text`` with the identity (and, with ``contact_details``, contact data) replaced;
    without ``name_parts``, a name only as a whole (its words in a row, as in
    "Wijkagent Noord"), not each of its words or an address's name-like pieces."""
    own_addresses = [a for a in map(_bare_address, addresses) if a][:_MAX_NAMES]
    name_list = [n for n in names if n][:_MAX_NAMES]
    own_addresses += [a for a in map(_bare_address, name_list) if a]  # a name that is one
    identity = 0
    links = annotations = 0
    if contact_details:  # before the addresses: a wa.me link must go whole
        text, annotations = _LINK_NOTE.subn("", text)
        text, links = _PHONE_LINK.subn(REDACTED, text)
    text, n = _replace_regex(text, _own_address_pattern(own_addresses, _haystack(text)))
    identity += n
    others = 0
    if contact_details:  # before the names: "j.de.vries@work.example" must go whole
        text, plain = _ADDRESS.subn(REDACTED, text)
        text, obfuscated = _OBFUSCATED.subn(REDACTED, text)
        others = plain + obfuscated
    folded = fold(text)
    pattern = _name_pattern(name_list, own_addresses if name_parts else [], folded[0],
                            parts=name_parts)
    text, n = _replace_folded(text, folded, pattern)
    identity += n
    if not contact_details:
        return Redacted(text, identity, 0, 0)
    text, phones = _redact_phones(text)
    return Redacted(text, identity, others, phones + links + annotations)


# --- the member's own addresses -------------------------------------------------------


def _bare_address(value: str) -> str:
    """``value`` as a lower-case address ("Jan <jan@x.nl>" and "mailto:" allowed), or ""."""
    if "<" in value:
        value = parseaddr(value)[1]
    value = value.strip().strip("<>").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    if value.count("@") != 1 or any(c.isspace() for c in value) or len(value) > 254:
        return ""
    return value.lower()


# The only characters outside ASCII that re.IGNORECASE matches to an ASCII letter.
_RE_IGNORECASE_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _haystack(text: str) -> str:
    """``text`` for :func:`_may_occur`: lower case, with the letters above made ASCII."""
    return text.translate(_RE_IGNORECASE_ASCII).lower()


def _may_occur(haystack: str, *pieces: str) -> bool:
    """False only if a case-insensitive pattern built from ``pieces`` cannot match.

    Compiling a member's address pattern cost more than the rest of a reply's redaction
    (about 1.8 ms: every dot is spelled out several ways), and mostly the address is not
    in the text at all. Pieces outside ASCII are not checked: case-insensitive matching
    there has more rules than ``lower()`` (final sigma), and the safe side is to compile.
    """
    return all(not piece.isascii() or piece in haystack for piece in pieces if piece)


def _own_address_pattern(addresses: list[str], haystack: str) -> re.Pattern[str] | None:
    """Whole addresses (also "at"/"dot" spelled), local parts and non-provider domains,
    leaving out those that cannot occur in the text (see :func:`_may_occur`)."""
    whole: set[str] = set()
    words: set[str] = set()
    for address in addresses:
        local, domain = address.rsplit("@", 1)
        base = local.split("+", 1)[0]
        for candidate in {local, base}:
            if not candidate:
                continue
            if _may_occur(haystack, *candidate.split("."), *domain.split(".")):
                whole.add(_spelled_out(candidate, domain))
            if (len(candidate) >= _MIN_LOCAL and candidate not in _GENERIC_LOCAL
                    and _may_occur(haystack, candidate)):
                words.add(re.escape(candidate))
        if domain not in _SHARED_DOMAINS and "." in domain and _may_occur(haystack, domain):
            words.add(r"(?:[\w-]+\.)*" + re.escape(domain))
    if not whole and not words:
        return None
    alternatives = sorted(whole, key=len, reverse=True) + sorted(words, key=len, reverse=True)
    body = "|".join(f"(?:{a})" for a in alternatives)
    return re.compile(rf"(?:mailto:)?(?<![\w.+-])(?:{body})(?![\w-])", re.IGNORECASE)


def _spelled_out(local: str, domain: str) -> str:
    """``jan.devries@example.nl`` also as "jan.devries (at) example (dot) nl"."""
    def dotted(part: str) -> str:
        return _DOT.join(re.escape(piece) for piece in part.split("."))

    return dotted(local) + _AT + dotted(domain)


def _replace_regex(text: str, pattern: re.Pattern[str] | None) -> tuple[str, int]:
    if pattern is None:
        return text, 0
    return pattern.subn(REDACTED, text)


# --- names ----------------------------------------------------------------------------


def _name_pattern(
    names: list[str], addresses: list[str], folded_text: str, *, parts: bool = True
) -> re.Pattern[str] | None:
    """One pattern for every form of every name, longest first, on folded text; forms
    with a word missing from ``folded_text`` cannot match it and are left out (the
    pattern has no flags and its words are literal, so this check is exact)."""
    variants: set[str] = set()
    for raw in names:
        if "@" in raw:  # "Jan <jan@x.nl>": the address is redacted as an address
            raw = parseaddr(raw)[0]
        for form in _name_forms(raw):
            variants.update(
                _NAME_JOIN.join(map(re.escape, words))
                for words in _name_variants(fold(form)[0], parts=parts)
                if all(word in folded_text for word in words)
            )
    for address in addresses:  # "jan.devries@…" also names "devries" in "www.devries.nl"
        local = address.split("@", 1)[0]
        variants.update(
            re.escape(piece) for piece in re.split(r"[._+\-\d]+", fold(local)[0])
            if len(piece) >= _MIN_LOCAL and piece not in _GENERIC_LOCAL
            and piece in folded_text
        )
    if not variants:
        return None
    body = "|".join(sorted(variants, key=len, reverse=True))
    return re.compile(rf"{_LETTER_BEFORE}(?:{body}){_LETTER_AFTER}")


def _name_forms(raw: str) -> list[str]:
    """The name as given, RFC 2047-decoded and unquoted, and "Vries, Jan de" turned round."""
    name = raw[:_MAX_NAME_LENGTH]
    if "=?" in name:  # undecodable: the name as given is still matched
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            name = str(make_header(decode_header(name)))
    name = name.replace("\\", "").strip().strip("\"'").strip()
    forms = [name]
    if name.count(",") == 1:
        last, first = (piece.strip() for piece in name.split(","))
        forms.append(f"{first} {last}")
    return forms


def _name_variants(folded: str, *, parts: bool = True) -> set[tuple[str, ...]]:
    """The forms of one folded name, each as its words (joined by ``_NAME_JOIN``);
    without ``parts`` only the whole name."""
    tokens = _NAME_TOKEN.findall(folded)[:20]
    variants: set[tuple[str, ...]] = set()
    if all(t in _PARTICLES for t in tokens):
        return variants  # "van" as a name would redact every "van" of the text
    if sum(len(t) for t in tokens) >= _MIN_PART:  # the full name; a lone initial is none
        variants.add(tuple(tokens))
    if not parts:
        return variants
    for i, token in enumerate(tokens):
        # "de Vries" and "devries"; not from "Vries, Jan de", which ends in the particle
        if token in _PARTICLES and tokens[-1] not in _PARTICLES:
            variants.add(tuple(tokens[i:]))
            break
    for token in tokens:
        pieces = {token, *token.split("'")}  # "o'brien" and "brien"
        variants.update(
            (p,) for p in pieces
            if sum(c.isalpha() for c in p) >= _MIN_PART and p not in _PARTICLES
        )
    return variants


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char.translate(_SPECIAL))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold(text: str) -> tuple[str, list[int] | None]:
    """Case- and diacritic-folded text, and for each folded character its original index
    (``None`` when the two line up one to one, as for ASCII)."""
    if text.isascii():
        return text.lower(), None
    pieces: list[str] = []
    index: list[int] = []
    for i, char in enumerate(text):
        folded = _fold_char(char)
        pieces.append(folded)
        index.extend([i] * len(folded))
    return "".join(pieces), index


def _replace_folded(
    text: str, folded_text: tuple[str, list[int] | None], pattern: re.Pattern[str] | None
) -> tuple[str, int]:
    """``text`` with what ``pattern`` finds in its folded form (``fold(text)``) cut out."""
    if pattern is None:
        return text, 0
    folded, index = folded_text
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(folded):
        if match.end() == match.start():
            continue
        if index is None:
            spans.append(match.span())
            continue
        start, end = index[match.start()], index[match.end() - 1] + 1
        while end < len(text) and not _fold_char(text[end]):
            end += 1  # a combining accent after the name goes with it
        spans.append((start, end))
    return _cut_spans(text, spans), len(spans)


def _cut_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out: list[str] = []
    last = 0
    for start, end in spans:
        if start < last:
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


# --- phone numbers --------------------------------------------------------------------


def _redact_phones(text: str) -> tuple[str, int]:
    spans: list[tuple[int, int]] = []
    for candidate in _PHONE_CANDIDATE.finditer(text):
        if len(candidate.group()) > _MAX_PHONE_CANDIDATE:
            continue  # no phone number is this long; the digit-run rule below takes it
        offset = candidate.start()
        # the matcher rejects a number with a line break in it; a space is as long
        flat = candidate.group().replace("\n", " ")
        for match in phonenumbers.PhoneNumberMatcher(flat, "NL"):
            spans.append((offset + match.start, offset + match.end))
    text = _cut_spans(text, spans)
    fallback = 0

    def digits(match: re.Match[str]) -> str:
        nonlocal fallback
        if _DATE.match(match.group().lstrip("+(")):
            return match.group()
        fallback += 1
        return REDACTED

    text = _DIGIT_RUN.sub(digits, text)
    return text, len(spans) + fallback
