"""The reply corpus itself (tests/messages/replies/): complete, parseable, and meaningful.

Every .eml has its expectations and every expectation its .eml; every message parses;
every identity string a case expects to vanish really is in the input (else the case
tests nothing), and no new-text snippet that must survive holds one of them.
"""

from __future__ import annotations

from collections import Counter
from email import policy
from email.parser import BytesParser

import pytest

from tests.support.reply_corpus import (
    KINDS,
    PLACEHOLDER,
    REPLIES,
    ReplyCase,
    decoded_dump,
    leaks,
    load_cases,
    squeeze,
)

CASES = load_cases()
ADDRESS = "reactie+0123456789abcdef01234567@bin.example.nl"

# The clients the corpus must cover (a case's ``client`` starts with one of these).
CLIENTS = [
    "Gmail web (nl)",
    "Gmail web (en)",
    "Gmail Android (nl)",
    "Gmail Android (en)",
    "Outlook desktop (nl)",
    "Outlook on the web",
    "Outlook iOS",
    "Apple Mail macOS",
    "Apple Mail iOS",
    "Thunderbird",
    "Samsung Email",
    "eM Client",
    "KPN webmail",
    "Ziggo webmail",
]


def _ids(cases: list[ReplyCase]) -> list[str]:
    return [case.stem for case in cases]


def test_every_eml_has_a_case_and_every_case_an_eml() -> None:
    files = {path.stem for path in REPLIES.glob("*.eml")}
    stems = [case.stem for case in CASES]
    assert [stem for stem, n in Counter(stems).items() if n > 1] == []
    assert sorted(files - set(stems)) == []
    assert sorted(set(stems) - files) == []


def test_the_corpus_is_large_and_varied() -> None:
    kinds = Counter(case.kind for case in CASES)
    assert len(CASES) >= 32
    assert kinds["relay"] >= 30
    assert set(kinds) == set(KINDS), kinds
    missing = [c for c in CLIENTS if not any(case.client.startswith(c) for case in CASES)]
    assert missing == []


def test_a_member_is_one_person() -> None:
    """A member address has one name throughout, and no two members share a name."""
    names: dict[str, set[str]] = {}
    for case in CASES:
        names.setdefault(case.member.lower(), set()).add(case.name)
    assert {m: n for m, n in names.items() if len(n) > 1} == {}
    assert [n for n, k in Counter(c.name for c in CASES).items() if k > 1] == []


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_the_file_parses_and_uses_the_placeholder(case: ReplyCase) -> None:
    data = case.path.read_bytes()
    assert PLACEHOLDER in data, "the reply address placeholder is missing"
    raw = case.raw(ADDRESS)
    assert PLACEHOLDER not in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert message["To"] is not None and ADDRESS in str(message["To"])
    for part in message.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)
    if case.kind != "bounce":
        assert case.member.lower() in str(message["From"]).lower()


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_every_absent_string_is_in_the_input(case: ReplyCase) -> None:
    """Otherwise the expectation tests nothing."""
    assert case.absent, "a case without identity strings tests nothing"
    dump = decoded_dump(case.raw(ADDRESS))
    assert leaks(dump, case.absent) == list(case.absent)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_new_text_holds_no_identity(case: ReplyCase) -> None:
    for snippet in case.present:
        assert leaks(snippet, case.absent) == [], snippet


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_the_new_text_is_in_the_input(case: ReplyCase) -> None:
    if case.kind == "relay":
        assert case.present, "a relayed reply keeps some new text"
    else:
        assert case.present == ()
    dump = squeeze(decoded_dump(case.raw(ADDRESS)))
    assert [p for p in case.present if squeeze(p) not in dump] == []


def test_dropped_and_images_are_simple() -> None:
    words = {"vCard", "agenda", "PDF", "handtekening", "doorgestuurd"}
    for case in CASES:
        assert set(case.dropped) <= words, case.stem
        assert case.images is None or case.images >= 0
