"""F5 by mail: join with double opt-in, leave at once when the From is verified (asked
first when not); every change confirmed, once.

Residents use nothing but their mail client: a mail to ``buurt-noord+aanmelden@``, a
reply to the question that comes back, a mail to ``buurt-noord+afmelden@`` (which is
also the List-Unsubscribe mailto of every bulletin).
"""

from __future__ import annotations

import re
import time
from email.utils import parseaddr

import aiohttp

from bin_gateway.models import MemberState
from tests.support.dkim_keys import DkimKey, ed25519_key, publish, sign
from tests.support.world import COORDINATOR, DOMAIN, MakeWorld, World

NEW = "nieuw.lid@bewoners.example"
JOIN = f"buurt-noord+aanmelden@{DOMAIN}"
LEAVE = f"buurt-noord+afmelden@{DOMAIN}"


def resident_mail(to: str, *, sender: str = NEW, body: str = "Graag aanmelden.",
                  extra_headers: str = "", subject: str = "aanmelden") -> bytes:
    return (
        f"From: Nieuw Lid <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{time.monotonic_ns()}@bewoners.example>\r\n{extra_headers}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


_RESIDENTS_KEY: dict[int, DkimKey] = {}


def signed(world: World, message: bytes) -> bytes:
    """``message`` DKIM-signed by bewoners.example (its provider signs), key published."""
    key = _RESIDENTS_KEY.setdefault(id(world), ed25519_key())
    publish(world.dns.zone, "bewoners.example", "s1", key)
    return sign(message, key, domain="bewoners.example", selector="s1")


async def members(world: World) -> dict[str, MemberState]:
    return {m.email: m.state for m in await world.store.members("buurt-noord")}


def subjects(world: World, to: str) -> list[str]:
    return [str(m["Subject"]) for m in world.messages_to(to)]


async def test_join_is_confirmed_by_reply_then_welcomed(world: World) -> None:
    """Double opt-in: a question, a reply from the same address, a welcome, membership."""
    assert (await world.send(resident_mail(JOIN), JOIN, mail_from=NEW)).accepted
    question = (await world.wait_for_mail_to(NEW))[0]
    assert "Bevestig je aanmelding" in str(question["Subject"])
    assert NEW not in await members(world)
    confirm_to = parseaddr(str(question["Reply-To"]))[1]
    assert re.fullmatch(r"aanmelding\+[a-z2-7]{24}@" + re.escape(DOMAIN), confirm_to)

    stranger = resident_mail(confirm_to, sender="iemand@elders.example", body="ja")
    sent = await world.send(stranger, confirm_to, mail_from="iemand@elders.example")
    assert sent.data is not None and sent.data.code == 550 and sent.data.text.startswith("5.7.1")

    yes = resident_mail(confirm_to, body="", subject="Re: Bevestig je aanmelding")
    assert (await world.send(yes, confirm_to, mail_from=NEW)).accepted
    await world.wait_for_mail_to(NEW, 2)
    assert (await members(world))[NEW] is MemberState.ACTIVE
    assert "Welkom bij BIN Noord" in subjects(world, NEW)[1]
    again = resident_mail(confirm_to, body="ja hoor")
    assert (await world.send(again, confirm_to, mail_from=NEW)).accepted
    await world.settle()
    assert len(world.messages_to(NEW)) == 2  # confirmed once, welcomed once


async def test_existing_member_asking_to_join_is_told_so(world: World) -> None:
    """A member who asks to join again gets "you are already a member", nothing more."""
    await world.store.add_members("buurt-noord", [(NEW, "Nieuw Lid")])
    sender = NEW.upper()  # any letter case is the same person
    assert (await world.send(resident_mail(JOIN, sender=sender), JOIN, mail_from=sender)).accepted
    told = await world.wait_for_mail_to(NEW)
    assert "al lid" in str(told[0]["Subject"])
    assert len(await members(world)) == 1


async def test_closed_list_answers_how_to_reach_the_coordinator(make_world: MakeWorld) -> None:
    """subscription = "closed": no question, no member; the coordinator's address instead."""
    world = await make_world(noord_extra='subscription = "closed"')
    assert (await world.send(resident_mail(JOIN), JOIN, mail_from=NEW)).accepted
    answer = (await world.wait_for_mail_to(NEW))[0]
    assert "via de coördinator" in str(answer["Subject"])
    assert COORDINATOR in answer.get_body(("plain",)).get_content()
    assert NEW not in await members(world)


async def test_join_questions_are_limited_per_address_per_day(world: World) -> None:
    """The join address cannot be used to flood someone: at most three questions a day."""
    for _ in range(5):
        assert (await world.send(resident_mail(JOIN), JOIN, mail_from=NEW)).accepted
    await world.settle()
    assert len(world.messages_to(NEW)) == 3


async def test_leave_by_mail_and_by_the_list_unsubscribe_mailto(world: World) -> None:
    """A verified +afmelden removes at once and confirms once; a non-member hears nothing."""
    await world.store.add_members("buurt-noord", [(NEW, "Nieuw Lid"), ("ander@bewoners.example",
                                                                       "Ander Lid")])
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    copy = (await world.wait_for_mail_to("ander@bewoners.example"))[0]
    mailto = re.search(r"<mailto:([^>]+)>", str(copy["List-Unsubscribe"]))
    assert mailto is not None and mailto.group(1) == LEAVE

    leave = signed(world, resident_mail(LEAVE, body=""))
    assert (await world.send(leave, LEAVE, mail_from=NEW)).accepted
    other = signed(world, resident_mail(mailto.group(1), sender="ander@bewoners.example",
                                        body=""))
    assert (await world.send(other, LEAVE, mail_from="ander@bewoners.example")).accepted
    await world.settle()
    assert await members(world) == {}
    for who in (NEW, "ander@bewoners.example"):
        assert sum("afgemeld" in s for s in subjects(world, who)) == 1
    stranger = resident_mail(LEAVE, sender="iemand@elders.example")
    assert (await world.send(stranger, LEAVE, mail_from="iemand@elders.example")).accepted
    await world.settle()
    assert world.messages_to("iemand@elders.example") == []


async def test_auto_replies_to_the_join_address_are_ignored(world: World) -> None:
    """An out-of-office to +aanmelden asks nothing and answers nothing."""
    auto = resident_mail(JOIN, extra_headers="Auto-Submitted: auto-replied\r\n")
    assert (await world.send(auto, JOIN, mail_from=NEW)).accepted
    await world.settle()
    assert world.messages_to(NEW) == []


async def test_unknown_plus_word_is_550_511(world: World) -> None:
    """<list>+<anything else>@ is no address here."""
    sent = await world.send(resident_mail(f"buurt-noord+iets@{DOMAIN}"),
                            f"buurt-noord+iets@{DOMAIN}", mail_from=NEW)
    assert sent.data is None and sent.rcpt[0].code == 550
    assert sent.rcpt[0].text.startswith("5.1.1")


async def test_approval_list_lets_in_on_the_coordinators_ok(make_world: MakeWorld) -> None:
    """subscription = "approval": held for the coordinators; OK welcomes, NEE says why."""
    world = await make_world(noord_extra='subscription = "approval"')
    other = "tweede@bewoners.example"
    for who in (NEW, other):
        mail = resident_mail(JOIN, sender=who, body="Ik woon op nummer 4.")
        assert (await world.send(mail, JOIN, mail_from=who)).accepted
    await world.settle()
    assert "ontvangen" in subjects(world, NEW)[0]
    requests = [m for m in world.messages_to(COORDINATOR)
                if "Graag je besluit" in str(m["Subject"])]
    assert len(requests) == 2
    by_who = {NEW if NEW in m.get_body(("plain",)).get_content() else other: m for m in requests}
    assert "Ik woon op nummer 4." in by_who[NEW].get_body(("plain",)).get_content()
    for who, answer in ((NEW, "OK\r\n"), (other, "NEE, geen adres in de wijk\r\n")):
        token_address = parseaddr(str(by_who[who]["Reply-To"]))[1]
        reply = world.coordinator_mail(answer, to=token_address)
        assert (await world.send(reply, token_address, mail_from=COORDINATOR)).accepted
    await world.settle()
    assert await members(world) == {NEW: MemberState.ACTIVE}
    assert any("Welkom" in s for s in subjects(world, NEW))
    refused = [m for m in world.messages_to(other) if "niet aangenomen" in str(m["Subject"])]
    assert len(refused) == 1
    assert "geen adres in de wijk" in refused[0].get_body(("plain",)).get_content()


async def test_english_words_join_and_leave_too(world: World) -> None:
    """+subscribe asks the same question; +unsubscribe removes like +afmelden."""
    subscribe = f"buurt-noord+subscribe@{DOMAIN}"
    assert (await world.send(resident_mail(subscribe), subscribe, mail_from=NEW)).accepted
    question = (await world.wait_for_mail_to(NEW))[0]
    assert "Bevestig je aanmelding" in str(question["Subject"])
    await world.store.add_members("buurt-noord", [("ander@bewoners.example", "")])
    unsubscribe = f"buurt-noord+unsubscribe@{DOMAIN}"
    mail = signed(world, resident_mail(unsubscribe, sender="ander@bewoners.example"))
    assert (await world.send(mail, unsubscribe, mail_from="ander@bewoners.example")).accepted
    await world.settle()
    assert "ander@bewoners.example" not in await members(world)


async def test_an_unverified_leave_asks_the_member_first(world: World) -> None:
    """Anyone can forge a From: unsigned, the member is asked, and stays until they answer.
    Their reply (from their own address) removes them, once; a stranger's reply is 550."""
    await world.store.add_members("buurt-noord", [(NEW, "Nieuw Lid")])
    forged = resident_mail(LEAVE, body="")
    assert (await world.send(forged, LEAVE, mail_from="grap@elders.example")).accepted
    question = (await world.wait_for_mail_to(NEW))[0]
    assert "Wil je je afmelden voor BIN Noord?" in str(question["Subject"])
    assert (await members(world)) == {NEW: MemberState.ACTIVE}
    confirm_to = parseaddr(str(question["Reply-To"]))[1]

    stranger = resident_mail(confirm_to, sender="grap@elders.example", body="ja")
    sent = await world.send(stranger, confirm_to, mail_from="grap@elders.example")
    assert sent.data is not None and sent.data.code == 550
    assert (await members(world)) == {NEW: MemberState.ACTIVE}

    yes = resident_mail(confirm_to, body="", subject="Re: Wil je je afmelden?")
    assert (await world.send(yes, confirm_to, mail_from=NEW)).accepted
    assert (await world.send(yes, confirm_to, mail_from=NEW)).accepted  # twice: told once
    await world.settle()
    await world.settle()
    assert await members(world) == {}
    assert sum("afgemeld" in s for s in subjects(world, NEW)) == 1


async def test_an_unverified_leave_question_carries_the_one_click_link(
    make_world: MakeWorld,
) -> None:
    """With [http], the question also links to the one-click page (RFC 8058 POST)."""
    world = await make_world(http='[http]\nlisten = "127.0.0.1:0"\n'
                                  'public_url = "https://bin.example.nl"')
    await world.store.add_members("buurt-noord", [(NEW, "Nieuw Lid")])
    assert (await world.send(resident_mail(LEAVE, body=""), LEAVE, mail_from=NEW)).accepted
    text = (await world.wait_for_mail_to(NEW))[0].get_body(("plain",)).get_content()
    link = re.search(r"https://bin\.example\.nl(/u/\S+)", text)
    assert link is not None, text
    assert world.gateway.http is not None
    local = f"http://127.0.0.1:{world.gateway.http.port}{link.group(1)}"
    async with aiohttp.ClientSession() as http, http.post(
            local, data={"List-Unsubscribe": "One-Click"}) as answer:
        assert answer.status == 200
    assert await members(world) == {}
