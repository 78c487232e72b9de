"""SPEC §4, row by row: what the SMTP side answers to each kind of (bad) input.

Every refusal is checked three ways: the reply code and enhanced status, nothing in the
store, and nothing sent by the gateway to anyone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosmtplib
import pytest

from bin_gateway.models import SubmissionState
from tests.support.dkim_keys import plain_message, publish, rsa_key, sign
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    DOMAIN,
    SELECTOR,
    STRANGER,
    MakeWorld,
    Reply,
    World,
)

ADMIN = "beheer@beheer.example"
STRANGER_DOMAIN = STRANGER.rpartition("@")[2]


# -- helpers ------------------------------------------------------------------------


async def inbound_rows(world: World) -> int:
    rows = await world.store.read("SELECT count(*) FROM inbound")
    return int(rows[0][0])


async def assert_nothing_stored(world: World) -> None:
    assert await inbound_rows(world) == 0
    assert await world.store.pending_inbound() == []
    assert await world.store.submissions() == []


async def outgoing(world: World) -> tuple[int, int]:
    """(deliveries ever queued, messages the smarthost got), once the gateway is idle."""
    await world.settle()
    rows = await world.store.read("SELECT count(*) FROM deliveries")
    return int(rows[0][0]), len(world.sink.messages)


async def assert_nothing_sent(world: World, before: tuple[int, int] = (0, 0)) -> None:
    assert await outgoing(world) == before, [m.rcpt_tos for m in world.sink.messages]


@asynccontextmanager
async def connection(world: World) -> AsyncIterator[aiosmtplib.SMTP]:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.port, timeout=30, local_hostname="client.example"
    )
    await client.connect()
    try:
        await client.ehlo()
        yield client
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


async def command(client: aiosmtplib.SMTP, *words: bytes) -> Reply:
    """One command exactly as written (aiosmtplib's rcpt() would rewrite the address)."""
    answer = await client.execute_command(*words)
    return Reply(answer.code, answer.message)


async def data(client: aiosmtplib.SMTP, message: bytes) -> Reply:
    try:
        answer = await client.data(message)
    except aiosmtplib.SMTPDataError as exc:
        return Reply(exc.code, exc.message)
    return Reply(answer.code, answer.message)


def assert_reply(reply: Reply | None, code: int, status: str) -> None:
    assert reply is not None
    assert reply.code == code and reply.text.startswith(status), reply


def agency_signed(world: World, raw: bytes) -> bytes:
    return sign(raw, world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)


def stranger_signed(world: World, **kwargs: str) -> bytes:
    """Mail from an outsider whose own domain is authenticated (so only the role is wrong)."""
    key = rsa_key(2048)
    publish(world.dns.zone, STRANGER_DOMAIN, SELECTOR, key)
    raw = plain_message(f"Iemand <{STRANGER}>", **kwargs)
    return sign(raw, key, domain=STRANGER_DOMAIN, selector=SELECTOR)


# -- RCPT: never an open relay --------------------------------------------------------

RELAY_FORMS = [
    "victim@far.example",
    f"victim@{DOMAIN}.far.example",
    f"user%far.example@{DOMAIN}",
    f"agency%far.example@{DOMAIN}",
    f"far.example!user@{DOMAIN}",
    f"far.example!agency@{DOMAIN}",
    f"@{DOMAIN}:user@far.example",
    f"@{DOMAIN},@mail.{DOMAIN}:victim@far.example",
    "@[127.0.0.1]:victim@far.example",
    f'"victim@far.example"@{DOMAIN}',
    f'"agency%far.example"@{DOMAIN}',
    f'"victim@far.example via"@{DOMAIN}',
    "victim%far.example@[127.0.0.1]",
    f"agency@mail.{DOMAIN}",
]


@pytest.mark.parametrize("address", RELAY_FORMS)
async def test_rcpt_outside_our_domain_is_relaying_denied(world: World, address: str) -> None:
    """RCPT to any form that names another domain (%, !, source route, quotes) gets 550 5.7.1."""
    async with connection(world) as client:
        assert (await command(client, b"MAIL", f"FROM:<{STRANGER}>".encode())).code == 250
        reply = await command(client, b"RCPT", f"TO:<{address}>".encode())
        assert_reply(reply, 550, "5.7.1")
        # The transaction has no recipient, so there is nothing to send data to.
        assert (await command(client, b"DATA")).code == 503
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


async def test_rcpt_with_two_at_signs_is_never_accepted(world: World) -> None:
    """RCPT <user@far.example@ourdomain> (nmap relay form) is refused, by parser or router."""
    async with connection(world) as client:
        await command(client, b"MAIL", f"FROM:<{STRANGER}>".encode())
        reply = await command(client, b"RCPT", f"TO:<victim@far.example@{DOMAIN}>".encode())
        assert reply.code in (550, 553), reply
    await assert_nothing_stored(world)


async def test_our_domain_in_any_case_is_still_ours(world: World) -> None:
    """Domain comparison is case-insensitive: AGENCY@BIN.EXAMPLE.NL is the intake address."""
    async with connection(world) as client:
        await command(client, b"MAIL", f"FROM:<{AGENCY}>".encode())
        reply = await command(client, b"RCPT", f"TO:<AGENCY@{DOMAIN.upper()}>".encode())
        assert reply.code == 250, reply
        assert (await data(client, world.agency_mail())).code == 250
    assert await inbound_rows(world) == 1


UNKNOWN_LOCAL = [
    f"nobody@{DOMAIN}",
    f"buurt-west@{DOMAIN}",
    f"moderatie@{DOMAIN}",
    f"moderatie+@{DOMAIN}",
    f"moderatie+not-a-token@{DOMAIN}",
    f"moderatie+{'a' * 25}@{DOMAIN}",
    f"moderatie+{'a' * 24}@{DOMAIN}",  # well-formed, but no such token
    f"reactie+{'0' * 24}@{DOMAIN}",
    f"bounce+{'0' * 24}@{DOMAIN}",
    f"agency+extra@{DOMAIN}",
]


@pytest.mark.parametrize("address", UNKNOWN_LOCAL)
async def test_rcpt_to_unknown_local_address_or_token_is_550_511(
    world: World, address: str
) -> None:
    """Unknown local parts and malformed or unknown token addresses get 550 5.1.1 at RCPT."""
    async with connection(world) as client:
        await command(client, b"MAIL", f"FROM:<{COORDINATOR}>".encode())
        reply = await command(client, b"RCPT", f"TO:<{address}>".encode())
        assert_reply(reply, 550, "5.1.1")
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


async def test_altered_moderation_token_is_550_511(world: World) -> None:
    """A real moderation token with one character changed is an unknown address (5.1.1)."""
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    address = await world.moderation_address()
    token = address.split("+", 1)[1].split("@", 1)[0]
    altered = ("b" if token[0] != "b" else "c") + token[1:]
    before = await outgoing(world)
    async with connection(world) as client:
        await command(client, b"MAIL", f"FROM:<{COORDINATOR}>".encode())
        reply = await command(client, b"RCPT", f"TO:<moderatie+{altered}@{DOMAIN}>".encode())
        assert_reply(reply, 550, "5.1.1")
        ok = await command(client, b"RCPT", f"TO:<{address}>".encode())
        assert ok.code == 250, ok  # the genuine one routes: the refusal is about the token
    held = await world.store.submissions()
    assert [h.state for h in held] == [SubmissionState.HELD]
    await assert_nothing_sent(world, before)


# -- size -----------------------------------------------------------------------------


def big_message(world: World, size: int) -> bytes:
    line = "Dit is een heel lang bericht over de veiligheid in de buurt, regel na regel.\r\n"
    body = line * (size // len(line) + 1)
    return world.agency_mail(subject="Te groot", body=body)


async def test_message_over_max_size_is_552_534_and_connection_goes_on(world: World) -> None:
    """DATA over max_message_size (1 MB) gets 552 5.3.4; the same session then delivers."""
    async with connection(world) as client:
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        reply = await data(client, big_message(world, 1_200_000))
        assert_reply(reply, 552, "5.3.4")
        assert await inbound_rows(world) == 0
        assert (await command(client, b"NOOP")).code == 250
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        assert (await data(client, world.agency_mail())).code == 250
    assert await inbound_rows(world) == 1
    await world.settle()
    held = await world.store.submissions()
    assert {h.subject for h in held} == {"Inbraken in Noord"}


async def test_declared_size_over_max_is_552_534_at_mail(world: World) -> None:
    """MAIL FROM with SIZE= above the limit is refused at once with 552 5.3.4."""
    async with connection(world) as client:
        reply = await command(client, b"MAIL", f"FROM:<{AGENCY}>".encode(), b"SIZE=5000000")
        assert_reply(reply, 552, "5.3.4")
        ok = await command(client, b"MAIL", f"FROM:<{AGENCY}>".encode(), b"SIZE=1000")
        assert ok.code == 250, ok
    await assert_nothing_stored(world)


# -- who may post ---------------------------------------------------------------------


@pytest.mark.parametrize("target", ["buurt-noord", "agency"])
async def test_stranger_posting_is_550_571_and_nothing_stored(world: World, target: str) -> None:
    """An authenticated outsider mailing a list or the intake gets 550 5.7.1; nothing kept."""
    await world.add_members("buurt-noord", 2)
    sent = await world.send(stranger_signed(world), f"{target}@{DOMAIN}", mail_from=STRANGER)
    assert sent.rcpt[0].code == 250  # the address exists: the refusal comes after DATA
    assert_reply(sent.data, 550, "5.7.1")
    assert sent.data is not None and "not allowed" in sent.data.text
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


async def test_agency_mail_without_signature_is_550_571(world: World) -> None:
    """Agency From, no DKIM and no SPF pass: the domain is not authenticated, 550 5.7.1."""
    sent = await world.send(plain_message(), f"agency@{DOMAIN}")
    assert_reply(sent.data, 550, "5.7.1")
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


@pytest.mark.parametrize("selector", [SELECTOR, "s9"])
async def test_agency_mail_signed_with_unpublished_key_is_550_571(
    world: World, selector: str
) -> None:
    """A d=politie.example signature by a key that is not the published one fails: 550 5.7.1."""
    forged = sign(plain_message(), rsa_key(2048), domain=AGENCY_DOMAIN, selector=selector)
    sent = await world.send(forged, f"agency@{DOMAIN}")
    assert_reply(sent.data, 550, "5.7.1")
    assert sent.data is not None and "authenticated" in sent.data.text
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


# -- DNS trouble ----------------------------------------------------------------------


@pytest.fixture
async def quick_dns_world(make_world: MakeWorld) -> World:
    """The world with a 400 ms DNS timeout (instead of 2 s), so timeouts cost little."""
    return await make_world(dns_timeout="400ms")


async def test_dns_timeout_on_dkim_key_is_451_470_then_accepted_on_retry(
    quick_dns_world: World,
) -> None:
    """A timed-out DKIM key lookup answers 451 4.7.0; once DNS answers, the retry is taken."""
    world = quick_dns_world
    key_name = f"{SELECTOR}._domainkey.{AGENCY_DOMAIN}"
    world.dns.zone.timeout(key_name)
    message = world.agency_mail()
    sent = await world.send(message, f"agency@{DOMAIN}")
    assert_reply(sent.data, 451, "4.7.0")
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)

    with world.dns.zone.lock:
        world.dns.zone.timeouts.discard(key_name)
    again = await world.send(message, f"agency@{DOMAIN}")
    assert again.accepted, again
    assert await inbound_rows(world) == 1


async def test_dns_timeout_on_dkim_key_and_spf_is_451_470(quick_dns_world: World) -> None:
    """Both the selector record and the SPF TXT time out: 451 4.7.0, never a 550."""
    world = quick_dns_world
    world.dns.zone.timeout(f"{SELECTOR}._domainkey.{AGENCY_DOMAIN}")
    world.dns.zone.timeout(AGENCY_DOMAIN)
    sent = await world.send(world.agency_mail(), f"agency@{DOMAIN}")
    assert_reply(sent.data, 451, "4.7.0")
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


async def test_dns_timeout_on_spf_of_unsigned_mail_is_451_470(quick_dns_world: World) -> None:
    """Unsigned agency mail whose SPF lookup times out may yet pass: 451 4.7.0, not 550."""
    world = quick_dns_world
    world.dns.zone.timeout(AGENCY_DOMAIN)
    sent = await world.send(plain_message(), f"agency@{DOMAIN}")
    assert_reply(sent.data, 451, "4.7.0")
    await assert_nothing_stored(world)


# -- malformed input --------------------------------------------------------------------

HEAD = (
    f"From: Wijkagent Noord <{AGENCY}>\r\nTo: agency@{DOMAIN}\r\n"
    "Date: Mon, 04 Mar 2024 10:00:00 +0100\r\nMessage-ID: <rommel-{n}@politie.example>\r\n"
)

MALFORMED: dict[str, bytes] = {
    "multipart without boundary": (
        HEAD + "Subject: Geen grens\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhoi\r\n"
    ).encode(),
    "unterminated multipart": (
        HEAD + 'Subject: Open einde\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
        'boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\ntekst\r\n--b1\r\n'
        'Content-Type: multipart/alternative; boundary="b2"\r\n\r\n--b2\r\n'
    ).encode(),
    "8-bit header bytes": HEAD.encode() + b"Subject: Inbraak in de Kerkstra\xdfe \xe9\xff\r\n"
    b"X-Note: caf\xc3\xa9 \x80\x81\r\n\r\nTekst met latin-1: \xe9\xe8\r\n",
    "broken base64 and charset": (
        HEAD + "Subject: =?utf-8?B?!!!ongeldig?= =?x-onbekend?Q?abc?=\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=x-onbekend\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n@@@ dit is geen base64 ===\r\n"
    ).encode(),
    "bad quoted-printable and nested rfc822": (
        HEAD + 'Subject: Genest\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
        'boundary="q"\r\n\r\n--q\r\nContent-Type: text/plain; charset=utf-8\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=4 =\r\n--q\r\n"
        "Content-Type: message/rfc822\r\n\r\nnot: [a] header\r\n: leeg\r\n\r\n--q--\r\n"
    ).encode(),
    "NUL bytes in the body": HEAD.encode() + b"Subject: Nul\r\n\r\nBody \x00 met NUL\r\n",
    "NUL and ESC in the Subject": HEAD.encode() + b"Subject: Nul\x00byte \x1b[31m\r\n\r\nTekst\r\n",
    "encoded control characters in the Subject": (
        HEAD + "Subject: =?utf-8?q?Let_op=1B=07=00?=\r\n\r\nTekst\r\n"
    ).encode(),
    "huge header block": (
        HEAD + "Subject: Veel koppen\r\n"
        + "".join(f"X-Vulling-{i}: {'waarde ' * 10}\r\n" for i in range(8000))
        + "\r\nkort\r\n"
    ).encode(),
    "deeply nested multiparts": (
        HEAD + "Subject: Diep\r\nMIME-Version: 1.0\r\n"
        + "".join(
            f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n'
            for i in range(300)
        )
        + "Content-Type: text/plain\r\n\r\nbinnenste\r\n"
    ).encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_mail_is_handled_or_554_and_server_keeps_serving(
    world: World, name: str
) -> None:
    """Malformed MIME, 8-bit headers, bad encodings, huge headers: 250 and held, or 554 5.6.0."""
    raw = agency_signed(world, MALFORMED[name].replace(b"{n}", name.replace(" ", "-").encode()))
    async with connection(world) as client:
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        reply = await data(client, raw)
        assert reply.code == 250 or (reply.code == 554 and reply.text.startswith("5.6.0")), reply
        if reply.code == 250:
            assert await inbound_rows(world) == 1
        else:
            await assert_nothing_stored(world)
        # The same session goes on, and so does a new one.
        assert (await command(client, b"NOOP")).code == 250
        async with connection(world) as other:
            assert (await command(other, b"NOOP")).code == 250
    await world.settle()
    assert world.gateway.failed_task() is None
    if reply.code == 250:
        # Handled means handled: held for both of the agency's lists, coordinators asked.
        states = await world.store.read("SELECT state, error FROM inbound")
        assert [tuple(row) for row in states] == [("processed", "")]
        held = await world.store.submissions(SubmissionState.HELD)
        assert sorted(h.list_id for h in held) == ["buurt-noord", "buurt-zuid"]
        assert world.messages_to(COORDINATOR)


async def test_overlong_line_is_refused_and_session_goes_on(world: World) -> None:
    """A 5000-octet line (RFC 5321 limit 1000) is refused with 5xx; the session continues."""
    raw = world.agency_mail(extra_headers=f"X-Lang: {'x' * 5000}\r\n")
    async with connection(world) as client:
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        reply = await data(client, raw)
        assert 500 <= reply.code < 600, reply
        await assert_nothing_stored(world)
        assert (await command(client, b"NOOP")).code == 250
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        assert (await data(client, world.agency_mail())).code == 250
    assert await inbound_rows(world) == 1


AMBIGUOUS = {
    "two From headers": f"From: <{AGENCY}>\r\nFrom: Iemand <x@evil.example>\r\n",
    "two addresses in one From": f"From: <{AGENCY}>, <x@evil.example>\r\n",
    "two police addresses": f"From: <{AGENCY}>, <chef@{AGENCY_DOMAIN}>\r\n",
    "a group": f"From: Politie: <{AGENCY}>;\r\n",
    "no From": "",
}


@pytest.mark.parametrize("target", ["agency", "buurt-noord"])
@pytest.mark.parametrize("case", list(AMBIGUOUS))
async def test_ambiguous_from_is_550_571(world: World, case: str, target: str) -> None:
    """Several From headers, several mailboxes in From, or no From: 550 5.7.1, nothing stored."""
    raw = (
        f"{AMBIGUOUS[case]}To: agency@{DOMAIN}\r\nSubject: Dubbel\r\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0100\r\nMessage-ID: <dubbel@politie.example>\r\n"
        "\r\nTekst\r\n"
    ).encode()
    # Signed by the agency's own key over every From: only the ambiguity is wrong.
    headers = ["from", "to", "subject", "date"] if AMBIGUOUS[case] else ["to", "subject", "date"]
    signed = sign(raw, world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                  include_headers=headers)
    sent = await world.send(signed, f"{target}@{DOMAIN}")
    assert_reply(sent.data, 550, "5.7.1")
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


# -- acceptance ----------------------------------------------------------------------------


async def test_250_only_after_the_message_is_committed(world: World) -> None:
    """When the client reads 250, the inbound row with the exact bytes is already committed."""
    raw = world.agency_mail(subject="Vastgelegd")
    async with connection(world) as client:
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        reply = await data(client, raw)
        assert reply.code == 250, reply
        # Read through the store's other connection: only committed rows are visible.
        rows = await world.store.read("SELECT count(*), max(raw) FROM inbound")
    assert rows[0][0] == 1
    assert bytes(rows[0][1]) == raw


async def test_store_failure_answers_451_not_500(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler exception (database locked) answers 451 4.3.0, never aiosmtpd's 500."""
    async def locked(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(world.store, "add_inbound", locked)
    async with connection(world) as client:
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        reply = await data(client, world.agency_mail())
        assert_reply(reply, 451, "4.3.0")
        assert "locked" not in reply.text  # internals stay in the log
        monkeypatch.undo()
        # The failed transaction is over: the sender can retry at once on this session.
        await client.mail(AGENCY)
        await client.rcpt(f"agency@{DOMAIN}")
        assert (await data(client, world.agency_mail())).code == 250
    assert await inbound_rows(world) == 1


# -- several recipients -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("buurt-noord", "postmaster"),
        ("postmaster", "buurt-noord"),
        ("agency", "abuse"),
    ],
)
async def test_second_rcpt_of_another_kind_is_452_453(
    world: World, first: str, second: str
) -> None:
    """A list address and postmaster@ cannot share a transaction: the second gets 452 4.5.3."""
    async with connection(world) as client:
        await client.mail(AGENCY)
        assert (await command(client, b"RCPT", f"TO:<{first}@{DOMAIN}>".encode())).code == 250
        reply = await command(client, b"RCPT", f"TO:<{second}@{DOMAIN}>".encode())
        assert_reply(reply, 452, "4.5.3")
        assert (await data(client, world.agency_mail())).code == 250
    rows = await world.store.read("SELECT route, rcpt_tos FROM inbound")
    assert len(rows) == 1
    assert f"{second}@{DOMAIN}" not in rows[0]["rcpt_tos"]


async def test_moderation_token_and_list_address_do_not_mix(world: World) -> None:
    """A coordinator's decision and a post cannot share a transaction (452 4.5.3)."""
    assert (await world.send(world.agency_mail(), f"buurt-noord@{DOMAIN}")).accepted
    address = await world.moderation_address()
    async with connection(world) as client:
        await client.mail(COORDINATOR)
        assert (await command(client, b"RCPT", f"TO:<{address}>".encode())).code == 250
        reply = await command(client, b"RCPT", f"TO:<buurt-zuid@{DOMAIN}>".encode())
        assert_reply(reply, 452, "4.5.3")


async def test_several_list_addresses_make_one_held_item_per_list(world: World) -> None:
    """RCPT to two list addresses in one transaction: one inbound row, one held item each."""
    sent = await world.send(world.agency_mail(), [f"buurt-noord@{DOMAIN}", f"buurt-zuid@{DOMAIN}"])
    assert [r.code for r in sent.rcpt] == [250, 250]
    assert sent.accepted, sent
    assert await inbound_rows(world) == 1
    await world.settle()
    held = await world.store.submissions(SubmissionState.HELD)
    assert sorted(h.list_id for h in held) == ["buurt-noord", "buurt-zuid"]
    await world.wait_for_mail_to(COORDINATOR)
    await world.wait_for_mail_to("coordinator.zuid@example.nl")


@pytest.mark.parametrize("local", ["postmaster", "abuse", "PostMaster"])
async def test_postmaster_and_abuse_reach_the_admin_with_the_original(
    world: World, local: str
) -> None:
    """RFC 2142: postmaster@/abuse@ mail goes to the admin address with the original attached."""
    original = plain_message(
        f"Iemand <{STRANGER}>", subject="Spam van jullie?", body="Kenmerk Q7-unieke-tekst\r\n"
    )
    sent = await world.send(original, f"{local}@{DOMAIN}", mail_from=STRANGER)
    assert sent.accepted, sent
    forwarded = (await world.wait_for_mail_to(ADMIN))[0]
    attachments = list(forwarded.iter_attachments())
    assert len(attachments) == 1
    attached = attachments[0].get_content()
    assert isinstance(attached, bytes)
    assert attached == original
    assert str(forwarded["Subject"]) == f"[{local.lower()}@{DOMAIN}] Spam van jullie?"
    assert f"{local.lower()}@{DOMAIN}" in forwarded.get_body(("plain",)).get_content()
    assert all(ADMIN in r.rcpt_tos for r in world.sink.messages)
    assert STRANGER not in {r for m in world.sink.messages for r in m.rcpt_tos}


# -- loops ---------------------------------------------------------------------------------

LOOP_HEADERS = {
    "X-Loop": f"X-Loop: buurt-noord@{DOMAIN}\r\n",
    "X-Loop of our notices": f"X-Loop: bin-gateway@{DOMAIN}\r\n",
    "List-Id": f"List-Id: BIN Noord <buurt-noord.{DOMAIN}>\r\n",
}


@pytest.mark.parametrize("target", ["buurt-noord", "agency"])
@pytest.mark.parametrize("case", list(LOOP_HEADERS))
async def test_our_own_loop_header_coming_back_is_dropped(
    world: World, case: str, target: str
) -> None:
    """Mail carrying our X-Loop or List-Id is answered 250 but dropped: not stored, not sent."""
    await world.add_members("buurt-noord", 2)
    looped = world.agency_mail(extra_headers=LOOP_HEADERS[case])
    sent = await world.send(looped, f"{target}@{DOMAIN}")
    assert sent.accepted, sent
    await assert_nothing_stored(world)
    await assert_nothing_sent(world)


async def test_foreign_list_id_is_not_a_loop(world: World) -> None:
    """Control: another list's List-Id does not make genuine agency mail a loop."""
    mail = world.agency_mail(extra_headers="List-Id: Nieuws <nieuws.politie.example>\r\n")
    assert (await world.send(mail, f"buurt-noord@{DOMAIN}")).accepted
    assert await inbound_rows(world) == 1
    await world.wait_for_mail_to(COORDINATOR)


# -- greeting and extensions ----------------------------------------------------------------


async def test_banner_names_bin_gateway_and_hostname(world: World) -> None:
    """The 220 greeting says bin-gateway and the configured hostname."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=world.port, timeout=10)
    greeting = await client.connect()
    try:
        assert greeting.code == 220
        assert "bin-gateway" in greeting.message
        assert f"mail.{DOMAIN}" in greeting.message
    finally:
        await client.quit()


async def test_ehlo_advertises_8bitmime_smtputf8_and_size_but_no_auth(world: World) -> None:
    """EHLO offers 8BITMIME, SMTPUTF8 and SIZE; no AUTH (no submission service)."""
    async with connection(world) as client:
        assert client.supports_extension("8bitmime")
        assert client.supports_extension("smtputf8")
        assert client.supports_extension("size")
        assert not client.supports_extension("auth")
        assert client.last_ehlo_response is not None
        assert f"mail.{DOMAIN}" in client.last_ehlo_response.message


async def test_pipelined_commands_are_answered_in_order(world: World) -> None:
    """MAIL, RCPT, RCPT, DATA sent in one write get their replies in order (pipelining)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", world.port)
    try:
        assert (await reader.readline()).startswith(b"220")
        writer.write(b"EHLO client.example\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        writer.write(
            f"MAIL FROM:<{AGENCY}>\r\nRCPT TO:<nobody@{DOMAIN}>\r\n"
            f"RCPT TO:<buurt-noord@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        codes = [(await reader.readline())[:3] for _ in range(4)]
        assert codes == [b"250", b"550", b"250", b"354"]
        body = world.agency_mail().replace(b"\r\n.", b"\r\n..")
        writer.write(body + b".\r\nQUIT\r\n")
        assert (await reader.readline()).startswith(b"250")
        assert (await reader.readline()).startswith(b"221")
    finally:
        writer.close()
        await writer.wait_closed()
    assert await inbound_rows(world) == 1


# -- replays ----------------------------------------------------------------------------


async def test_resent_agency_mail_is_held_once(world: World) -> None:
    """A sender retrying after a lost 250 (same Message-ID): 250 again, one held item."""
    message = world.agency_mail()
    for _ in range(2):
        assert (await world.send(message, f"buurt-noord@{DOMAIN}")).accepted
    await world.settle()
    assert len(await world.store.submissions()) == 1


async def test_two_mails_with_malformed_message_ids_are_not_taken_for_a_replay(
    world: World,
) -> None:
    """"<Bericht 1@x>" and "<Bericht 2@x>" are different ids, though Python's parser cuts
    both to "<Bericht": each message gets its own held item."""
    for n in (1, 2):
        raw = plain_message(subject=f"Bericht {n}").replace(b"melding-1", f"Bericht {n}".encode())
        signed = sign(raw, world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)
        assert (await world.send(signed, f"buurt-noord@{DOMAIN}")).accepted
    await world.settle()
    assert sorted(s.subject for s in await world.store.submissions()) == ["Bericht 1", "Bericht 2"]
