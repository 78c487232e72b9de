"""The texts of every mail the gateway writes itself, per language.

Each text is a file ``<language>/<name>.txt`` (or ``.html``) holding a
:class:`string.Template`. A text whose first line starts with ``Subject:`` carries its
subject there; the body follows after a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

LANGUAGES = ("nl", "en")


@dataclass(frozen=True, slots=True)
class Text:
    subject: str
    body: str


@cache
def _template(language: str, filename: str) -> Template:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    source = resources.files(__package__).joinpath(language, filename).read_text("utf-8")
    return Template(source)


def render(language: str, name: str, **fields: object) -> Text:
    """Fill the text ``name`` in ``language``; every placeholder must be given."""
    filled = _template(language, f"{name}.txt").substitute(fields)
    subject = ""
    if filled.startswith("Subject:"):
        first, _, filled = filled.partition("\n")
        subject = first.removeprefix("Subject:").strip()
        filled = filled.lstrip("\n")
    return Text(subject=subject, body=filled)


def render_html(language: str, name: str, **fields: object) -> str:
    """Fill the HTML text ``name`` (values must already be HTML-escaped by the caller)."""
    return _template(language, f"{name}.html").substitute(fields)
