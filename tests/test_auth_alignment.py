"""DMARC relaxed alignment over the Public Suffix List."""

from __future__ import annotations

import pytest

from bin_gateway.auth.alignment import aligned, normalise_domain, organizational_domain


@pytest.mark.parametrize(
    ("domain", "organisation"),
    [
        ("politie.example", "politie.example"),
        ("mail.politie.example", "politie.example"),
        ("Mail.Politie.Example.", "politie.example"),
        ("politie-noord.example", "politie-noord.example"),
        ("a.b.co.uk", "b.co.uk"),
        ("co.uk", "co.uk"),
        ("x.github.io", "x.github.io"),
        ("pοlitie.example", "xn--plitie-i0e.example"),
    ],
)
def test_organizational_domain(domain: str, organisation: str) -> None:
    """The registrable domain by the PSL; a public suffix stays itself."""
    assert organizational_domain(domain) == organisation


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("mail.politie.example", "politie.example", True),
        ("politie.example", "POLITIE.example", True),
        ("politie.example", "evil.example", False),
        ("politie-noord.example", "politie.example", False),
        ("politie.example.evil.example", "politie.example", False),
        ("xn--plitie-i0e.example", "politie.example", False),
        ("x.github.io", "y.github.io", False),
        ("b.co.uk", "a.co.uk", False),
        ("", "", False),
        ("bad domain", "bad domain", False),
    ],
)
def test_aligned(a: str, b: str, expected: bool) -> None:
    """Relaxed alignment: same organisational domain, and only then."""
    assert aligned(a, b) is expected
    assert aligned(b, a) is expected


def test_unusable_domain_normalises_to_empty() -> None:
    """A name with an underscore or a space is no domain name for alignment."""
    assert normalise_domain("a_b.example") == ""
    assert normalise_domain("a b.example") == ""
