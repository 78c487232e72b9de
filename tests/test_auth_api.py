"""The public surface of bin_gateway.auth."""

from __future__ import annotations

import bin_gateway.auth


def test_every_exported_name_exists() -> None:
    """Each name in bin_gateway.auth.__all__ is importable from the package."""
    missing = [name for name in bin_gateway.auth.__all__ if not hasattr(bin_gateway.auth, name)]
    assert missing == []
    assert {"authenticate", "parse_author", "make_resolver", "verify_dkim", "check_spf"} <= set(
        bin_gateway.auth.__all__
    )
