"""AVG/GDPR: erasure (forget), access (export-person) and retention, on a live gateway.

After ``forget`` the database file's bytes (and its WAL) hold the address nowhere, while
the counts stay; ``export-person`` shows what is held; old mail loses its bytes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from email.utils import parseaddr

import pytest

from bin_gateway.cli import main
from bin_gateway.services import DATABASE_NAME
from tests.support.world import AGENCY, COORDINATOR, DOMAIN, MakeWorld, World, restart

JAN = "Jan.DeVries@bewoners.example"
NAME = "Jan de Vries"


async def publish(world: World) -> str:
    """Jan on the list, one approved bulletin; Jan's reply address."""
    await world.store.add_members("buurt-noord", [(JAN, NAME), ("ander@bewoners.example", "")])
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    copy = (await world.wait_for_mail_to(JAN))[0]
    return parseaddr(str(copy["Reply-To"]))[1]


def jan_writes(to: str, body: str) -> bytes:
    return (
        f"From: {NAME} <{JAN}>\r\nTo: {to}\r\nSubject: Re: Inbraken\r\n"
        f"Message-ID: <{time.monotonic_ns()}@bewoners.example>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\n-- \r\n{NAME}\r\n{JAN}\r\n"
    ).encode()


async def cli(world: World, *args: str) -> int:
    command = [*args, "--config", str(world.config.source)]
    return await asyncio.to_thread(main, command)


async def cli_output(world: World, *args: str) -> str:
    """The command's own stdout (in this process, the running gateway logs there too)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bin_gateway", *args, "--config", str(world.config.source),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, out
    return out.decode()


def file_bytes(world: World) -> bytes:
    folder = world.config.gateway.data_dir
    return b"".join(p.read_bytes() for p in folder.glob(f"{DATABASE_NAME}*"))


async def test_forget_leaves_the_address_nowhere_in_the_database_file(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Member, copies, a relayed reply, the ack, a join request: all erased; counts stay."""
    reply_to = await publish(world)
    assert (await world.send(jan_writes(reply_to, "Ik zag een bus."), reply_to,
                             mail_from=JAN)).accepted
    await world.wait_for_mail_to(AGENCY, 2)
    join = f"buurt-zuid+aanmelden@{DOMAIN}"
    assert (await world.send(jan_writes(join, "aanmelden"), join, mail_from=JAN)).accepted
    await world.settle()
    before = file_bytes(world).lower()
    assert JAN.lower().encode() in before

    assert await cli(world, "forget", JAN) == 0
    out = capsys.readouterr().out
    assert "memberships removed:      1 (lists: buurt-noord)" in out
    assert "join requests removed:    1" in out
    data = file_bytes(world).lower()
    for needle in (JAN.lower(), JAN.lower().replace("@", "=40"), "jan.devries", NAME.lower()):
        assert needle.encode() not in data, needle
    rows = await world.store.read("SELECT count(*) FROM deliveries WHERE bulletin_id IS NOT NULL")
    assert rows[0][0] == 2  # the counts stay: two copies of the bulletin were sent
    assert [m.email for m in await world.store.members("buurt-noord")] == [
        "ander@bewoners.example"]
    # The thread's address no longer leads anywhere.
    sent = await world.send(jan_writes(reply_to, "nog iets"), reply_to, mail_from=JAN)
    assert not sent.accepted


async def test_export_person_prints_what_is_held(world: World) -> None:
    """The right of access: memberships, deliveries and reply threads of one address."""
    reply_to = await publish(world)
    assert (await world.send(jan_writes(reply_to, "Ik zag iets."), reply_to,
                             mail_from=JAN)).accepted
    await world.wait_for_mail_to(AGENCY, 2)
    await world.settle()
    person = json.loads(await cli_output(world, "members", "export-person", JAN.lower()))
    assert [m["list_id"] for m in person["memberships"]] == ["buurt-noord"]
    assert person["memberships"][0]["name"] == NAME
    assert person["deliveries_by_state"].get("sent", 0) >= 1
    assert len(person["reply_threads"]) == 1 and person["reply_threads"][0]["messages"] == 1
    assert len(person["messages_received_from"]) == 1


async def test_retention_erases_old_mail_at_start_and_daily(make_world: MakeWorld) -> None:
    """keep_messages: processed mail older than that keeps its row, loses its bytes."""
    world = await make_world(keep_messages="1s")
    await publish(world)
    await world.settle()
    await asyncio.sleep(1.2)
    world = await restart(world)  # the scheduler purges at start, then once a day
    deadline = time.monotonic() + 5
    while True:
        rows = await world.store.read("SELECT raw FROM inbound")
        if rows and all(bytes(r[0]).startswith(b"[removed after") for r in rows):
            break
        assert time.monotonic() < deadline, [bytes(r[0])[:40] for r in rows]
        await asyncio.sleep(0.1)


async def test_stats_counts_a_known_sequence(world: World) -> None:
    """One bulletin to two members, one reply: the counts and the reply rate, as JSON."""
    reply_to = await publish(world)
    assert (await world.send(jan_writes(reply_to, "Ik zag iets."), reply_to,
                             mail_from=JAN)).accepted
    await world.wait_for_mail_to(AGENCY, 2)
    await world.settle()
    counts = json.loads(await cli_output(world, "stats", "--list", "buurt-noord", "--json"))[
        "lists"]["buurt-noord"]
    assert counts["members"] == 2 and counts["bulletins"] == 1
    assert counts["copies_sent"] == 2 and counts["replies"] == 1
    assert counts["replies_relayed"] == 1 and counts["reply_rate_per_100"] == 50.0
    table = await cli_output(world, "stats")
    assert "buurt-zuid (since the start)" in table and "reply rate per 100 copies" in table
    assert JAN.lower() not in table.lower()
