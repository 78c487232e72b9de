"""A moderation mail warns the coordinator when the sender's name looks like someone
else: an address in the display name, or letters from two scripts (security notes §3:
"any moderation notice shows the real addr-spec and flags @ in display names and mixed
scripts"). The agency's mail itself is genuine (signed, allowed): only the name is odd.
"""

from __future__ import annotations

import pytest

from bin_gateway.auth.author import mixed_scripts
from tests.support.world import AGENCY, COORDINATOR, DOMAIN, World


def request_text(message: object) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(("author", "warning"), [
    (f'"chef.noord@politie.example" <{AGENCY}>', "bevat een ander e-mailadres"),
    (f"Wijkagent N\u043e\u043ed <{AGENCY}>", "verschillende schriften"),  # Cyrillic о
])
async def test_an_odd_sender_name_is_flagged_in_the_moderation_mail(
    world: World, author: str, warning: str
) -> None:
    sent = await world.send(world.agency_mail(author=author), f"buurt-noord@{DOMAIN}")
    assert sent.accepted, sent
    text = request_text((await world.wait_for_mail_to(COORDINATOR))[0])
    assert warning in text and "LET OP" in text
    assert AGENCY in text  # the real address, always


async def test_a_plain_sender_name_gets_no_warning(world: World) -> None:
    sent = await world.send(world.agency_mail(author=f"Wijkagent Noord <{AGENCY}>"),
                            f"buurt-noord@{DOMAIN}")
    assert sent.accepted, sent
    text = request_text((await world.wait_for_mail_to(COORDINATOR))[0])
    assert "LET OP" not in text
    assert "Bijlagen:  -\r\n\r\nZo geef je antwoord" in text  # the layout as before


@pytest.mark.parametrize(("name", "mixed"), [
    ("Wijkagent Noord", False), ("Agent Ümit Öztürk", False), ("Политиция", False),
    ("Wijkagent 12-B (Noord)", False), ("P\u043eliti\u0435", True), ("Αgent", True),
])
def test_mixed_scripts(name: str, mixed: bool) -> None:
    assert mixed_scripts(name) is mixed
