"""What arrives at a VERP bounce address, read by ``bounces.classify`` (SPEC F5).

The corpus in tests/messages/bounces/ holds one message per file as each MTA really
writes it (Postfix, Exim, Microsoft 365, Gmail, Yahoo, qmail, Sendmail, a Dutch-language
NDR) plus the things that are not bounces (an out-of-office, a person, a success report,
a report about somebody else); ``cases.toml`` says per file what the verdict must be.
The files hold ``{bounce_address}`` and ``{recipient}``; the test fills them in and
hands the message over with CRLF line ends, as the SMTP server stores it.

Besides the corpus: ``classify`` is fed hostile and broken input and must neither raise
nor call it a bounce, and the detail it returns (shown to coordinators) is always one
clean line of at most 300 characters.
"""

from __future__ import annotations

import random
import re
import time
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from bin_gateway.bounces import BounceKind, BounceVerdict, classify

BOUNCES = Path(__file__).resolve().parent / "messages" / "bounces"
RECIPIENT = "lid7@bewoners.example"
OTHER_MEMBER = "lid8@bewoners.example"
BOUNCE_ADDRESS = "bounce+0123456789abcdef01234567@bin.example.nl"
PLACEHOLDERS = ("{bounce_address}", "{recipient}")
MAX_DETAIL = 300

# Every one of these must be the start of some case's ``mta``.
MTAS = [
    "Postfix",
    "Exim",
    "Microsoft 365",
    "Gmail",
    "Yahoo",
    "qmail",
    "Sendmail",
    "Exchange Online out-of-office",
    "Thunderbird",
]


@dataclass(frozen=True, slots=True)
class BounceCase:
    stem: str
    mta: str
    kind: BounceKind
    detail: str
    about: str

    @property
    def path(self) -> Path:
        return BOUNCES / f"{self.stem}.eml"

    def raw(self, recipient: str = RECIPIENT, bounce_address: str = BOUNCE_ADDRESS) -> bytes:
        """The message as the gateway stores it: CRLF line ends, placeholders filled in."""
        data = self.path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        data = data.replace(b"{bounce_address}", bounce_address.encode("ascii"))
        return data.replace(b"{recipient}", recipient.encode("ascii"))


def load_cases() -> list[BounceCase]:
    with (BOUNCES / "cases.toml").open("rb") as f:
        table = tomllib.load(f)
    keys = {"mta", "kind", "detail", "about"}
    cases = []
    for stem, entry in table.items():
        if set(entry) != keys:
            raise ValueError(f"cases.toml [{stem}]: keys {sorted(entry)}, want {sorted(keys)}")
        cases.append(BounceCase(stem=stem, mta=entry["mta"], kind=BounceKind(entry["kind"]),
                                detail=entry["detail"], about=entry["about"]))
    return cases


CASES = load_cases()
FAILURES = [case for case in CASES if case.kind is not BounceKind.NONE]


def _ids(cases: list[BounceCase]) -> list[str]:
    return [case.stem for case in cases]


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _readable(raw: bytes) -> str:
    """Everything a reader of the message can see: the raw text and every decoded part."""
    message = message_from_bytes(raw, policy=policy.compat32)
    texts = [raw.decode("utf-8", "replace")]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def assert_clean_detail(verdict: BounceVerdict) -> None:
    """One line for a coordinator's mail: no line breaks or control characters, <= 300."""
    detail = verdict.detail
    assert isinstance(detail, str)
    assert len(detail) <= MAX_DETAIL, len(detail)
    bad = [c for c in detail if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    assert bad == [], f"control characters {bad!r} in {detail!r}"


# --- the corpus itself --------------------------------------------------------------------


def test_every_eml_has_a_case_and_every_case_an_eml() -> None:
    files = {path.stem for path in BOUNCES.glob("*.eml")}
    stems = [case.stem for case in CASES]
    assert [stem for stem, n in Counter(stems).items() if n > 1] == []
    assert sorted(files - set(stems)) == [], "files without a case in cases.toml"
    assert sorted(set(stems) - files) == [], "cases without a file"


def test_the_corpus_is_large_and_varied() -> None:
    kinds = Counter(case.kind for case in CASES)
    assert len(CASES) >= 14
    assert set(kinds) == set(BounceKind), kinds
    assert kinds[BounceKind.PERMANENT] >= 8
    assert kinds[BounceKind.TEMPORARY] >= 4
    assert kinds[BounceKind.NONE] >= 4
    missing = [mta for mta in MTAS if not any(case.mta.startswith(mta) for case in CASES)]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_the_file_is_a_mail_to_the_bounce_address(case: BounceCase) -> None:
    text = case.path.read_text("utf-8")
    unknown = set(re.findall(r"\{[a-z_]+\}", text)) - set(PLACEHOLDERS)
    assert unknown == set(), f"unknown placeholders {unknown}"
    assert "{bounce_address}" in text
    if case.kind is not BounceKind.NONE:
        assert "{recipient}" in text
    assert case.kind is BounceKind.NONE or case.detail, "a failure needs an expected detail"
    assert case.kind is not BounceKind.NONE or case.detail == ""

    raw = case.raw()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "RFC 5322 line limit"
    message = message_from_bytes(raw, policy=policy.default)
    assert BOUNCE_ADDRESS in str(message["To"])
    assert message["From"] is not None and message["Date"] is not None
    assert message.defects == []


@pytest.mark.parametrize("case", FAILURES, ids=_ids(FAILURES))
def test_the_expected_detail_is_in_the_message(case: BounceCase) -> None:
    """Else the detail expectation would test nothing the server said."""
    assert _squeeze(case.detail) in _squeeze(_readable(case.raw()))


# --- the verdicts ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_classify_gives_the_expected_verdict(case: BounceCase) -> None:
    verdict = classify(case.raw(), RECIPIENT)
    assert isinstance(verdict, BounceVerdict)
    assert (verdict.kind, case.detail in verdict.detail) == (case.kind, True), (
        f"{case.mta}: want {case.kind.value} with {case.detail!r}, got {verdict!r}")
    assert_clean_detail(verdict)


@pytest.mark.parametrize("case", FAILURES, ids=_ids(FAILURES))
def test_a_failure_never_counts_against_another_member(case: BounceCase) -> None:
    """The VERP address names the copy; a report naming another address is not about it."""
    assert classify(case.raw(), OTHER_MEMBER).kind is BounceKind.NONE


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_the_address_matches_whatever_its_capitals(case: BounceCase) -> None:
    """A member stored as "Lid7@Bewoners.Example" gets reports that spell it that way."""
    spelled = "Lid7@Bewoners.Example"
    raw = case.raw(recipient=spelled)
    assert classify(raw, spelled).kind is case.kind
    assert classify(raw, spelled.lower()).kind is case.kind


# --- hostile and broken input ---------------------------------------------------------------


def _nested_multipart(depth: int) -> bytes:
    head = (f"From: MAILER-DAEMON@mx.bewoners.example\r\nTo: {BOUNCE_ADDRESS}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nDate: Tue, 3 Nov 2026 10:12:06"
            " +0100\r\nMIME-Version: 1.0\r\n")
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                      for i in range(depth))
    closing = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    inner = f"Content-Type: text/plain\r\n\r\n<{RECIPIENT}>: nothing to see\r\n"
    return (head + opening + inner + closing).encode()


def _huge_header() -> bytes:
    return (f"From: MAILER-DAEMON@mx.bewoners.example\r\nTo: {BOUNCE_ADDRESS}\r\n"
            "Subject: " + "Undelivered Mail " * 70_000 + "\r\n"
            + "X-Junk: a\r\n" * 50_000 + "\r\nbody\r\n").encode()


def _broken_report() -> bytes:
    """A delivery-status part whose body is binary noise, with a base64 part that is not."""
    noise = random.Random(7).randbytes(4096)
    return (
        f"From: MAILER-DAEMON@mx.bewoners.example\r\nTo: {BOUNCE_ADDRESS}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    ).encode() + noise + b"\r\n--B--\r\n"


GARBAGE = {
    "empty": b"",
    "binary junk": random.Random(4).randbytes(1 << 16),
    "nul bytes": b"\x00" * 4096,
    "crlf only": b"\r\n" * 1000,
    "headers without body": f"From: x@example.org\r\nTo: {BOUNCE_ADDRESS}\r\n".encode(),
    "300-deep multipart nest": _nested_multipart(300),
    "huge header": _huge_header(),
    "broken report": _broken_report(),
}


@pytest.mark.parametrize("raw", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_is_not_a_bounce_and_never_raises(raw: bytes) -> None:
    started = time.monotonic()
    verdict = classify(raw, RECIPIENT)
    assert time.monotonic() - started < 20, "a slow classify blocks the bounce worker"
    assert verdict.kind is BounceKind.NONE
    assert_clean_detail(verdict)


HOSTILE_WORDS = ("550 5.1.1 \x1b[31mUser\x00 unknown\x07\r\x0b\x0c\x7f\u2028\u2029\x85"
                 + "\tvery long explanation" * 400)


def test_a_hostile_dsn_diagnostic_becomes_one_clean_line() -> None:
    diagnostic = HOSTILE_WORDS.replace("\r", "").replace("\u2028", "").replace("\u2029", "")
    raw = (
        f"From: MAILER-DAEMON@mx.bewoners.example (Mail Delivery System)\r\n"
        f"To: {BOUNCE_ADDRESS}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.bewoners.example\r\n\r\n"
        f"Final-Recipient: rfc822; {RECIPIENT}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n    folded on\r\n\tand on\r\n\r\n--B--\r\n"
    ).encode()
    verdict = classify(raw, RECIPIENT)
    assert verdict.kind is BounceKind.PERMANENT
    assert "5.1.1" in verdict.detail
    assert_clean_detail(verdict)


def test_a_hostile_plain_bounce_becomes_one_clean_line() -> None:
    raw = (
        f"X-Failed-Recipients: {RECIPIENT}\r\nAuto-Submitted: auto-replied\r\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.bewoners.example>\r\n"
        f"To: {BOUNCE_ADDRESS}\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        f"  {RECIPIENT}\r\n    host mx.bewoners.example [192.0.2.25]: {HOSTILE_WORDS}\r\n"
    ).encode()
    verdict = classify(raw, RECIPIENT)
    assert verdict.kind is BounceKind.PERMANENT
    assert "5.1.1" in verdict.detail
    assert_clean_detail(verdict)
