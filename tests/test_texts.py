"""The gateway's own mail texts: every text exists in every language and fills completely."""

from __future__ import annotations

from importlib import resources
from string import Template

import pytest

from bin_gateway.decision import DecisionKind, decide_text
from bin_gateway.texts import LANGUAGES, render

MODERATION_FIELDS = frozenset(
    {
        *("agency_name", "sender_address", "subject", "list_name", "member_count"),
        *("expires", "attachments", "original_text", "warnings"),
    }
)
# the contract with the callers: exactly these placeholders per text
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "moderation_request": MODERATION_FIELDS,
    "moderation_reminder": MODERATION_FIELDS,
    "outcome_approved": frozenset({"subject", "list_name", "member_count", "coordinator"}),
    "outcome_rejected": frozenset({"subject", "list_name", "coordinator", "reason"}),
    "outcome_expired": frozenset({"subject", "list_name", "days"}),
    "decision_confirmed": frozenset({"subject", "list_name", "decision", "member_count"}),
    "already_decided": frozenset({"subject", "list_name", "decided_by", "decided_at", "decision"}),
    "decision_unclear": frozenset({"subject", "list_name", "first_line"}),
    "post_confirmed": frozenset({"subject", "list_name", "member_count"}),
}
# texts a coordinator may answer: a reply whose quote we fail to see must not decide
COORDINATOR_ASKED = ("moderation_request", "moderation_reminder", "decision_unclear")
CASES = [(lang, name) for lang in LANGUAGES for name in PLACEHOLDERS]


def _source(language: str, name: str) -> str:
    path = resources.files("bin_gateway.texts").joinpath(language, f"{name}.txt")
    return path.read_text("utf-8")


def _sentinels(name: str) -> dict[str, str]:
    return {field: f"«{field}»" for field in PLACEHOLDERS[name]}


@pytest.mark.parametrize(("language", "name"), CASES)
def test_text_uses_exactly_its_placeholders(language: str, name: str) -> None:
    """Each text's placeholders are exactly the documented set (no more, no fewer)."""
    template = Template(_source(language, name))
    assert template.is_valid()
    assert set(template.get_identifiers()) == PLACEHOLDERS[name]


@pytest.mark.parametrize(("language", "name"), CASES)
def test_text_renders_every_value_and_leaves_no_dollar(language: str, name: str) -> None:
    """Rendering fills every placeholder: each value shows up and no `$` is left."""
    values = _sentinels(name)
    text = render(language, name, **values)
    whole = f"{text.subject}\n{text.body}"
    assert text.subject and not text.subject.startswith("Subject")
    assert text.body.strip() and not text.body.startswith("\n")
    assert "$" not in whole
    for value in values.values():
        assert value in whole


@pytest.mark.parametrize(("language", "name"), CASES)
def test_text_refuses_a_missing_value(language: str, name: str) -> None:
    """Leaving out any one value is an error, never a silently half-filled mail."""
    values = _sentinels(name)
    values.pop(sorted(values)[0])
    with pytest.raises(KeyError):
        render(language, name, **values)


@pytest.mark.parametrize(("language", "name"), CASES)
def test_text_lines_fit_a_phone(language: str, name: str) -> None:
    """Template lines stay short enough to read without sideways scrolling."""
    assert all(len(line) <= 80 for line in _source(language, name).splitlines())


def test_every_language_has_the_same_texts() -> None:
    """Dutch and English offer the same set of texts, including all of ours."""
    names = [
        {p.name for p in resources.files("bin_gateway.texts").joinpath(lang).iterdir()}
        for lang in LANGUAGES
    ]
    assert names[0] == names[1]
    assert {f"{name}.txt" for name in PLACEHOLDERS} <= names[0]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", COORDINATOR_ASKED)
def test_no_line_of_a_question_to_a_coordinator_decides(language: str, name: str) -> None:
    """No line of our own question reads as OK/NEE, so an unseen quote cannot approve."""
    body = render(language, name, **_sentinels(name)).body
    for line in body.splitlines():
        assert decide_text(line).kind is DecisionKind.UNCLEAR, line


@pytest.mark.parametrize("language", LANGUAGES)
def test_moderation_request_explains_both_answers(language: str) -> None:
    """The moderation mail names the approve and the reject word and the member count."""
    body = render(language, "moderation_request", **_sentinels("moderation_request")).body
    approve, reject = ("OK", "NEE") if language == "nl" else ("OK", "NO")
    assert approve in body and reject in body
    assert "«member_count»" in body and "«expires»" in body
