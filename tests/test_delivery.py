"""F3 delivery: the durable per-recipient queue against a smarthost that misbehaves."""

from __future__ import annotations

import asyncio
import time

from bin_gateway.approval import decide_by_admin
from bin_gateway.models import DeliveryState, SubmissionState
from bin_gateway.services import Services
from tests.support.world import COORDINATOR, DOMAIN, MakeWorld, World


async def post_as_coordinator(world: World, subject: str = "Buurtbarbecue") -> None:
    mail = world.coordinator_mail("Zaterdag barbecue op het plein.\r\n",
                                  to=f"buurt-noord@{DOMAIN}", subject=subject,
                                  author=f"Coby Coördinator <{COORDINATOR}>")
    sent = await world.send(mail, f"buurt-noord@{DOMAIN}", mail_from=COORDINATOR)
    assert sent.accepted, sent


async def bulletin_deliveries(world: World) -> list:
    every = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.SENT,
             DeliveryState.FAILED)
    return [d for d in await world.store.deliveries(every) if d.bulletin_id is not None]


async def wait_until_settled(world: World, count: int, timeout: float = 15.0) -> list:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await bulletin_deliveries(world)
        settled = [d for d in rows if d.state in (DeliveryState.SENT, DeliveryState.FAILED)]
        if len(rows) >= count and len(settled) == len(rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"not settled: {await bulletin_deliveries(world)}")


async def test_coordinator_post_goes_out_without_holding(world: World) -> None:
    """F3: a coordinator's own post is not held and shows the coordinator's name."""
    members = await world.add_members("buurt-noord", 5)
    await post_as_coordinator(world)
    copies = [(await world.wait_for_mail_to(m))[0] for m in members]
    assert all("Coby Coördinator via BIN Noord" in str(c["From"]) for c in copies)
    assert await world.store.submissions() == []
    confirmation = (await world.wait_for_mail_to(COORDINATOR))[0]
    assert "5" in confirmation.get_body(("plain",)).get_content()


async def test_temporary_refusal_is_retried_and_delivered_once(world: World) -> None:
    """A 451 for one member is retried with back-off; the member gets exactly one copy."""
    members = await world.add_members("buurt-noord", 4)
    world.sink.answer_for(members[1], "451 4.3.0 try later", times=2)
    await post_as_coordinator(world)
    rows = await wait_until_settled(world, 4)
    assert {d.state for d in rows} == {DeliveryState.SENT}
    retried = next(d for d in rows if d.recipient == members[1])
    assert retried.attempts == 3
    assert len(world.messages_to(members[1])) == 1


async def test_permanent_refusal_fails_that_member_only(world: World) -> None:
    """A 550 for one member marks that copy failed with the reply; the rest are sent."""
    members = await world.add_members("buurt-noord", 4)
    world.sink.answer_for(members[2], "550 5.1.1 no such user")
    await post_as_coordinator(world)
    rows = await wait_until_settled(world, 4)
    failed = [d for d in rows if d.state is DeliveryState.FAILED]
    assert [d.recipient for d in failed] == [members[2]]
    assert failed[0].last_code == 550 and "no such user" in failed[0].last_reply
    assert failed[0].attempts == 1


async def test_smarthost_down_then_back_delivers_everyone(world: World) -> None:
    """Connection errors are temporary: once the smarthost is back, nobody is skipped."""
    members = await world.add_members("buurt-noord", 6)
    world.sink.refuse_connections()
    await post_as_coordinator(world)
    await asyncio.sleep(0.6)
    assert not any(world.messages_to(m) for m in members)
    world.sink.refuse_connections(False)
    rows = await wait_until_settled(world, 6)
    assert {d.state for d in rows} == {DeliveryState.SENT}
    assert all(len(world.messages_to(m)) == 1 for m in members)


async def test_gives_up_after_give_up_after(make_world: MakeWorld) -> None:
    """A copy refused temporarily for longer than give_up_after is failed, not retried forever."""
    world = await make_world(give_up_after="1s", retry_after="100ms")
    members = await world.add_members("buurt-noord", 2)
    world.sink.answer_for(members[0], "451 4.2.0 mailbox busy")
    await post_as_coordinator(world)
    rows = await wait_until_settled(world, 2)
    stuck = next(d for d in rows if d.recipient == members[0])
    assert stuck.state is DeliveryState.FAILED and "gave up" in stuck.last_reply
    assert stuck.attempts >= 2


async def test_admin_can_approve_from_the_cli_backend(world: World) -> None:
    """`held approve` publishes to every member and tells the agency, like an OK reply."""
    members = await world.add_members("buurt-noord", 3)
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    await world.wait_for_mail_to(COORDINATOR)
    held = (await world.store.submissions(SubmissionState.HELD))[0]
    services = Services(world.config, world.store, world.gateway.services.signer,
                        world.gateway.services.links)
    message = await decide_by_admin(services, held.id, approve=True, text="", actor="cli:test")
    assert "3 members" in message
    world.gateway.outbox.wake()
    for member in members:
        assert len(await world.wait_for_mail_to(member)) == 1
