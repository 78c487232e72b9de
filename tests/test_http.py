"""The [http] side on a live gateway, with a real HTTP client: one-click unsubscribe
(RFC 8058), the page a person sees, /healthz and /metrics after a known sequence."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from bin_gateway.link_tokens import LinkSigner
from tests.support.world import COORDINATOR, DOMAIN, MakeWorld, World

PUBLIC = "https://bin.example.nl"
HTTP = f'[http]\nlisten = "127.0.0.1:0"\npublic_url = "{PUBLIC}"'
MEMBER = "lid1@bewoners.example"


async def publish(world: World) -> str:
    """Two members, one approved bulletin; the member's one-click URL, made local."""
    await world.store.add_members("buurt-noord", [(MEMBER, "Lid Een"),
                                                  ("lid2@bewoners.example", "Lid Twee")])
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    token_address = await world.moderation_address()
    ok = world.coordinator_mail("OK\r\n", to=token_address)
    assert (await world.send(ok, token_address, mail_from=COORDINATOR)).accepted
    copy = (await world.wait_for_mail_to(MEMBER))[0]
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", str(copy["List-Unsubscribe"]))
    assert url is not None and url.group(1).startswith(f"{PUBLIC}/u/")
    return url.group(1).replace(PUBLIC, local(world))


def local(world: World) -> str:
    assert world.gateway.http is not None
    return f"http://127.0.0.1:{world.gateway.http.port}"


async def member_emails(world: World) -> list[str]:
    return [m.email for m in await world.store.members("buurt-noord")]


async def test_one_click_post_unsubscribes_and_confirms_once(make_world: MakeWorld) -> None:
    """RFC 8058: the POST alone removes the member; a repeat changes nothing, mails nothing."""
    world = await make_world(http=HTTP)
    url = await publish(world)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:  # a link scanner or a person opening it
            assert page.status == 200
            text = await page.text()
            assert "Ja, meld mij af" in text and 'method="post"' in text
        assert MEMBER in await member_emails(world)
        for _ in range(2):
            async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as done:
                assert done.status == 200
        assert MEMBER not in await member_emails(world)
    await world.settle()
    confirmations = [m for m in world.messages_to(MEMBER) if "afgemeld" in str(m["Subject"])]
    assert len(confirmations) == 1


async def test_altered_or_expired_links_are_refused(make_world: MakeWorld) -> None:
    """A changed character is 404, an expired token 410; nobody is removed."""
    world = await make_world(http=HTTP)
    url = await publish(world)
    altered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    links = LinkSigner.load_or_create(world.config.gateway.data_dir)
    member_id = next(m.id for m in await world.store.members("buurt-noord") if m.email == MEMBER)
    expired = f"{local(world)}/u/{links.make(member_id, 'buurt-noord', 1)}"
    async with aiohttp.ClientSession() as http:
        for target, status in ((altered, 404), (expired, 410)):
            async with http.post(target, data={"List-Unsubscribe": "One-Click"}) as answer:
                assert answer.status == status
        async with http.post(url, data={"something": "else"}) as answer:
            assert answer.status == 400
    assert MEMBER in await member_emails(world)


async def test_healthz_reports_database_and_smarthost(make_world: MakeWorld) -> None:
    """200 while both answer; 503 naming the smarthost when it is gone."""
    world = await make_world(http=HTTP)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{local(world)}/healthz") as answer:
            assert answer.status == 200
            assert await answer.json() == {"database": "ok", "delivery": "ok"}
        await world.sink.stop()
        async with http.get(f"{local(world)}/healthz") as answer:
            assert answer.status == 503
            assert (await answer.json())["delivery"].startswith("smarthost unreachable")


async def test_metrics_after_a_known_sequence(make_world: MakeWorld) -> None:
    """One bulletin to two members and one refused stranger: the numbers say so."""
    world = await make_world(http=HTTP)
    await publish(world)
    stranger = world.coordinator_mail("Hallo", to=f"buurt-noord@{DOMAIN}",
                                      author="iemand@elders.example")
    assert not (await world.send(stranger, f"buurt-noord@{DOMAIN}",
                                 mail_from="iemand@elders.example")).accepted
    await world.wait_for_mail_to("lid2@bewoners.example")
    await world.settle()
    async with aiohttp.ClientSession() as http, http.get(f"{local(world)}/metrics") as answer:
        assert answer.status == 200
        text = await answer.text()
    assert 'bin_gateway_members{list="buurt-noord"} 2.0' in text
    assert 'bin_gateway_held_items 0.0' in text
    assert 'bin_gateway_queue_depth 0.0' in text
    assert re.search(r'bin_gateway_deliveries\{state="sent"\} [4-9]', text)  # copies + notices
    assert 'state="deferred"' not in text  # nothing was refused for a while
    assert 'bin_gateway_smtp_messages_total{outcome="accept",reply="250 2.0.0"} 2.0' in text
    assert re.search(r'bin_gateway_smtp_messages_total\{outcome="reject",reply="550 5.7.1"\} 1',
                     text)


async def test_join_confirmed_by_the_link_in_the_question(make_world: MakeWorld) -> None:
    """With [http], the join question carries a link: GET shows a button, POST confirms."""
    world = await make_world(http=HTTP)
    join = f"buurt-noord+aanmelden@{DOMAIN}"
    newcomer = "nieuw@bewoners.example"
    mail = (f"From: {newcomer}\r\nTo: {join}\r\nSubject: aanmelden\r\n"
            "Message-ID: <j1@bewoners.example>\r\n\r\nGraag.\r\n").encode()
    assert (await world.send(mail, join, mail_from=newcomer)).accepted
    question = (await world.wait_for_mail_to(newcomer))[0]
    found = re.search(r"https://bin\.example\.nl/j/[a-z2-7]+", str(question.get_body(
        ("plain",)).get_content()))
    assert found is not None
    url = found.group(0).replace(PUBLIC, local(world))
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            assert page.status == 200 and "Ja, ik wil lid worden" in await page.text()
        assert newcomer not in await member_emails(world)
        async with http.post(url) as done:
            assert done.status == 200
        async with http.post(url[:-2] + "aa") as bad:
            assert bad.status == 404
    assert newcomer in await member_emails(world)
    welcome = await world.wait_for_mail_to(newcomer, 2)
    assert "Welkom" in str(welcome[1]["Subject"])


async def test_metrics_count_a_deferred_copy(make_world: MakeWorld) -> None:
    """A copy the smarthost refuses for now shows as deferred until it goes out."""
    world = await make_world(http=HTTP, retry_after="1h")
    world.sink.answer_for("lid2@bewoners.example", "451 4.2.0 mailbox busy")
    await publish(world)
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{local(world)}/metrics") as answer:
                text = await answer.text()
            if 'bin_gateway_deliveries{state="deferred"} 1.0' in text:
                break
            await asyncio.sleep(0.05)
    assert 'bin_gateway_deliveries{state="deferred"} 1.0' in text
    assert 'bin_gateway_queue_depth 1.0' in text
