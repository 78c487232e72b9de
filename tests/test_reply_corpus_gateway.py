"""The reply corpus (tests/messages/replies/) through the real gateway on loopback.

Every member of the corpus is put on the list, one agency bulletin is published, and each
member's reply is sent, with the member's own envelope, to the reply address of their own
copy. What the agency and the coordinators receive is read whole (every header and part
decoded, images' metadata included): none of the case's identity strings may appear, and
the member's new text must. Robots (out-of-office, bounces) are taken and relayed to no
one; quote-only and encrypted replies are relayed to no one and the member is told.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parseaddr

import pytest

from tests.support.reply_corpus import ReplyCase, decoded_dump, leaks, load_cases
from tests.support.world import AGENCY, COORDINATOR, COORDINATOR_2, DOMAIN, World

CASES = load_cases()
TARGETS = (AGENCY, COORDINATOR, COORDINATOR_2)


def _squeeze(text: str) -> str:
    return " ".join(text.split()).lower()


async def _publish(world: World) -> dict[str, str]:
    """All corpus members on the list, one approved bulletin; member -> reply address."""
    people = {case.member.lower(): (case.member, case.name) for case in CASES}
    await world.store.add_members("buurt-noord", list(people.values()))
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    addresses = {}
    for member, _ in people.values():
        copy = (await world.wait_for_mail_to(member))[0]
        addresses[member.lower()] = parseaddr(str(copy["Reply-To"]))[1]
    return addresses


def _relays(world: World) -> list[bytes]:
    return [r.data for r in world.sink.messages
            if set(r.rcpt_tos) & set(TARGETS) and b"\r\nX-Loop:" in r.data
            and b"reactie+" in r.data.split(b"\r\n\r\n", 1)[0]]


async def _wait_for(world: World, count: int, what: str) -> None:
    deadline = time.monotonic() + 15
    while len(_relays(world)) < count:
        assert time.monotonic() < deadline, f"{what}: {len(_relays(world))} of {count} relays"
        await asyncio.sleep(0.02)


def _told(world: World, member: str) -> int:
    """How many "not passed on" notes the member has had."""
    return sum("niet doorgestuurd" in str(m["Subject"]) for m in world.messages_to(member))


async def _check_relayed(world: World, case: ReplyCase, new: list[bytes]) -> None:
    assert len(new) == len(TARGETS), (case.stem, len(new))
    for data in new:
        dump = decoded_dump(data)
        assert leaks(dump, list(case.absent)) == [], case.stem
        squeezed = _squeeze(dump)
        missing = [p for p in case.present if _squeeze(p) not in squeezed]
        assert missing == [], (case.stem, missing)


async def test_every_corpus_reply_through_the_gateway(world: World) -> None:
    """Each realistic reply: relayed without identity with its new text, or not relayed."""
    addresses = await _publish(world)
    world.sink.messages.clear()
    problems: list[str] = []
    for case in CASES:
        before, told_before = len(_relays(world)), _told(world, case.member)
        address = addresses[case.member.lower()]
        mail_from = "" if case.kind == "bounce" else case.member
        sent = await world.send(case.raw(address), address, mail_from=mail_from)
        if not sent.accepted:
            problems.append(f"{case.stem}: refused {sent}")
            continue
        if case.kind == "relay":
            try:
                await _wait_for(world, before + len(TARGETS), case.stem)
                await _check_relayed(world, case, _relays(world)[before:])
            except AssertionError as exc:
                problems.append(f"{case.stem}: {exc}")
        else:
            await world.settle()
            await asyncio.sleep(0.1)
            if len(_relays(world)) != before:
                problems.append(f"{case.stem}: a {case.kind} was relayed")
            told = _told(world, case.member) > told_before
            if case.kind in ("quote-only", "encrypted") and not told:
                problems.append(f"{case.stem}: the member was not told")
            if case.kind in ("auto-reply", "bounce") and told:
                problems.append(f"{case.stem}: a robot was answered")
    assert problems == []


@pytest.mark.parametrize("kind", ["quote-only", "encrypted"])
def test_corpus_has_the_kinds_the_gateway_explains(kind: str) -> None:
    """The corpus holds at least one reply the member must be told about, per kind."""
    assert any(case.kind == kind for case in CASES)
