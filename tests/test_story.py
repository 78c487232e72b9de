"""The product story end to end, with real parts on loopback.

An agency mails the intake address; the coordinator gets the moderation mail, replies
OK; every member gets exactly one signed copy; the agency hears the outcome.
"""

from __future__ import annotations

from bin_gateway.models import DeliveryState, SubmissionState
from tests.support.world import (
    AGENCY,
    COORDINATOR,
    COORDINATOR_2,
    DOMAIN,
    MakeWorld,
    World,
    verify_with_zone,
)


async def test_agency_bulletin_reaches_every_member_after_approval(world: World) -> None:
    """F1+F2+F3: held, approved by reply, one signed copy per member, agency told."""
    members = await world.add_members("buurt-noord", 25)
    sent = await world.send(world.agency_mail(), f"agency@{DOMAIN}")
    assert sent.accepted, sent

    for coordinator in (COORDINATOR, COORDINATOR_2):
        request = (await world.wait_for_mail_to(coordinator))[0]
        assert "Inbraken in Noord" in str(request["Subject"])
        text = request.get_body(("plain",)).get_content()
        assert "25 leden" in text and "Dorpsstraat" in text and "OK" in text
        assert verify_with_zone(world, world.sink.messages[0].data)
    held = await world.store.submissions(SubmissionState.HELD)
    assert {h.list_id for h in held} == {"buurt-noord", "buurt-zuid"}
    assert not any(r for r in world.sink.messages if members[0] in r.rcpt_tos)

    token_address = await world.moderation_address()
    reply = world.coordinator_mail(
        "OK\r\nLet op: dit speelt vooral rond de school.\r\n\r\n> oude tekst\r\n",
        to=token_address,
    )
    assert (await world.send(reply, token_address, mail_from=COORDINATOR)).accepted

    for member in members:
        copies = await world.wait_for_mail_to(member)
        assert len(copies) == 1
    copy_data = next(r for r in world.sink.messages if members[0] in r.rcpt_tos)
    copy = next(iter(world.messages_to(members[0])))
    assert verify_with_zone(world, copy_data.data)
    assert copy_data.mail_from.startswith("bounce+") and copy_data.mail_from.endswith(DOMAIN)
    assert str(copy["From"]).endswith(f"<buurt-noord@{DOMAIN}>")
    assert "Politie Oost-Brabant via BIN Noord" in str(copy["From"])
    assert str(copy["Subject"]) == "[BIN Noord] Inbraken in Noord"
    assert str(copy["Reply-To"]).startswith("reactie+")
    assert copy["List-Id"] is not None and copy["List-Unsubscribe"] is not None
    assert copy["Received"] is None and len(copy.get_all("DKIM-Signature")) == 1
    body = copy.get_body(("plain",)).get_content()
    assert "rond de school" in body and "112" in body

    outcome = (await world.wait_for_mail_to(AGENCY))[0]
    assert "25" in outcome.get_body(("plain",)).get_content()
    confirmation = await world.wait_for_mail_to(COORDINATOR, 2)
    assert len(confirmation) == 2
    decided = await world.store.submission(held[0].id)
    assert decided is not None and decided.decided_by == COORDINATOR


async def test_second_decision_is_told_it_came_too_late(world: World) -> None:
    """F2: the first valid decision wins; a later one changes nothing and is answered."""
    await world.add_members("buurt-noord", 3)
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    address = await world.moderation_address()
    first = world.coordinator_mail("NEE, verkeerde wijk\r\n", to=address)
    assert (await world.send(first, address, mail_from=COORDINATOR)).accepted
    outcome = (await world.wait_for_mail_to(AGENCY))[0]
    assert "verkeerde wijk" in outcome.get_body(("plain",)).get_content()

    late = world.coordinator_mail("OK\r\n", to=address)
    assert (await world.send(late, address, mail_from=COORDINATOR)).accepted
    answers = await world.wait_for_mail_to(COORDINATOR, 3)
    assert any("al besloten" in str(m["Subject"]).lower() or "Al besloten" in str(m["Subject"])
               for m in answers), [str(m["Subject"]) for m in answers]
    deliveries = await world.store.deliveries((DeliveryState.QUEUED, DeliveryState.SENT))
    assert all(d.bulletin_id is None for d in deliveries)


async def test_english_gateway_writes_english_and_signs_with_rsa(make_world: MakeWorld) -> None:
    """language = "en" gives English moderation mail; an RSA-2048 gateway key verifies."""
    world = await make_world(language="en", key_kind="rsa")
    members = await world.add_members("buurt-noord", 2)
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    request = (await world.wait_for_mail_to(COORDINATOR))[0]
    assert "reply" in request.get_body(("plain",)).get_content().lower()
    address = await world.moderation_address()
    reply = world.coordinator_mail("approve\r\n", to=address)
    assert (await world.send(reply, address, mail_from=COORDINATOR)).accepted
    await world.wait_for_mail_to(members[1])
    data = next(r.data for r in world.sink.messages if members[1] in r.rcpt_tos)
    assert b"a=rsa-sha256" in data and verify_with_zone(world, data)
