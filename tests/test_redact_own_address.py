"""The member's own address in their text, with the contact-details sweep off, so only the
identity patterns can catch it (``redact_contact_details = false`` lists rely on them).

Those patterns are compiled only for addresses whose pieces occur in the text; these
tests hold that shortcut to re.IGNORECASE's rules, including the four characters outside
ASCII that it matches to ASCII letters (İ ı ſ K).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bin_gateway.redact import REDACTED, _haystack, _may_occur, redact

ADDRESS = "kees.devries+bin@vriesweb.nl"


def own(text: str) -> str:
    return redact(text, [ADDRESS], [], contact_details=False).text


@pytest.mark.parametrize("written", [
    "kees.devries+bin@vriesweb.nl",
    "KEES.DEVRIES@VRIESWEB.NL",
    "\u212aees.devries@vriesweb.nl",  # Kelvin sign K
    "kee\u017f.devrie\u017f@vrie\u017fweb.nl",  # long s
    "kees.devr\u0131es@vr\u0130esweb.nl",  # dotless i, dotted capital I
    "kees.devries (at) vriesweb (dot) nl",
    "kees (punt) devries [apenstaartje] vriesweb [punt] nl",
    "mail kees.devries maar",  # the local part alone
    "zie www.vriesweb.nl en shop.vriesweb.nl",  # the member's own domain
])
def test_the_members_address_in_any_spelling_is_redacted(written: str) -> None:
    text = own(f"Groet, {written}.")
    assert REDACTED in text
    assert not re.search(r"vries|kees", text, re.IGNORECASE), text


def test_an_address_not_in_the_text_changes_nothing() -> None:
    text = "Ik zag een man bij de school, rond 22:00. Bakker aan de overkant ook."
    assert own(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + ".-_", min_size=1,
               max_size=12).filter(lambda s: s.strip(".") == s and ".." not in s),
       st.data())
def test_may_occur_never_says_no_where_ignorecase_matches(needle: str, data: st.DataObject) -> None:
    """Any spelling re.IGNORECASE matches to the (lower-case) needle passes the shortcut."""
    needle = needle.lower()
    def forms(c: str) -> list[str]:
        odd = [x for x in "\u0130\u0131\u017f\u212a" if re.fullmatch(re.escape(c), x, re.I)]
        return [c, c.upper(), *odd]

    spelled = "".join(data.draw(st.sampled_from(forms(c))) for c in needle)
    assert re.search(re.escape(needle), f"x {spelled} y", re.IGNORECASE)
    assert _may_occur(_haystack(f"x {spelled} y"), needle)


def test_pieces_outside_ascii_are_never_ruled_out() -> None:
    """Final sigma: re.IGNORECASE matches it to σ, lower() does not; compile regardless."""
    assert _may_occur(_haystack("ς"), "σ")
    assert re.search("σ", "ς", re.IGNORECASE)
