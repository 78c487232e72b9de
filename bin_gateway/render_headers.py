"""The gateway's own header values: encoded, folded and checked, never copied raw.

Shared values (From, Subject, List-Id) are encoded once per bulletin: RFC 2047 B-words
where needed, folded between tokens so no line passes 78 characters. Per-member values
are checked on the hot path, one regex each, and refused rather than repaired.
"""

from __future__ import annotations

import base64
import re
from email.message import MIMEPart

__all__ = [
    "checked_address",
    "checked_line",
    "checked_message_id",
    "checked_url",
    "encode_from",
    "encode_list_id",
    "encode_subject",
    "one_line",
    "prefixed_subject",
]

_MAX_SUBJECT = 250
_PLAIN_ATOM = re.compile(r"(?!.*=\?)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A subject word left as it is: printable ASCII that no decoder could take for an encoded-word.
_PLAIN_WORD = re.compile(r"(?!.*=\?)[!-~]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029<>,;]")
_MESSAGE_ID = re.compile(r"<?([!-;=?A-~]+@[!-;=?A-Z^-~]+)>?")
_BAD_URL = re.compile(r"[^!#-;=?-~]")  # printable ASCII without space, '"', '<', '>'


# --- per-member checks (hot path: keep them to one regex each) ---------------------------


def checked_address(name: str, value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or _BAD_ADDRESS.search(value):
        raise ValueError(f"{name}: not a bare mail address: {value!r}")
    return value


def checked_line(name: str, value: str) -> str:
    if not value or _CONTROL.search(value):
        raise ValueError(f"{name}: empty or contains control characters: {value!r}")
    return value


def checked_message_id(value: str) -> str:
    match = _MESSAGE_ID.fullmatch(value)
    if match is None or value.startswith("<") != value.endswith(">"):
        raise ValueError(f"message_id: not a msg-id: {value!r}")
    return f"<{match.group(1)}>"


def checked_url(value: str) -> str:
    if not value.lower().startswith("https://") or len(value) > 900 or _BAD_URL.search(value):
        raise ValueError(f"one_click_url: not a plain https URL: {value!r}")
    return value


# --- shared headers (once per bulletin) --------------------------------------------------


def one_line(value: str) -> str:
    """Collapse control characters and whitespace runs: header text is one line."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _header(name: str, tokens: list[str]) -> str:
    """Join tokens with spaces, folding between them so no line passes 78 characters."""
    lines, width = [tokens[0]], len(name) + 2 + len(tokens[0])
    for token in tokens[1:]:
        if width + 1 + len(token) > 78:
            lines.append(token)
            width = 1 + len(token)
        else:
            lines[-1] += " " + token
            width += 1 + len(token)
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-words of at most 75 characters, never splitting a character."""
    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > 45:  # 45 octets are 60 base64 characters
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words]


def _mixed_tokens(text: str, plain: re.Pattern[str]) -> list[str]:
    """Words matching ``plain`` stay readable; each run of other words becomes encoded-words.

    A run is encoded with its inner spaces, as decoders drop the space between two
    encoded-words; plain words between runs keep runs apart.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if plain.fullmatch(word):
            if run:
                tokens += _encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _encoded_words(" ".join(run))
    return tokens


def _phrase_tokens(phrase: str) -> list[str]:
    """A display name or List-Id phrase: atoms, one quoted-string, or encoded-words.

    Any "=?" is encoded, quoted or not: some clients decode encoded-words even inside
    quotes, which would let a name show text it does not contain.
    """
    if not phrase:
        return []
    if phrase.isascii() and "=?" not in phrase:
        if _ATOMS.fullmatch(phrase):
            return phrase.split(" ")
        quoted = phrase.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}"'.split(" ")  # a fold inside a quoted-string keeps its space
    return _mixed_tokens(phrase, _PLAIN_ATOM)


def encode_from(display: str, address: str) -> str:
    return _header("From", [*_phrase_tokens(display), f"<{address}>"])


def encode_subject(subject: str) -> str:
    return _header("Subject", _mixed_tokens(subject, _PLAIN_WORD))


def encode_list_id(list_name: str, list_tag: str) -> str:
    return _header("List-Id", [*_phrase_tokens(list_name), f"<{list_tag}>"])


def prefixed_subject(original: MIMEPart | None, prefix: str, neutral: str) -> str:
    subject = ""
    if original is not None:
        try:
            # The bottom-most Subject: DKIM signs bottom-up, a prepended one is unsigned.
            values = original.get_all("Subject") or []
            subject = one_line(str(values[-1])) if values else ""
        except Exception:  # a broken header must not stop the bulletin
            subject = ""
    if len(subject) > _MAX_SUBJECT:
        subject = subject[: _MAX_SUBJECT - 1] + "…"
    subject = subject or neutral
    prefix = one_line(prefix)
    if prefix and prefix.casefold() not in subject.casefold():
        subject = f"{prefix} {subject}"
    return subject
