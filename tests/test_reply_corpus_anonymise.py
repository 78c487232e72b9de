"""The reply corpus (tests/messages/replies/) through ``anonymise`` (SPEC F4).

For every reply that is to be relayed: none of the case's identity strings is anywhere in
the entity (every header and part decoded, image metadata included), the member's new
text is there, the dropped parts are named in the report and the images are kept. A
quote-only reply has no text of the member's own; an encrypted one is reported as such.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest

from bin_gateway.anonymise import Identity, Policy, Report, anonymise
from tests.support.reply_corpus import ReplyCase, decoded_dump, leaks, load_cases, squeeze

ADDRESS = "reactie+0123456789abcdef01234567@bin.example.nl"
CASES = load_cases()


def _cases(*kinds: str) -> list[ReplyCase]:
    return [case for case in CASES if case.kind in kinds]


def _run(case: ReplyCase) -> tuple[bytes, Report]:
    return anonymise(case.raw(ADDRESS), Identity((case.member,), (case.name,)), Policy())


def _image_parts(entity: bytes) -> int:
    message = BytesParser(policy=policy.default).parsebytes(entity)
    return sum(part.get_content_maintype() == "image" for part in message.walk())


RELAY = _cases("relay")


@pytest.mark.parametrize("case", RELAY, ids=[case.stem for case in RELAY])
def test_nothing_identifying_is_relayed(case: ReplyCase) -> None:
    entity, _ = _run(case)
    assert leaks(decoded_dump(entity), case.absent) == []


@pytest.mark.parametrize("case", RELAY, ids=[case.stem for case in RELAY])
def test_the_new_text_is_relayed(case: ReplyCase) -> None:
    entity, report = _run(case)
    assert report.own_text
    assert not report.encrypted
    dump = squeeze(decoded_dump(entity))
    assert [snippet for snippet in case.present if squeeze(snippet) not in dump] == []


@pytest.mark.parametrize("case", RELAY, ids=[case.stem for case in RELAY])
def test_dropped_parts_and_kept_images(case: ReplyCase) -> None:
    entity, report = _run(case)
    named = " | ".join(report.dropped).casefold()
    assert [word for word in case.dropped if word.casefold() not in named] == [], report.dropped
    if case.images is not None:
        assert (report.images_kept, _image_parts(entity)) == (case.images, case.images)


QUOTE_ONLY = _cases("quote-only")


@pytest.mark.parametrize("case", QUOTE_ONLY, ids=[case.stem for case in QUOTE_ONLY])
def test_a_quote_only_reply_has_no_own_text(case: ReplyCase) -> None:
    _, report = _run(case)
    assert not report.own_text


ENCRYPTED = _cases("encrypted")


@pytest.mark.parametrize("case", ENCRYPTED, ids=[case.stem for case in ENCRYPTED])
def test_an_encrypted_reply_is_reported(case: ReplyCase) -> None:
    _, report = _run(case)
    assert report.encrypted
