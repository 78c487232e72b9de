"""Member lists as CSV, for ``members import`` and ``members export``: pure text in and out.

The format is ``email,name`` with a header line. Reading is forgiving where spreadsheets
differ and strict where a mistake would add the wrong people:

- a UTF-8 byte order mark and ``;`` as separator (Dutch Excel exports) are accepted;
  the header decides the separator;
- the header may say ``email`` alone, and ``e-mail``/``naam`` are understood; other
  columns (a phone number, a street) are ignored;
- every bad row is reported with its line number and the good rows are still returned;
  a second row for the same address is reported and dropped.

Writing protects against CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is prefixed with ``'`` so a spreadsheet shows it as text
instead of running it as a formula. The *address* column is protected too, because
``=cmd|'/Ccalc'!A0@evil.example`` is a syntactically valid address that anyone can
subscribe. A cell already starting with ``'`` gets one more, so reading can remove
exactly one again and an export always imports unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bin_gateway.config import address_key, normalise_address, quoted
from bin_gateway.render_headers import one_line

if TYPE_CHECKING:
    from _csv import Reader  # the stub's name for what csv.reader() returns

__all__ = ["CsvResult", "MemberRow", "normalise_address", "read_members_csv", "write_members_csv"]

_EMAIL_HEADERS = ("email", "e-mail", "emailadres", "e-mailadres")
_NAME_HEADERS = ("name", "naam")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GUARDED = (*_FORMULA_STARTS, "'")


@dataclass(frozen=True, slots=True)
class MemberRow:
    email: str  # normalised: local part as written, domain a lower-case A-label
    name: str  # one line, control characters replaced by spaces; "" when absent
    line: int  # the line of the file the row starts on (1 = the header)


@dataclass(frozen=True, slots=True)
class CsvResult:
    rows: list[MemberRow]
    problems: list[str]  # "line 7: ..." each; the rows above are still usable


def read_members_csv(text: str) -> CsvResult:
    """Parse an ``email,name`` CSV; every bad or duplicate row becomes one problem."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return CsvResult([], ['the file is empty (expected a header line "email,name")'])
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    # strict: a stray quote is reported, not silently glued into the next rows' cells
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except csv.Error as exc:
        return CsvResult([], [f"line 1: not readable as CSV ({exc})"])
    columns = _columns(header)
    if columns is None:
        found = quoted(delimiter.join(header))
        return CsvResult([], [f'line 1: the header must be "email,name" or "email", not {found}'])
    return _read_rows(reader, *columns)


def _columns(header: list[str]) -> tuple[int, int | None] | None:
    """Index of the address column and of the name column (if any) in the header."""
    email = next((i for i, cell in enumerate(header) if cell in _EMAIL_HEADERS), None)
    name = next((i for i, cell in enumerate(header) if cell in _NAME_HEADERS), None)
    return None if email is None else (email, name)


def _read_rows(reader: Reader, email_at: int, name_at: int | None) -> CsvResult:
    rows: list[MemberRow] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    start = reader.line_num + 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1  # a quoted cell may span lines
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and the ";;;" rows spreadsheets append
            raw = _unprotect(_cell(cells, email_at).strip())
            try:
                email = normalise_address(raw) if raw else ""
            except ValueError as exc:
                problems.append(f"line {line}: {exc}")
                continue
            if not email:
                problems.append(f"line {line}: the e-mail address is missing")
                continue
            key = address_key(email) or email
            if key in first_line_of:
                problems.append(
                    f"line {line}: {quoted(raw)} is already on line {first_line_of[key]}"
                )
                continue
            first_line_of[key] = line
            name = "" if name_at is None else _clean_name(_cell(cells, name_at))
            rows.append(MemberRow(email, name, line))
    except csv.Error as exc:
        problems.append(f"line {start}: not readable as CSV ({exc}); stopped here")
    return CsvResult(rows, problems)


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _clean_name(text: str) -> str:
    """One line of text: names end up in headers, where a newline would inject a header."""
    return one_line(_unprotect(text.strip()))


def _protect(text: str) -> str:
    """Prefix ``'`` to a formula-like cell, and to one starting with ``'`` (so it reads back)."""
    return "'" + text if text.startswith(_GUARDED) else text


def _unprotect(text: str) -> str:
    """Undo ``_protect``; a human's ``'t Hooft`` (no formula character next) stays as it is."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_GUARDED) else text


def write_members_csv(rows: Iterable[tuple[str, str]]) -> str:
    """``(email, name)`` pairs -> CSV text with the header ``email,name``, safe for Excel."""
    out = io.StringIO()
    # "\r\n" as RFC 4180 says; it also makes the writer quote a lone "\r" in a cell
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["email", "name"])
    writer.writerows([_protect(email), _protect(name)] for email, name in rows)
    return out.getvalue()
