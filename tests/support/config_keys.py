"""The keys the configuration reader knows, taken from the reader itself.

Used by the tests that hold documentation to the code (config.example.toml,
docs/deploying.md): a key the reader asks a table for, whether set or not, is known.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from pathlib import Path

from bin_gateway.config.reader import _read_config  # the walk over sections the loader does
from bin_gateway.config.table import Table

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLE = REPO / "config.example.toml"


def reader_keys() -> dict[str, set[str]]:
    """Section ("gateway", "lists", ...; "" for the top level) -> the keys the reader reads.

    The reader is run over config.example.toml; problems (key files that do not exist
    here) do not matter, only which keys it asked each table for.
    """
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    root = Table(raw, "", [], REPO)
    _read_config(root, str(EXAMPLE))
    return _keys_by_section(root, defaultdict(set))


def _keys_by_section(table: Table, found: dict[str, set[str]]) -> dict[str, set[str]]:
    found[re.sub(r"\[\d+\]", "", table.path)] |= table.read
    for child in table.children:
        _keys_by_section(child, found)
    return found
