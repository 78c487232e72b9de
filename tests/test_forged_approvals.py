"""F2: a decision counts only if all hold (token, coordinator of that list, authenticated).

Each forged or invalid reply is checked for what it must not do (no bulletin, the item
still held, no copy to any member) and for what the sender is told: an SMTP refusal for
the unauthenticated and the unauthorised (never a mail: that could be backscatter to a
spoofed From), an explanatory mail only to a genuine coordinator.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import pytest

from bin_gateway.models import SubmissionState
from tests.support.dkim_keys import DkimKey, publish, rsa_key, sign
from tests.support.world import (
    AGENCY,
    COORDINATOR,
    COORDINATOR_2,
    DOMAIN,
    SELECTOR,
    MakeWorld,
    World,
)

ATTACKER = "buurman@evil.example"
ATTACKER_DOMAIN = "evil.example"
COORDINATOR_ZUID = "coordinator.zuid@example.nl"


@dataclass(frozen=True, slots=True)
class Held:
    submission_id: int
    address: str  # moderatie+<token>@
    members: list[str]


# -- helpers ------------------------------------------------------------------------


async def hold_one(world: World, members: int = 3) -> Held:
    """Agency mail to buurt-noord: one held item; its token address from the request."""
    people = await world.add_members("buurt-noord", members)
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    address = await world.moderation_address()
    await world.wait_for_mail_to(COORDINATOR_2)
    held = await world.store.submissions()
    assert len(held) == 1 and held[0].list_id == "buurt-noord"
    return Held(held[0].id, address, people)


async def moderation_rows(world: World) -> int:
    rows = await world.store.read("SELECT count(*) FROM inbound WHERE route = 'moderation'")
    return int(rows[0][0])


async def assert_not_published(world: World, held: Held) -> None:
    await world.settle()
    assert await world.store.bulletin_for_submission(held.submission_id) is None
    submission = await world.store.submission(held.submission_id)
    assert submission is not None and submission.state is SubmissionState.HELD
    assert submission.decided_by == ""
    for member in held.members:
        assert world.messages_to(member) == []


def attacker_key(world: World) -> DkimKey:
    """evil.example publishes its own key: its mail is authenticated, for evil.example."""
    key = rsa_key(2048)
    publish(world.dns.zone, ATTACKER_DOMAIN, SELECTOR, key)
    return key


def reply_text(body: str, *, author: str, to: str, extra_headers: str = "") -> bytes:
    return (
        f"From: {author}\r\nTo: {to}\r\nSubject: Re: besluit\r\n"
        f"Date: Sat, 28 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{time.monotonic_ns()}@vervalst.example>\r\n{extra_headers}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def token_of(address: str) -> str:
    match = re.fullmatch(r"moderatie\+([a-z2-7]+)@" + re.escape(DOMAIN), address)
    assert match, address
    return match.group(1)


def subjects_to(world: World, recipient: str) -> list[str]:
    return [str(m["Subject"]) for m in world.messages_to(recipient)]


async def scheduled_mail_to(world: World, recipient: str, count: int) -> None:
    """Wait for mail the scheduler queued (a reminder, an expiry outcome).

    The scheduler does not wake the outbox, which then sleeps up to its 30 s idle poll
    (see test_scheduled_mail_goes_out_without_waiting_for_the_outbox_poll): nudge it.
    """
    async with asyncio.timeout(10):
        while len(world.messages_to(recipient)) < count:
            world.gateway.outbox.wake()
            await asyncio.sleep(0.05)


# -- who decides ----------------------------------------------------------------------


async def test_authenticated_outsider_cannot_decide(world: World) -> None:
    """A non-coordinator with a valid DKIM of their own domain replying OK gets 550 5.7.1."""
    held = await hold_one(world)
    key = attacker_key(world)
    forged = sign(reply_text("OK\r\n", author=ATTACKER, to=held.address), key,
                  domain=ATTACKER_DOMAIN, selector=SELECTOR)
    sent = await world.send(forged, held.address, mail_from=ATTACKER)
    assert sent.rcpt[0].code == 250  # the token is good; the sender is not
    assert sent.data is not None and sent.data.code == 550
    assert sent.data.text.startswith("5.7.1") and "coordinator" in sent.data.text
    assert await moderation_rows(world) == 0
    await assert_not_published(world, held)
    assert world.messages_to(ATTACKER) == []


async def test_the_agency_itself_cannot_approve_its_own_mail(world: World) -> None:
    """The allow-listed agency sender (authenticated) replying OK is no coordinator: 550 5.7.1."""
    held = await hold_one(world)
    reply = world.agency_mail(subject="Re: besluit", body="OK\r\n")
    sent = await world.send(reply, held.address, mail_from=AGENCY)
    assert sent.data is not None and sent.data.code == 550
    assert sent.data.text.startswith("5.7.1")
    await assert_not_published(world, held)
    assert world.messages_to(AGENCY) == []


async def test_coordinator_of_another_list_cannot_decide(world: World) -> None:
    """coordinator.zuid (authenticated) replying to a buurt-noord token gets 550 5.7.1."""
    held = await hold_one(world)
    reply = world.coordinator_mail("OK\r\n", to=held.address, author=COORDINATOR_ZUID)
    sent = await world.send(reply, held.address, mail_from=COORDINATOR_ZUID)
    assert sent.data is not None and sent.data.code == 550
    assert sent.data.text.startswith("5.7.1")
    assert await moderation_rows(world) == 0
    await assert_not_published(world, held)
    assert world.messages_to(COORDINATOR_ZUID) == []


def _unsigned(world: World, address: str) -> bytes:
    return reply_text("OK\r\n", author=COORDINATOR, to=address)


def _signed_by_attacker_domain(world: World, address: str) -> bytes:
    return sign(_unsigned(world, address), attacker_key(world), domain=ATTACKER_DOMAIN,
                selector=SELECTOR)


def _signed_by_unpublished_key(world: World, address: str) -> bytes:
    # d= the coordinator's domain, but made with a key that domain never published.
    return sign(_unsigned(world, address), rsa_key(2048), domain="example.nl",
                selector=SELECTOR)


@pytest.mark.parametrize(
    "forge", [_unsigned, _signed_by_attacker_domain, _signed_by_unpublished_key],
    ids=["unsigned", "dkim-of-another-domain", "unpublished-key"],
)
async def test_coordinator_from_without_valid_signature_cannot_decide(
    world: World, forge: object
) -> None:
    """The coordinator's From without an aligned valid DKIM (or SPF pass): 550 5.7.1."""
    assert callable(forge)
    held = await hold_one(world)
    sent = await world.send(forge(world, held.address), held.address, mail_from=COORDINATOR)
    assert sent.data is not None and sent.data.code == 550
    assert sent.data.text.startswith("5.7.1") and "authenticated" in sent.data.text
    assert await moderation_rows(world) == 0
    await assert_not_published(world, held)
    # The coordinator got only the moderation request: no answer to a spoofed From.
    assert len(world.messages_to(COORDINATOR)) == 1


# (From lines, lines added after the coordinator's genuine signature)
FROM_TRICKS = {
    "two From headers": (f"From: {COORDINATOR}\r\nFrom: {COORDINATOR_2}\r\n", ""),
    "two coordinators in one From": (f"From: {COORDINATOR}, {COORDINATOR_2}\r\n", ""),
    "two identical From headers": (f"From: {COORDINATOR}\r\nFrom: {COORDINATOR}\r\n", ""),
    "From line with a leading space": (f" From: {ATTACKER}\r\nFrom: {COORDINATOR}\r\n", ""),
    "an attacker's From added": (f"From: {COORDINATOR}\r\n", f"From: {ATTACKER}\r\n"),
    "folded From header name added": (f"From: {COORDINATOR}\r\n", f"From\r\n : {ATTACKER}\r\n"),
}


@pytest.mark.parametrize("case", list(FROM_TRICKS))
async def test_ambiguous_from_on_a_decision_is_550_571(world: World, case: str) -> None:
    """A reply with several From headers or mailboxes is refused 550 5.7.1, even if signed."""
    held = await hold_one(world)
    signed_from, added = FROM_TRICKS[case]
    raw = (
        f"To: {held.address}\r\n{signed_from}Subject: Re: besluit\r\n"
        "Date: Sat, 28 Nov 2026 10:00:00 +0100\r\nMessage-ID: <twee-van@example.nl>\r\n"
        "\r\nOK\r\n"
    ).encode()
    signed = sign(raw, world.coordinator_key, domain="example.nl", selector=SELECTOR)
    signed = signed.replace(b"\r\nSubject: ", f"\r\n{added}Subject: ".encode(), 1)
    sent = await world.send(signed, held.address, mail_from=COORDINATOR)
    assert sent.data is not None and sent.data.code == 550
    # Refused for the ambiguity itself, before any signature is looked at.
    assert sent.data.text.startswith("5.7.1") and "From" in sent.data.text
    assert await moderation_rows(world) == 0
    await assert_not_published(world, held)
    assert len(world.messages_to(COORDINATOR)) == 1


# -- which token ------------------------------------------------------------------------


async def test_altered_token_is_550_511_at_rcpt(world: World) -> None:
    """The coordinator's OK to a token with one character changed is refused at RCPT."""
    held = await hold_one(world)
    token = token_of(held.address)
    position = len(token) // 2
    swapped = "a" if token[position] != "a" else "b"
    altered = f"moderatie+{token[:position]}{swapped}{token[position + 1:]}@{DOMAIN}"
    reply = world.coordinator_mail("OK\r\n", to=altered)
    sent = await world.send(reply, altered, mail_from=COORDINATOR)
    assert sent.data is None
    assert sent.rcpt[0].code == 550 and sent.rcpt[0].text.startswith("5.1.1")
    await assert_not_published(world, held)
    assert len(world.messages_to(COORDINATOR)) == 1


async def test_reused_token_after_a_decision_publishes_nothing_twice(world: World) -> None:
    """A second reply after the decision is answered "already decided"; one bulletin only."""
    held = await hold_one(world)
    first = world.coordinator_mail("OK\r\n", to=held.address)
    assert (await world.send(first, held.address, mail_from=COORDINATOR)).accepted
    for member in held.members:
        await world.wait_for_mail_to(member)
    bulletin = await world.store.bulletin_for_submission(held.submission_id)
    assert bulletin is not None

    for body in ("OK\r\n", "NEE, toch niet\r\n"):
        late = world.coordinator_mail(body, to=held.address, author=COORDINATOR_2)
        sent = await world.send(late, held.address, mail_from=COORDINATOR_2)
        assert sent.accepted, sent
    answers = await world.wait_for_mail_to(COORDINATOR_2, 3)  # request + two answers
    late_answers = [m for m in answers if str(m["Subject"]).startswith("Al besloten")]
    assert len(late_answers) == 2
    assert COORDINATOR in late_answers[0].get_body(("plain",)).get_content()
    await world.settle()

    submission = await world.store.submission(held.submission_id)
    assert submission is not None and submission.state is SubmissionState.APPROVED
    assert submission.decided_by == COORDINATOR
    rows = await world.store.read(
        "SELECT count(*) FROM bulletins WHERE submission_id = ?", (held.submission_id,)
    )
    assert rows[0][0] == 1
    for member in held.members:
        assert len(world.messages_to(member)) == 1
    # The agency heard the outcome once, the approval; nothing about the late replies.
    outcomes = subjects_to(world, AGENCY)
    assert len(outcomes) == 1 and outcomes[0].startswith("Verstuurd")


async def test_expired_token_is_550_511_and_agency_hears_it_expired(make_world: MakeWorld) -> None:
    """After expire_after the token is refused at RCPT (5.1.1); the agency gets "expired"."""
    world = await make_world(expire_after="1s", remind_after="500ms")
    held = await hold_one(world)
    await scheduled_mail_to(world, AGENCY, 1)
    outcome = world.messages_to(AGENCY)[0]
    assert str(outcome["Subject"]).startswith("Niet verstuurd (geen antwoord)")
    submission = await world.store.submission(held.submission_id)
    assert submission is not None and submission.state is SubmissionState.EXPIRED

    addresses = {held.address, *(await _token_addresses(world, COORDINATOR))}
    for address in addresses:
        reply = world.coordinator_mail("OK\r\n", to=address)
        sent = await world.send(reply, address, mail_from=COORDINATOR)
        assert sent.data is None, address
        assert sent.rcpt[0].code == 550 and sent.rcpt[0].text.startswith("5.1.1")
    await world.settle()
    assert await world.store.bulletin_for_submission(held.submission_id) is None
    assert await moderation_rows(world) == 0
    for member in held.members:
        assert world.messages_to(member) == []
    assert len(world.messages_to(AGENCY)) == 1


async def _token_addresses(world: World, coordinator: str) -> list[str]:
    found = []
    for message in world.messages_to(coordinator):
        match = re.search(r"moderatie\+[a-z2-7]+@" + re.escape(DOMAIN), str(message["Reply-To"]))
        if match:
            found.append(match.group(0))
    return found


@pytest.fixture
async def reminding_world(make_world: MakeWorld) -> World:
    return await make_world(remind_after="300ms")


async def test_reminder_after_remind_after_carries_a_fresh_working_token(
    reminding_world: World,
) -> None:
    """After remind_after the coordinator is reminded with a new token, and OK to it works."""
    world = reminding_world
    held = await hold_one(world)
    await scheduled_mail_to(world, COORDINATOR, 2)
    messages = world.messages_to(COORDINATOR)
    assert str(messages[1]["Subject"]).startswith("Herinnering")
    fresh = await world.moderation_address(COORDINATOR, index=1)
    assert fresh != held.address
    assert len(await world.store.submissions(SubmissionState.HELD)) == 1

    reply = world.coordinator_mail("OK\r\n", to=fresh)
    assert (await world.send(reply, fresh, mail_from=COORDINATOR)).accepted
    for member in held.members:
        await world.wait_for_mail_to(member)
    submission = await world.store.submission(held.submission_id)
    assert submission is not None and submission.state is SubmissionState.APPROVED
    assert await world.store.bulletin_for_submission(held.submission_id) is not None
    # One reminder only.
    await asyncio.sleep(0.5)
    world.gateway.outbox.wake()
    await world.settle()
    assert sum(s.startswith("Herinnering") for s in subjects_to(world, COORDINATOR)) == 1


async def test_scheduled_mail_goes_out_without_waiting_for_the_outbox_poll(
    reminding_world: World,
) -> None:
    """A reminder due after 300 ms reaches the coordinator within a few seconds."""
    world = reminding_world
    await hold_one(world)
    await world.wait_for_mail_to(COORDINATOR, 2, timeout=3.0)


# -- what the reply says ----------------------------------------------------------------

ROBOTS = {
    "Auto-Submitted: auto-replied": ("Auto-Submitted: auto-replied\r\n", COORDINATOR),
    "Auto-Submitted: auto-generated": ("Auto-Submitted: auto-generated\r\n", COORDINATOR),
    "Precedence: bulk": ("Precedence: bulk\r\n", COORDINATOR),
    "X-Autoreply": ("X-Autoreply: yes\r\n", COORDINATOR),
    "null sender": ("", ""),
}


@pytest.mark.parametrize("case", list(ROBOTS))
async def test_out_of_office_reply_is_ignored_without_answer(world: World, case: str) -> None:
    """An auto-reply from the coordinator (even saying OK) gets 250, decides nothing, no answer."""
    held = await hold_one(world)
    headers, mail_from = ROBOTS[case]
    reply = world.coordinator_mail(
        "OK, ik ben afwezig tot maandag.\r\n", to=held.address,
        subject="Automatisch antwoord: besluit", extra_headers=headers,
    )
    sent = await world.send(reply, held.address, mail_from=mail_from)
    assert sent.accepted, sent
    assert await moderation_rows(world) == 0
    await assert_not_published(world, held)
    assert len(world.messages_to(COORDINATOR)) == 1  # the request, and no answer to it
    assert world.messages_to(AGENCY) == []


@pytest.mark.parametrize(
    "body",
    ["misschien?\r\n", "OK?\r\n", "Prima\r\n", "\r\n> OK\r\n> Graag je besluit\r\n"],
    ids=["misschien", "ok-question", "prima", "ok-only-quoted"],
)
async def test_unclear_reply_is_answered_and_item_stays_held(world: World, body: str) -> None:
    """An unclear reply gets the "decision unclear" mail; the item stays held, nothing sent."""
    held = await hold_one(world)
    reply = world.coordinator_mail(body, to=held.address)
    assert (await world.send(reply, held.address, mail_from=COORDINATOR)).accepted
    answers = await world.wait_for_mail_to(COORDINATOR, 2)
    assert str(answers[1]["Subject"]).startswith("Niet begrepen")
    await assert_not_published(world, held)
    assert world.messages_to(AGENCY) == []
    # The question stays open: a clear OK afterwards still decides.
    clear = world.coordinator_mail("OK\r\n", to=held.address)
    assert (await world.send(clear, held.address, mail_from=COORDINATOR)).accepted
    for member in held.members:
        await world.wait_for_mail_to(member)
