"""Reading a coordinator's OK / NEE from real-looking replies (SPEC F2)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway.decision import (
    APPROVE_WORDS,
    REJECT_WORDS,
    DecisionKind,
    decide_text,
    read_decision,
)

MESSAGES = Path(__file__).parent / "messages" / "decisions"
A, R, U = DecisionKind.APPROVE, DecisionKind.REJECT, DecisionKind.UNCLEAR

# file, kind, note, reason
REPLIES = [
    ("iphone_nl_ok.eml", A, "", ""),
    ("outlook_desktop_html_ok.eml", A, "", ""),
    ("outlook_plain_oorspronkelijk.eml", A, "graag vandaag nog versturen.", ""),
    (
        "gmail_nl_wrapped_attribution.eml",
        A,
        "en zet er graag bij dat de wijkagent donderdag spreekuur heeft.",
        "",
    ),
    ("gmail_en_bottom_post.eml", A, "Please also mention the meeting on Thursday.", ""),
    (
        "nee_with_reason_qp.eml",
        R,
        "",
        "klopt niet, de straat heet anders\nHet is de Kerkstraat in Noord, niet de Kerklaan. "
        "Graag corrigeren en opnieuw sturen, dan keur ik het meteen goed.",
    ),
    ("ok_note_facebook_base64.eml", A, "Graag ook delen op Facebook", ""),
    ("refusal_ok_only_in_quote.eml", U, "", ""),
    ("empty_reply.eml", U, "", ""),
    ("html_div_akkoord.eml", A, "", ""),
    ("windows1252_nee.eml", R, "", "de foto’s horen bij een ander bericht."),
    ("samsung_nl_ja.eml", A, "", ""),
    ("outlook_web_html_nee.eml", R, "", "dit bericht is vorige week al verstuurd."),
    (
        "thunderbird_flowed_note.eml",
        A,
        "Dit graag ook doorsturen naar de buurtapp; de wijkagent vroeg er vandaag speciaal om.",
        "",
    ),
    ("oke_with_attached_ok.eml", U, "", ""),
    ("broken_mime_unknown_charset.eml", A, "", ""),
]


def _load(name: str) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes((MESSAGES / name).read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def test_every_reply_file_is_in_the_table() -> None:
    """No .eml under messages/decisions is left out of the table (nor listed twice)."""
    listed = [name for name, *_ in REPLIES]
    assert sorted(listed) == sorted(p.name for p in MESSAGES.glob("*.eml"))


@pytest.mark.parametrize(("name", "kind", "note", "reason"), REPLIES)
def test_reply_decides(name: str, kind: DecisionKind, note: str, reason: str) -> None:
    """Each client's real-looking reply yields the expected decision, note and reason."""
    decision = read_decision(_load(name))
    assert (decision.kind, decision.note, decision.reason) == (kind, note, reason)


def test_refusal_reports_its_own_first_line() -> None:
    """An unclear reply carries the coordinator's own first line, not a quoted one."""
    decision = read_decision(_load("refusal_ok_only_in_quote.eml"))
    assert decision.first_line == "Liever niet, dit nieuws is al een week oud."


def test_empty_reply_has_no_first_line() -> None:
    """A reply with nothing but the quote is UNCLEAR with an empty first line."""
    assert read_decision(_load("empty_reply.eml")).first_line == ""


@pytest.mark.parametrize(
    ("text", "kind", "note", "reason"),
    [
        ("OK", A, "", ""),
        ("ok", A, "", ""),
        ("Ok!", A, "", ""),
        ("OK.", A, "", ""),
        ("ja,", A, "", ""),
        ("Okay", A, "", ""),
        ("Oké", A, "", ""),
        ("OKÉ", A, "", ""),
        ("Oke\u0301", A, "", ""),  # decomposed é (NFD) as some phones send it
        ("Akkoord", A, "", ""),
        ("GOEDKEUREN", A, "", ""),
        ("approve", A, "", ""),
        ("*OK*", A, "", ""),
        ("  OK  ", A, "", ""),
        ("\ufeffOK", A, "", ""),
        ("OK 👍", A, "", ""),
        ("Ja, prima zo", A, "prima zo", ""),
        ("OK\nGraag ook delen op Facebook", A, "Graag ook delen op Facebook", ""),
        ("OK\n\nEerste regel\n\n\nTweede regel\n", A, "Eerste regel\n\nTweede regel", ""),
        ("OK\nnoot\n-- \nJan\n06-1234", A, "noot", ""),
        ("OK\nnoot\n> quote\nna de quote", A, "noot", ""),
        ("NEE", R, "", ""),
        ("nee.", R, "", ""),
        ("No", R, "", ""),
        ("Afwijzen", R, "", ""),
        ("REJECT - wrong street", R, "", "wrong street"),
        ("NEE: klopt niet, de straat heet anders", R, "", "klopt niet, de straat heet anders"),
        ("Nee hoor, prima", R, "", "hoor, prima"),
        ("Nee – te laat\nHet was vorige week.", R, "", "te laat\nHet was vorige week."),
        ("OK?", U, "", ""),
        ("Nee?", U, "", ""),
        ("Oke", U, "", ""),
        ("O.K.", U, "", ""),
        ("Okidoki", U, "", ""),
        ("Prima, versturen maar", U, "", ""),
        ("Hoi Jan,\nOK", U, "", ""),
        ("Nope", U, "", ""),
        ("JAwel", U, "", ""),
        ("", U, "", ""),
        ("\n\n   \n", U, "", ""),
        ("> OK\n> Ja", U, "", ""),
        ("Verzonden vanaf mijn iPhone\n\n> OK", U, "", ""),
    ],
)
def test_first_word_rule(text: str, kind: DecisionKind, note: str, reason: str) -> None:
    """Only a listed word, first on the first own line, decides; the rest is note/reason."""
    decision = decide_text(text)
    assert (decision.kind, decision.note, decision.reason) == (kind, note, reason)


def test_first_line_is_kept_and_bounded() -> None:
    """The deciding line is reported (for logs and the unclear mail), cut to 200 chars."""
    assert decide_text("Misschien?\nOK").first_line == "Misschien?"
    assert len(decide_text("x" * 5000).first_line) == 200


def test_ok_in_an_outlook_quote_never_counts() -> None:
    """An OK below Outlook's header block (quoted without ">") does not approve."""
    text = (
        "\n\nVan: Moderatie BIN Noord <moderatie+abc@bin.example.nl>\n"
        "Verzonden: dinsdag 3 november 2026 10:12\nAan: Jan\nOnderwerp: Graag je besluit\n\nOK\n"
    )
    assert decide_text(text).kind is U


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=40)))
def test_quoted_lines_never_decide(lines: list[str]) -> None:
    """Whatever is quoted with ">" (an OK included) never approves or rejects."""
    text = "\n".join(f"> {line}" for line in ["OK", *lines, "NEE"])
    assert decide_text(text).kind is U


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_decision(text: str) -> None:
    """Any text at all gives a Decision; approve only when the first own word is listed."""
    decision = decide_text(text)
    first_word = re.search(r"[^\W_]+", decision.first_line)
    word = first_word.group(0).casefold() if first_word else ""
    assert (word in APPROVE_WORDS) == (decision.kind is A) or decision.kind is U
    assert (word in REJECT_WORDS) == (decision.kind is R) or decision.kind is U


def test_word_lists_are_the_documented_ones() -> None:
    """The approve and reject words are exactly SPEC F2's (plus OKAY/OKÉ) and disjoint."""
    assert {"ok", "okay", "oké", "ja", "akkoord", "goedkeuren", "approve"} == APPROVE_WORDS
    assert {"nee", "no", "afwijzen", "reject"} == REJECT_WORDS
    assert not APPROVE_WORDS & REJECT_WORDS


def test_html_only_reply_with_blockquote_approves() -> None:
    """An HTML-only <p>OK</p> + <blockquote> reply approves (security notes §5)."""
    message = EmailMessage()
    message.set_content(
        "<html><body><p>OK</p><blockquote><p>NEE</p><p>Antwoord met OK</p></blockquote>"
        "</body></html>",
        subtype="html",
    )
    assert read_decision(message).kind is A


@pytest.mark.parametrize(("name", "kind", "note", "reason"), REPLIES)
def test_legacy_parser_gives_the_same_decision(
    name: str, kind: DecisionKind, note: str, reason: str
) -> None:
    """A message parsed with the stdlib's compat32 policy decides the same way."""
    message = message_from_bytes((MESSAGES / name).read_bytes())
    decision = read_decision(message)
    assert (decision.kind, decision.note, decision.reason) == (kind, note, reason)
