"""Member CSV import and export: bad rows with line numbers, Dutch Excel files, safe output."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bin_gateway.members_csv import (
    CsvResult,
    MemberRow,
    normalise_address,
    read_members_csv,
    write_members_csv,
)


def test_reads_good_rows_with_normalised_addresses() -> None:
    """Addresses keep their local part, get a lower-case domain; names are trimmed."""
    result = read_members_csv("email,name\nJan@Example.NL, Jan Jansen \npiet@example.nl,\n")
    assert result == CsvResult(
        rows=[MemberRow("Jan@example.nl", "Jan Jansen", 2), MemberRow("piet@example.nl", "", 3)],
        problems=[],
    )


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_kept() -> None:
    """Each bad row is one problem naming its line; the rows around it are still imported."""
    text = (
        "email,name\n"
        "a@example.nl,A\n"
        "jan@@x,Jan\n"
        ",Geen adres\n"
        "Jan <jan@example.nl>,Display name\n"
        "b@example.nl,B\n"
        "c@localhost,C\n"
    )
    result = read_members_csv(text)
    assert [(row.email, row.line) for row in result.rows] == [
        ("a@example.nl", 2),
        ("b@example.nl", 6),
    ]
    assert result.problems[0].startswith(
        'line 3: "jan@@x" is not a valid e-mail address (the part after the @-sign'
    )
    assert result.problems[1] == "line 4: the e-mail address is missing"
    assert result.problems[2].startswith('line 5: "Jan <jan@example.nl>" is not a valid')
    assert result.problems[3].startswith('line 7: "c@localhost" is not a valid')
    assert len(result.problems) == 4


def test_duplicates_within_the_file_are_reported_once_kept_once() -> None:
    """A second row for the same address (any case) is reported with the first line and dropped."""
    result = read_members_csv("email,name\na@example.nl,A\nb@example.nl,B\nA@EXAMPLE.nl,A2\n")
    assert [row.email for row in result.rows] == ["a@example.nl", "b@example.nl"]
    assert result.problems == ['line 4: "A@EXAMPLE.nl" is already on line 2']


def test_dutch_excel_export_with_bom_semicolons_and_crlf() -> None:
    """A BOM, ';' separators, CRLF, Dutch headers and extra columns are all understood."""
    text = (
        "\ufeffE-mail;Naam;Telefoon\r\n"
        "jan@example.nl;Jansen, Jan;06-12345678\r\n"
        ";;\r\n"
        "piet@example.nl;Piet;\r\n"
    )
    result = read_members_csv(text)
    assert result.problems == []
    assert result.rows == [
        MemberRow("jan@example.nl", "Jansen, Jan", 2),
        MemberRow("piet@example.nl", "Piet", 4),
    ]


def test_email_only_header_is_accepted() -> None:
    """A file with just an 'email' column imports with empty names."""
    result = read_members_csv("email\na@example.nl\n")
    assert result.rows == [MemberRow("a@example.nl", "", 2)]


@pytest.mark.parametrize("text", ["naam,adres\nx,y\n", "a@example.nl,A\n"])
def test_missing_header_imports_nothing(text: str) -> None:
    """Without an email header nothing is guessed: one problem on line 1, no rows."""
    result = read_members_csv(text)
    assert result.rows == []
    assert len(result.problems) == 1 and result.problems[0].startswith("line 1: the header must")


def test_empty_file_is_one_problem() -> None:
    """An empty (or blank) file says so instead of importing nothing silently."""
    assert read_members_csv("  \n").problems == [
        'the file is empty (expected a header line "email,name")'
    ]


def test_multiline_name_is_flattened_and_lines_count_from_the_row_start() -> None:
    """A quoted name spanning lines becomes one line; later rows keep their true line numbers."""
    text = 'email,name\na@example.nl,"Jan\r\nBcc: x@evil.example"\nb@example.nl,"x\ty"\n'
    result = read_members_csv(text)
    assert result.rows == [
        MemberRow("a@example.nl", "Jan Bcc: x@evil.example", 2),
        MemberRow("b@example.nl", "x y", 4),
    ]


def test_broken_quoting_stops_with_a_problem() -> None:
    """A stray quote is reported at the row where it starts; rows before it are kept."""
    result = read_members_csv('email,name\na@example.nl,A\nb@example.nl,"B\nc@example.nl,C\n')
    assert [row.email for row in result.rows] == ["a@example.nl"]
    assert len(result.problems) == 1
    assert result.problems[0].startswith("line 3: not readable as CSV")


def test_export_has_header_and_quotes_safely() -> None:
    """Commas, quotes and newlines in names are quoted so the file reads back intact."""
    text = write_members_csv([("a@example.nl", 'Jansen, Jan "JJ"'), ("b@example.nl", "")])
    assert text == 'email,name\r\na@example.nl,"Jansen, Jan ""JJ"""\r\nb@example.nl,\r\n'
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == [
        "a@example.nl",
        'Jansen, Jan "JJ"',
    ]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_export_defuses_formulas_in_both_columns(start: str) -> None:
    """Cells a spreadsheet would run as a formula get a leading apostrophe, addresses too."""
    text = write_members_csv([(f"{start}cmd@example.nl", f"{start}SUM(A1)")])
    row = list(csv.reader(io.StringIO(text, newline="")))[1]
    assert row == [f"'{start}cmd@example.nl", f"'{start}SUM(A1)"]


def test_export_of_a_hostile_subscriber_imports_back_unchanged() -> None:
    """A formula-shaped address (valid syntax) survives export and re-import as itself."""
    hostile = "=cmd|'/Ccalc'!A0@evil.example"
    text = write_members_csv([(hostile, '=HYPERLINK("http://x")'), ("a@example.nl", "'=x")])
    assert "\n'=cmd|" in text and ",''=x" in text
    result = read_members_csv(text)
    assert result.problems == []
    assert [(row.email, row.name) for row in result.rows] == [
        (hostile, '=HYPERLINK("http://x")'),
        ("a@example.nl", "'=x"),
    ]


def test_apostrophe_names_written_by_people_are_kept() -> None:
    """A Dutch name like 't Hooft in a hand-made file keeps its apostrophe."""
    result = read_members_csv("email,name\na@example.nl,'t Hooft\n")
    assert result.rows == [MemberRow("a@example.nl", "'t Hooft", 2)]


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")))


@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z0-9=+\-'][a-z0-9]{0,8}", fullmatch=True), _names),
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_export_then_import_round_trips(pairs: list[tuple[str, str]]) -> None:
    """Whatever names and local parts are exported, importing gives the same members back."""
    rows = [(f"{local}@example.nl", name) for local, name in pairs]
    result = read_members_csv(write_members_csv(rows))
    assert result.problems == []
    assert [(r.email, r.name) for r in result.rows] == [
        (email, " ".join(name.split())) for email, name in rows
    ]


def test_normalise_address() -> None:
    """normalise_address trims, lower-cases the domain (A-label) and explains refusals."""
    assert normalise_address(" Jan@Example.NL ") == "Jan@example.nl"
    assert normalise_address("a@München.de") == "a@xn--mnchen-3ya.de"
    with pytest.raises(ValueError, match=r'^"jan@" is not a valid e-mail address \(.+\)$'):
        normalise_address("jan@")
