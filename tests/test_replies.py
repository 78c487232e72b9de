"""F4 end to end: members reply to a bulletin, the agency answers, nobody learns who is who.

The gateway runs on loopback with its real neighbours (tests/support/world.py). A
bulletin is published the way an agency's is (mail, moderation, OK); members reply to
the Reply-To of their own copy with ordinary mail; what the sink receives is read as a
recipient would: every header decoded, every part decoded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from email.message import EmailMessage
from email.utils import parseaddr

import pytest
import structlog

from bin_gateway import processor
from bin_gateway.models import ReplyState, SubmissionState
from tests.support.dkim_keys import plain_message, sign
from tests.support.reply_corpus import decoded_dump, leaks
from tests.support.world import (
    AGENCY,
    COORDINATOR,
    COORDINATOR_2,
    DOMAIN,
    STRANGER,
    MakeWorld,
    World,
    verify_with_zone,
)

JAN = "jan.devries@bewoners.example"
JAN_NAME = "Jan de Vries"
JAN_PHONE = "06-12345678"
ANNA = "anna.bakker@bewoners.example"
ANNA_NAME = "Anna Bakker"
IDENTITY = [JAN, JAN_NAME, "Vries", JAN_PHONE, "Dorpsstraat 12", "192.0.2.77"]


async def publish(world: World) -> dict[str, str]:
    """An agency bulletin approved by reply; returns each member's reply address."""
    await world.store.add_members("buurt-noord", [(JAN, JAN_NAME), (ANNA, ANNA_NAME)])
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    addresses = {}
    for member in (JAN, ANNA):
        copy = (await world.wait_for_mail_to(member))[0]
        addresses[member] = parseaddr(str(copy["Reply-To"]))[1]
        assert addresses[member].startswith("reactie+"), copy["Reply-To"]
    world.sink.messages.clear()
    return addresses


def member_reply(to: str, body: str, *, sender: str = JAN, name: str = JAN_NAME,
                 extra_headers: str = "", subject: str = "Re: [BIN Noord] Inbraken in Noord",
                 ) -> bytes:
    """A reply as Thunderbird writes it: the member's headers, a quote, a signature."""
    return (
        f"Received: from laptop-jan (unknown [192.0.2.77]) by mx.bewoners.example\r\n"
        f"From: {name} <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sun, 29 Nov 2026 09:12:00 +0100\r\n"
        f"Message-ID: <{time.monotonic_ns()}@bewoners.example>\r\n"
        f"User-Agent: Mozilla Thunderbird\r\nX-Originating-IP: [192.0.2.77]\r\n"
        f"Organization: Dorpsstraat 12\r\n{extra_headers}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n\r\nOp 29-11-2026 om 08:00 schreef Politie Oost-Brabant via BIN Noord:\r\n"
        f"> Beste buurtbewoners,\r\n> Heeft u iets gezien?\r\n\r\n"
        f"-- \r\n{name}\r\nDorpsstraat 12, Eindhoven\r\n{JAN_PHONE}\r\n"
    ).encode()


def agency_answer(world: World, to: str, body: str) -> bytes:
    message = (
        f"From: Wijkagent Noord <{AGENCY}>\r\nTo: {to}\r\nSubject: Re: Reactie\r\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{time.monotonic_ns()}@politie.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\n"
        f"Met vriendelijke groet,\r\nWijkagent Noord\r\n{AGENCY}\r\n"
    ).encode()
    return sign(message, world.agency_key, domain="politie.example", selector="s1")


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def relays_to(world: World, recipient: str, count: int = 1) -> list[EmailMessage]:
    """The relayed replies ``recipient`` got, once there are ``count`` of them."""
    deadline = time.monotonic() + 15
    while True:
        found = [m for m in world.messages_to(recipient)
                 if str(m["Subject"]).startswith(("Reactie van Bewoner", "Reply from Resident"))]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{recipient} got {len(found)} of {count} relays"
        await asyncio.sleep(0.02)


def raw_with(world: World, recipient: str, text: str) -> bytes:
    """The bytes of the one message to ``recipient`` whose decoded text holds ``text``."""
    found = [r.data for r in world.sink.messages
             if recipient in r.rcpt_tos and text in decoded_dump(r.data)]
    assert len(found) == 1, (recipient, text, len(found))
    return found[0]


def raw_to(world: World, recipient: str) -> list[bytes]:
    return [r.data for r in world.sink.messages if recipient in r.rcpt_tos]


async def test_member_reply_reaches_agency_and_coordinators_without_identity(
    world: World,
) -> None:
    """F4: the relay carries the new text under a pseudonym; no name, address, phone, IP."""
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Ik zag gisteravond een witte bestelbus bij de school.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted

    for target in (AGENCY, COORDINATOR, COORDINATOR_2):
        relay = (await relays_to(world, target))[0]
        assert "een witte bestelbus bij de school" in text_of(relay)
        display, address = parseaddr(str(relay["From"]))
        assert re.fullmatch(r"Bewoner [A-Z0-9]{4} \(BIN Noord\)", display), display
        assert address.startswith("reactie+") and address.endswith("@" + DOMAIN)
        assert parseaddr(str(relay["Reply-To"]))[1] == address
        assert "Inbraken in Noord" in str(relay["Subject"])
        for name in ("Received", "User-Agent", "X-Originating-IP", "Organization"):
            assert name not in relay, name
    for data in raw_to(world, AGENCY):
        assert leaks(decoded_dump(data), IDENTITY) == []
        assert verify_with_zone(world, data)
    ack = [m for m in world.messages_to(JAN) if "doorgestuurd" in str(m["Subject"])]
    assert len(ack) == 1
    assert "Politie Oost-Brabant" in text_of(ack[0]) and "ondertekening" in text_of(ack[0])


async def test_two_way_thread_stays_anonymous_both_ways(world: World) -> None:
    """The agency answers the relay; the member gets it without the staff address, answers
    again, and the agency gets that under the same pseudonym."""
    addresses = await publish(world)
    first = member_reply(addresses[JAN], "Ik zag een witte bestelbus.")
    assert (await world.send(first, addresses[JAN], mail_from=JAN)).accepted
    relay = (await relays_to(world, AGENCY))[0]
    pseudonym, thread_address = parseaddr(str(relay["From"]))

    answer = agency_answer(world, thread_address, "Dank u. Weet u nog hoe laat het was?")
    sent = await world.send(answer, thread_address, mail_from=AGENCY)
    assert sent.accepted, sent
    back = [m for m in await world.wait_for_mail_to(JAN, 2) if "Re:" in str(m["Subject"])]
    assert len(back) == 1
    assert "Weet u nog hoe laat het was?" in text_of(back[0])
    display, member_side = parseaddr(str(back[0]["From"]))
    assert display == "Politie Oost-Brabant via BIN Noord"
    assert member_side == addresses[JAN]  # the member answers the address they know
    answer_raw = raw_with(world, JAN, "hoe laat")
    assert leaks(decoded_dump(answer_raw), [AGENCY, "wijkagent.noord"]) == []
    assert verify_with_zone(world, answer_raw)

    again = member_reply(member_side, "Rond half tien.")
    assert (await world.send(again, member_side, mail_from=JAN)).accepted
    relays = await relays_to(world, AGENCY, 2)
    assert len(relays) == 2 and "Rond half tien." in text_of(relays[1])
    assert parseaddr(str(relays[1]["From"])) == (pseudonym, thread_address)


async def test_reply_from_a_stranger_is_refused_550_571(world: World) -> None:
    """Somebody who is not the member (nor on the list) gets 550 5.7.1; nothing stored."""
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Ik ben niet Jan.", sender=STRANGER, name="Iemand")
    sent = await world.send(reply, addresses[JAN], mail_from=STRANGER)
    assert sent.data is not None and sent.data.code == 550 and sent.data.text.startswith("5.7.1")
    rows = await world.store.read("SELECT count(*) FROM inbound WHERE route = 'reply'")
    assert rows[0][0] == 0


async def test_other_member_of_the_list_gets_their_own_pseudonym(world: World) -> None:
    """Anna answers through Jan's address: relayed, but as Anna's own thread."""
    addresses = await publish(world)
    jan = member_reply(addresses[JAN], "Het eerste bericht.")
    assert (await world.send(jan, addresses[JAN], mail_from=JAN)).accepted
    await relays_to(world, AGENCY)
    anna = member_reply(addresses[JAN], "Het tweede bericht.", sender=ANNA, name=ANNA_NAME)
    assert (await world.send(anna, addresses[JAN], mail_from=ANNA)).accepted
    relays = await relays_to(world, AGENCY, 2)
    assert parseaddr(str(relays[0]["From"]))[0] != parseaddr(str(relays[1]["From"]))[0]
    anna_raw = raw_with(world, AGENCY, "Het tweede bericht")
    assert "antwoordadres van een buurtgenoot" in text_of(relays[1])
    assert "buurtgenoot" not in text_of(relays[0])
    assert leaks(decoded_dump(anna_raw), [ANNA, ANNA_NAME, JAN, JAN_NAME]) == []


ROBOTS = {
    "auto-submitted": ("Auto-Submitted: auto-replied\r\n", "Re: [BIN Noord] Inbraken", JAN),
    "out-of-office subject": ("", "Automatisch antwoord: Inbraken in Noord", JAN),
    "x-autoreply": ("X-Autoreply: yes\r\n", "Re: Inbraken", JAN),
    "precedence bulk": ("Precedence: bulk\r\n", "Re: Inbraken", JAN),
    "null sender": ("", "Re: Inbraken", ""),
    "our own loop header": (f"X-Loop: bin-gateway@{DOMAIN}\r\n", "Re: Inbraken", JAN),
}


async def test_auto_replies_bounces_and_loops_are_never_relayed(world: World) -> None:
    """Out-of-office, bounces and our own mail coming back: 250, nothing relayed, no ack."""
    addresses = await publish(world)
    for case, (headers, subject, mail_from) in ROBOTS.items():
        reply = member_reply(addresses[JAN], f"Ik ben afwezig ({case}).",
                             extra_headers=headers, subject=subject)
        sent = await world.send(reply, addresses[JAN], mail_from=mail_from)
        assert sent.accepted, (case, sent)
    await world.settle()
    await asyncio.sleep(0.3)
    assert world.sink.messages == []
    rows = await world.store.read("SELECT count(*) FROM replies")
    assert rows[0][0] == 0


async def test_quote_only_reply_is_not_relayed_and_member_is_told(world: World) -> None:
    """A reply with nothing of the member's own goes nowhere; the member hears why."""
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    told = await world.wait_for_mail_to(JAN)
    assert "niet doorgestuurd" in str(told[-1]["Subject"])
    await world.settle()
    assert world.messages_to(AGENCY) == [] and world.messages_to(COORDINATOR) == []


async def test_over_the_hourly_limit_replies_wait_for_a_coordinator(
    make_world: MakeWorld,
) -> None:
    """With replies_per_hour = 2 the third reply is held; the coordinator's OK relays it."""
    world = await make_world(noord_extra="replies_per_hour = 2")
    addresses = await publish(world)
    for n in range(3):
        reply = member_reply(addresses[JAN], f"Bericht nummer {n}.")
        assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    await world.settle()
    assert len(await relays_to(world, AGENCY, 2)) == 2
    request = next(m for m in await world.wait_for_mail_to(COORDINATOR, 3)
                   if "Graag je besluit" in str(m["Subject"]))
    assert "Bericht nummer 2." in text_of(request)
    assert leaks(decoded_dump(bytes(request)), IDENTITY) == []
    address = parseaddr(str(request["Reply-To"]))[1]
    ok = world.coordinator_mail("OK\r\n", to=address)
    assert (await world.send(ok, address, mail_from=COORDINATOR)).accepted
    relays = await relays_to(world, AGENCY, 3)
    assert "Bericht nummer 2." in text_of(relays[2])


async def test_review_replies_holds_every_reply_and_nee_keeps_it(make_world: MakeWorld) -> None:
    """review_replies = true: nothing goes out before a coordinator decides; NEE stops it."""
    world = await make_world(noord_extra="review_replies = true")
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Graag meer informatie.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    request = (await world.wait_for_mail_to(COORDINATOR_2))[-1]
    assert "Graag je besluit" in str(request["Subject"])
    ack = (await world.wait_for_mail_to(JAN))[-1]
    assert "eerst bekeken" in str(ack["Subject"])
    assert world.messages_to(AGENCY) == []
    address = parseaddr(str(request["Reply-To"]))[1]
    no = world.coordinator_mail("NEE, dit is geen tip\r\n", to=address)
    assert (await world.send(no, address, mail_from=COORDINATOR)).accepted
    await world.settle()
    held = await world.store.submissions(SubmissionState.REJECTED)
    assert len(held) == 1 and held[0].reply_id is not None
    record = await world.store.reply_record(held[0].reply_id)
    assert record is not None and record[1] is ReplyState.REJECTED
    await asyncio.sleep(0.3)
    assert world.messages_to(AGENCY) == []


async def test_acknowledge_replies_false_sends_no_acknowledgement(
    make_world: MakeWorld,
) -> None:
    """acknowledge_replies = false: relayed, and the member gets nothing back."""
    world = await make_world(noord_extra="acknowledge_replies = false")
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Zonder bevestiging graag.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    await relays_to(world, AGENCY)
    await world.settle()
    assert world.messages_to(JAN) == []


async def test_expired_thread_is_550_511(make_world: MakeWorld) -> None:
    """After reply_thread_lifetime the reply address is refused at RCPT."""
    world = await make_world(noord_extra='reply_thread_lifetime = "2s"')
    addresses = await publish(world)
    await asyncio.sleep(2.1)
    reply = member_reply(addresses[JAN], "Te laat.")
    sent = await world.send(reply, addresses[JAN], mail_from=JAN)
    assert sent.data is None and sent.rcpt[0].code == 550
    assert sent.rcpt[0].text.startswith("5.1.1")


async def test_only_agency_or_coordinator_can_answer_through_the_thread(world: World) -> None:
    """A stranger writing to the agency side of a thread gets 550 5.7.1."""
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Hallo.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    thread_address = parseaddr(str((await relays_to(world, AGENCY))[0]["From"]))[1]
    spam = member_reply(thread_address, "Koop nu!", sender=STRANGER, name="Spam")
    sent = await world.send(spam, thread_address, mail_from=STRANGER)
    assert sent.data is not None and sent.data.code == 550 and sent.data.text.startswith("5.7.1")


async def test_reply_flow_logs_name_member_ids_never_addresses(world: World) -> None:
    """SPEC §8: the logs of a relayed reply carry ids, not the member's address or name."""
    addresses = await publish(world)
    with structlog.testing.capture_logs() as logs:
        reply = member_reply(addresses[JAN], "Ik zag iets.")
        assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
        await relays_to(world, AGENCY)
        await world.settle()
    events = [e["event"] for e in logs]
    assert "reply.relayed" in events, events
    relayed = next(e for e in logs if e["event"] == "reply.relayed")
    assert isinstance(relayed["member_id"], int)
    text = repr(logs)
    assert leaks(text, [JAN, JAN_NAME, "jan.devries"]) == []


async def second_bulletin_address(world: World) -> str:
    """Publish another agency bulletin; Jan's reply address for it."""
    message = plain_message(subject="Tweede bericht").replace(b"melding-1", b"melding-2")
    agency = sign(message, world.agency_key, domain="politie.example", selector="s1")
    assert (await world.send(agency, f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    deadline = time.monotonic() + 10
    while not (copies := [m for m in world.messages_to(JAN) if "Tweede" in str(m["Subject"])]):
        assert time.monotonic() < deadline, "no copy of the second bulletin"
        await asyncio.sleep(0.05)
    return parseaddr(str(copies[0]["Reply-To"]))[1]


async def test_pseudonyms_per_bulletin_differ_and_per_list_stay(make_world: MakeWorld) -> None:
    """Default: a new pseudonym per bulletin (replies cannot be linked); per_list: one."""
    for setting, same in (("", False), ('pseudonyms = "per_list"', True)):
        world = await make_world(noord_extra=setting)
        first = (await publish(world))[JAN]
        second = await second_bulletin_address(world)
        assert first != second
        names = []
        for n, address in enumerate((first, second)):
            reply = member_reply(address, f"Reactie {n}.")
            assert (await world.send(reply, address, mail_from=JAN)).accepted
            relay = (await relays_to(world, AGENCY, n + 1))[n]
            names.append(parseaddr(str(relay["From"]))[0])
        assert (names[0] == names[1]) is same, (setting, names)


async def test_bounce_of_a_relay_is_recorded_and_goes_to_nobody(world: World) -> None:
    """The agency's mailbox refuses the relay: the copy fails; the member hears nothing of
    the agency's server, and the agency nothing of the member."""
    addresses = await publish(world)
    world.sink.answer_for(AGENCY, "550 5.2.1 mailbox disabled for wijkagent.noord")
    reply = member_reply(addresses[JAN], "Ik zag iets.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    await relays_to(world, COORDINATOR)
    await world.settle()
    rows = await world.store.read(
        "SELECT d.state, d.last_reply FROM deliveries d JOIN outbound o ON o.id = d.outbound_id"
        " WHERE o.kind = 'relay' AND d.recipient = ?", (AGENCY,))
    assert [r[0] for r in rows] == ["failed"]
    for message in world.messages_to(JAN):
        assert "mailbox disabled" not in decoded_dump(bytes(message))


async def test_english_list_writes_english_to_the_member(make_world: MakeWorld) -> None:
    """language = "en": Resident pseudonym and an English acknowledgement."""
    world = await make_world(noord_extra='language = "en"')
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "I saw a white van.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    relay = (await world.wait_for_mail_to(AGENCY))[-1]
    assert str(relay["Subject"]).startswith("Reply from Resident ")
    ack = (await world.wait_for_mail_to(JAN))[-1]
    assert str(ack["Subject"]).startswith("Your reply was passed on")


async def test_held_reply_expires_unrelayed(make_world: MakeWorld) -> None:
    """A held reply nobody decides on expires: not relayed, the reply row says rejected."""
    world = await make_world(noord_extra="review_replies = true", expire_after="1s",
                             remind_after="500ms")
    addresses = await publish(world)
    reply = member_reply(addresses[JAN], "Wacht op een besluit.")
    assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    deadline = time.monotonic() + 10
    while not await world.store.submissions(SubmissionState.EXPIRED):
        assert time.monotonic() < deadline, "the held reply never expired"
        await asyncio.sleep(0.1)
    held = (await world.store.submissions(SubmissionState.EXPIRED))[0]
    assert held.reply_id is not None
    record = await world.store.reply_record(held.reply_id)
    assert record is not None and record[1] is ReplyState.REJECTED
    reminders = [m for m in world.messages_to(COORDINATOR) if "Herinnering" in str(m["Subject"])]
    assert reminders and "Wacht op een besluit." in text_of(reminders[0])
    assert world.messages_to(AGENCY) == []


async def test_reply_still_relayed_when_the_worker_process_dies(world: World) -> None:
    """kill -9 of the reply worker: the next reply is done in a thread, a new pool follows."""
    addresses = await publish(world)
    first = member_reply(addresses[JAN], "Eerste reactie.")
    assert (await world.send(first, addresses[JAN], mail_from=JAN)).accepted
    await relays_to(world, AGENCY)
    pool = world.gateway.reply_pool._pool
    if pool is None:  # a one-CPU machine works in threads: nothing to kill
        return
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    second = member_reply(addresses[JAN], "Tweede reactie.")
    assert (await world.send(second, addresses[JAN], mail_from=JAN)).accepted
    relays = await relays_to(world, AGENCY, 2)
    assert "Tweede reactie." in text_of(relays[1])
    third = member_reply(addresses[JAN], "Derde reactie.")
    assert (await world.send(third, addresses[JAN], mail_from=JAN)).accepted
    assert "Derde reactie." in text_of((await relays_to(world, AGENCY, 3))[2])
    rows = await world.store.read("SELECT count(*) FROM inbound WHERE state = 'failed'")
    assert rows[0][0] == 0


async def test_staff_answer_keeps_words_of_their_name_but_not_the_name(world: World) -> None:
    """"Wijkagent Noord" goes as a whole (and the address); "Noord" alone is a place."""
    addresses = await publish(world)
    first = member_reply(addresses[JAN], "Ik zag een witte bestelbus.")
    assert (await world.send(first, addresses[JAN], mail_from=JAN)).accepted
    thread_address = parseaddr(str((await relays_to(world, AGENCY))[0]["From"]))[1]
    answer = agency_answer(world, thread_address,
                           "In Noord is vorige week ook twee keer ingebroken.")
    assert (await world.send(answer, thread_address, mail_from=AGENCY)).accepted
    back = [m for m in await world.wait_for_mail_to(JAN, 2) if "Re:" in str(m["Subject"])]
    text = text_of(back[0])
    assert "In Noord is vorige week ook twee keer ingebroken." in text
    assert leaks(decoded_dump(raw_with(world, JAN, "twee keer")),
                 ["Wijkagent Noord", AGENCY, "wijkagent.noord"]) == []


async def test_more_replies_than_a_batch_are_each_relayed_once(make_world: MakeWorld) -> None:
    """45 replies at once (more than the processor runs side by side): every one relayed
    to every target exactly once, none left behind, none twice."""
    world = await make_world(noord_extra="replies_per_hour = 100")
    addresses = await publish(world)
    for n in range(45):
        reply = member_reply(addresses[JAN], f"Waarneming nummer {n} bij de school.")
        assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    relays = await relays_to(world, AGENCY, 45)
    await world.settle()
    seen = sorted(int(re.search(r"nummer (\d+) bij", text_of(r)).group(1))  # type: ignore[union-attr]
                  for r in world.messages_to(AGENCY)
                  if str(r["Subject"]).startswith("Reactie van Bewoner"))
    assert len(relays) >= 45 and seen == list(range(45))
    rows = await world.store.read("SELECT count(*) FROM inbound WHERE state = 'received'")
    assert rows[0][0] == 0


async def test_replies_over_the_byte_budget_are_taken_one_at_a_time_and_all_relayed(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a byte budget smaller than any reply (big replies: each alone is over it),
    the processor still takes the oldest whenever none is running: all are relayed,
    once, and none is left waiting."""
    monkeypatch.setattr(processor, "IN_FLIGHT_BYTES", 1)
    world = await make_world(noord_extra="replies_per_hour = 100")
    addresses = await publish(world)
    for n in range(6):
        reply = member_reply(addresses[JAN], f"Waarneming nummer {n} bij de school.")
        assert (await world.send(reply, addresses[JAN], mail_from=JAN)).accepted
    await relays_to(world, AGENCY, 6)
    await world.settle()
    seen = sorted(int(re.search(r"nummer (\d+) bij", text_of(r)).group(1))  # type: ignore[union-attr]
                  for r in world.messages_to(AGENCY)
                  if str(r["Subject"]).startswith("Reactie van Bewoner"))
    assert seen == list(range(6))
    rows = await world.store.read("SELECT count(*) FROM inbound WHERE state = 'received'")
    assert rows[0][0] == 0
