"""Signed link tokens: round trip, any change refused, the secret kept private."""

from __future__ import annotations

import stat
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway.link_tokens import SECRET_NAME, LinkClaim, LinkSigner

SIGNER = LinkSigner(b"k" * 32)


def test_round_trip_and_another_secret_refuses() -> None:
    """A token reads back its claim; the same token under another secret is nothing."""
    token = SIGNER.make(42, "buurt-noord", 1_900_000_000)
    assert SIGNER.read(token) == LinkClaim(42, "buurt-noord", 1_900_000_000)
    assert LinkSigner(b"x" * 32).read(token) is None


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), char=st.sampled_from("AZaz09-_."))
def test_any_changed_character_is_refused(position: int, char: str) -> None:
    """Changing any one character of a token makes it worthless."""
    token = SIGNER.make(7, "buurt-zuid", 1_900_000_000)
    index = position % len(token)
    changed = token[:index] + char + token[index + 1:]
    if changed != token:
        assert SIGNER.read(changed) is None


def test_garbage_is_refused() -> None:
    for junk in ("", ".", "abc", "a.b", "!!!.???", "x" * 400, "AAAA.AAAA"):
        assert SIGNER.read(junk) is None


def test_secret_is_created_once_and_private(tmp_path: Path) -> None:
    """The first use writes 32 random bytes, mode 0600; later uses read the same."""
    first = LinkSigner.load_or_create(tmp_path)
    mode = stat.S_IMODE((tmp_path / SECRET_NAME).stat().st_mode)
    assert mode == 0o600
    token = first.make(1, "l", 2)
    assert LinkSigner.load_or_create(tmp_path).read(token) == LinkClaim(1, "l", 2)
