"""F5 bounces end to end: DSNs to the VERP address count against the member they name.

Three permanent failures within 30 days disable the member (no further bulletins) and
tell the coordinators with the last error; delays and out-of-office replies to the bounce
address count for nothing and are answered by nothing.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parseaddr

from bin_gateway.cli import main
from bin_gateway.models import MemberState
from bin_gateway.store import Store
from tests.support.dkim_keys import plain_message, sign
from tests.support.world import AGENCY, COORDINATOR, COORDINATOR_2, DOMAIN, World
from tests.test_bounces import load_cases

MEMBER = "lid7@bewoners.example"
OTHER = "lid8@bewoners.example"


def dsn(bounce_address: str, recipient: str, *, action: str = "failed",
        status: str = "5.1.1") -> bytes:
    """A Postfix bounce, as Postfix writes it (with its Auto-Submitted header)."""
    return (
        f"From: MAILER-DAEMON@mx.bewoners.example (Mail Delivery System)\r\n"
        f"To: {bounce_address}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f"Message-ID: <{time.monotonic_ns()}@mx.bewoners.example>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.bewoners.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected:"
        " User unknown\r\n\r\n--B--\r\n"
    ).encode()


async def approve(world: World, subject: str) -> None:
    """An agency bulletin with this subject, approved by the coordinator's OK."""
    message = plain_message(subject=subject).replace(
        b"melding-1", subject.replace(" ", "-").encode())
    agency = sign(message, world.agency_key, domain="politie.example", selector="s1")
    assert (await world.send(agency, f"buurt-noord@{DOMAIN}")).accepted
    deadline = time.monotonic() + 10
    while not (requests := [m for m in world.messages_to(COORDINATOR)
                            if "Graag je besluit" in str(m["Subject"])
                            and subject in str(m["Subject"])]):
        assert time.monotonic() < deadline, f"no moderation request for {subject}"
        await world.settle()
    token_address = parseaddr(str(requests[0]["Reply-To"]))[1]
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted


async def bulletin(world: World, n: int) -> dict[str, str]:
    """Publish bulletin ``n``; each member's bounce address for their copy."""
    await approve(world, f"Bericht {n}")
    addresses = {}
    for member in (MEMBER, OTHER):
        deadline = time.monotonic() + 10
        while not (found := [r for r in world.sink.messages if member in r.rcpt_tos
                             and f"Bericht {n}".encode() in r.data]):
            assert time.monotonic() < deadline, f"no copy of bulletin {n} for {member}"
            await world.settle()
        addresses[member] = found[0].mail_from
    return addresses


async def member_state(world: World) -> MemberState:
    return next(m.state for m in await world.store.members("buurt-noord") if m.email == MEMBER)


async def test_three_permanent_bounces_disable_the_member_and_tell_coordinators(
    world: World,
) -> None:
    """Delays and an out-of-office count for nothing; the third failure disables."""
    await world.store.add_members("buurt-noord", [(MEMBER, "Lid Zeven"), (OTHER, "Lid Acht")])
    for n in range(3):
        bounce = (await bulletin(world, n))[MEMBER]
        assert bounce.startswith("bounce+") and bounce.endswith("@" + DOMAIN)
        delay = dsn(bounce, MEMBER, action="delayed", status="4.4.1")
        assert (await world.send(delay, bounce, mail_from="")).accepted
        ooo = (f"From: {MEMBER}\r\nTo: {bounce}\r\nSubject: Afwezig\r\n"
               "Auto-Submitted: auto-replied\r\n\r\nIk ben er niet.\r\n").encode()
        assert (await world.send(ooo, bounce, mail_from=MEMBER)).accepted
        about_other = dsn(bounce, OTHER)
        assert (await world.send(about_other, bounce, mail_from="")).accepted
        await world.settle()
        assert await member_state(world) is MemberState.ACTIVE, n
        failed = dsn(bounce, MEMBER)
        assert (await world.send(failed, bounce, mail_from="")).accepted
        await world.settle()
    assert await member_state(world) is MemberState.DISABLED
    for coordinator in (COORDINATOR, COORDINATOR_2):
        told = [m for m in world.messages_to(coordinator) if MEMBER in str(m["Subject"])]
        assert len(told) == 1
        assert "Recipient address rejected" in told[0].get_body(("plain",)).get_content()
    # Nobody answered any of it, and the next bulletin skips the disabled member.
    assert not any(parseaddr(r.mail_from)[1] == "" and r.rcpt_tos == [MEMBER]
                   for r in world.sink.messages if b"Afwezig" in r.data)
    world.sink.messages.clear()
    await bulletin_to_other_only(world)
    assert world.messages_to(MEMBER) == []
    assert world.messages_to(AGENCY)  # the agency still hears its outcome


async def bulletin_to_other_only(world: World) -> None:
    await approve(world, "Bericht 9")
    await world.wait_for_mail_to(OTHER)
    await world.settle()


async def test_admin_switches_a_disabled_member_on_again(world: World) -> None:
    """`members enable` after the bounces: the member gets bulletins again."""
    await world.store.add_members("buurt-noord", [(MEMBER, "Lid Zeven"), (OTHER, "Lid Acht")])
    async with world.store.transaction() as db:
        member_id = next(m.id for m in await world.store.members("buurt-noord")
                         if m.email == MEMBER)
        assert await Store.disable_member(db, member_id)
    command = ["members", "enable", "buurt-noord", MEMBER.upper(),
               "--config", str(world.config.source)]
    assert await asyncio.to_thread(main, command) == 0
    assert await member_state(world) is MemberState.ACTIVE
    await approve(world, "Weer welkom")
    await world.wait_for_mail_to(MEMBER)


async def test_real_world_bounces_disable_the_member(world: World) -> None:
    """Microsoft 365, Gmail and Exim failures (tests/messages/bounces/) to three copies:
    the member is disabled; their delay warnings before it counted for nothing."""
    cases = {case.stem: case for case in load_cases()}
    await world.store.add_members("buurt-noord", [(MEMBER, "Lid Zeven"), (OTHER, "Lid Acht")])
    failures = ("m365_recipient_not_found", "gmail_address_not_found", "exim_failed_plain")
    delays = ("gmail_delayed", "exim_delayed_plain", "postfix_delayed")
    for n, (failure, delay) in enumerate(zip(failures, delays, strict=True)):
        bounce = (await bulletin(world, 20 + n))[MEMBER]
        for stem in (delay, "out_of_office_nl", "postfix_other_recipient"):
            raw = cases[stem].raw(MEMBER, bounce)
            assert (await world.send(raw, bounce, mail_from="")).accepted, stem
        await world.settle()
        assert await member_state(world) is MemberState.ACTIVE, (n, delay)
        raw = cases[failure].raw(MEMBER, bounce)
        assert (await world.send(raw, bounce, mail_from="")).accepted, failure
        await world.settle()
    assert await member_state(world) is MemberState.DISABLED
    told = [m for m in world.messages_to(COORDINATOR) if MEMBER in str(m["Subject"])]
    assert len(told) == 1
