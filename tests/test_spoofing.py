"""Spoofed agency mail is refused with 550 5.7.1 and leaves no trace (SPEC §4, §5, §9.3).

The attacker owns evil.example, with a published DKIM key and SPF for the test client's
address: their mail is authenticated, for evil.example. Each trick tries to make the
gateway believe it comes from the allow-listed politie.example. Controls show that the
genuine forms pass, so a refusal is about the trick and not about a broken setup.
Last, SMTP smuggling: bare-LF/CR end-of-data forms never end the message.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bin_gateway.models import SubmissionState
from tests.support.dkim_keys import DkimKey, plain_message, publish, rsa_key, sign
from tests.support.world import AGENCY, AGENCY_DOMAIN, COORDINATOR, DOMAIN, SELECTOR, World

ATTACKER = "x@evil.example"
ATTACKER_DOMAIN = "evil.example"
INTAKE = f"agency@{DOMAIN}"


# -- helpers ------------------------------------------------------------------------


def attacker_key(world: World) -> DkimKey:
    key = rsa_key(2048)
    publish(world.dns.zone, ATTACKER_DOMAIN, SELECTOR, key)
    world.dns.zone.add_txt(ATTACKER_DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    return key


def by_attacker(world: World, raw: bytes, **kwargs: object) -> bytes:
    """`raw` with a valid evil.example DKIM signature."""
    return sign(raw, attacker_key(world), domain=ATTACKER_DOMAIN, selector=SELECTOR,
                **kwargs)  # type: ignore[arg-type]


def message(head: str, *, subject: str = "Inbraken in Noord", body: str = "Tekst.\r\n") -> bytes:
    """A message whose From lines are `head` exactly (with CRLF), and a unique Message-ID."""
    return (
        f"To: {INTAKE}\r\n{head}Subject: {subject}\r\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0100\r\n"
        f"Message-ID: <{time.monotonic_ns()}@spoof.example>\r\n\r\n{body}"
    ).encode()


async def inbound_rows(world: World) -> int:
    rows = await world.store.read("SELECT count(*) FROM inbound")
    return int(rows[0][0])


async def assert_refused_without_trace(world: World, raw: bytes, *, mail_from: str,
                                       says: str, rcpt: str = INTAKE) -> None:
    """550 5.7.1 whose text holds `says`; nothing stored, nothing queued, nothing sent."""
    sent = await world.send(raw, rcpt, mail_from=mail_from)
    assert sent.rcpt[0].code == 250
    assert sent.data is not None, sent
    assert sent.data.code == 550 and sent.data.text.startswith("5.7.1"), sent.data
    assert says in sent.data.text, sent.data
    await world.settle()
    assert await inbound_rows(world) == 0
    assert await world.store.submissions() == []
    deliveries = await world.store.read("SELECT count(*) FROM deliveries")
    assert deliveries[0][0] == 0
    assert world.sink.messages == []


async def assert_held(world: World, raw: bytes, *, mail_from: str = AGENCY) -> None:
    sent = await world.send(raw, f"buurt-noord@{DOMAIN}", mail_from=mail_from)
    assert sent.accepted, sent
    await world.wait_for_mail_to(COORDINATOR)
    held = await world.store.submissions(SubmissionState.HELD)
    assert [h.sender for h in held] == [AGENCY]


NOT_AUTHENTICATED = "not authenticated"


# -- controls --------------------------------------------------------------------------


async def test_control_genuine_dkim_signed_agency_mail_is_held(world: World) -> None:
    """Control: agency mail with the agency's aligned DKIM signature is accepted and held."""
    await assert_held(world, world.agency_mail())


async def test_control_aligned_spf_pass_is_enough(world: World) -> None:
    """Control: unsigned agency mail with an SPF pass for an aligned MAIL FROM is held."""
    world.dns.zone.remove(AGENCY_DOMAIN)
    world.dns.zone.add_txt(AGENCY_DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    await assert_held(world, plain_message())


# -- authentication of the From domain ----------------------------------------------------


async def test_agency_from_with_dkim_of_attacker_domain_is_refused(world: World) -> None:
    """Agency From with a valid d=evil.example signature (unaligned) gets 550 5.7.1."""
    raw = by_attacker(world, plain_message())
    await assert_refused_without_trace(world, raw, mail_from=ATTACKER, says=NOT_AUTHENTICATED)


async def test_spf_pass_for_unaligned_mail_from_is_refused(world: World) -> None:
    """SPF passes for MAIL FROM x@evil.example, but From is the agency: 550 5.7.1."""
    attacker_key(world)  # publishes evil.example's SPF for 127.0.0.1
    await assert_refused_without_trace(
        world, plain_message(), mail_from=ATTACKER, says=NOT_AUTHENTICATED
    )


async def test_unsigned_agency_mail_from_agency_mail_from_is_refused(world: World) -> None:
    """A plain spoof: agency From and MAIL FROM, no signature, SPF -all: 550 5.7.1."""
    await assert_refused_without_trace(
        world, plain_message(), mail_from=AGENCY, says=NOT_AUTHENTICATED
    )


# -- the allow-listed address where it is not the address ----------------------------------

NOT_ALLOWED = "not allowed"
AMBIGUOUS = "From"

# From value, and what the refusal says: the attacker is read as the sender (not allowed),
# or the From is refused as unreadable (ambiguous).
LOOKALIKES = {
    "agency address as display name": (f'"{AGENCY}" <{ATTACKER}>', NOT_ALLOWED),
    "agency address as display name, unquoted": (f"{AGENCY} <{ATTACKER}>", AMBIGUOUS),
    "agency address in a comment": (f"{ATTACKER} ({AGENCY})", NOT_ALLOWED),
    "look-alike suffix domain": (
        f"<wijkagent.noord@{AGENCY_DOMAIN}.{ATTACKER_DOMAIN}>", NOT_ALLOWED
    ),
}


@pytest.mark.parametrize("target", ["agency", "buurt-noord"])
@pytest.mark.parametrize("case", list(LOOKALIKES))
async def test_agency_address_shown_but_not_the_sender_is_refused(
    world: World, case: str, target: str
) -> None:
    """The agency address in a display name or comment, or a look-alike domain: 550 5.7.1."""
    author, says = LOOKALIKES[case]
    raw = by_attacker(world, message(f"From: {author}\r\n"))
    await assert_refused_without_trace(
        world, raw, mail_from=ATTACKER, says=says, rcpt=f"{target}@{DOMAIN}"
    )


async def test_quoted_local_part_holding_the_agency_address_is_refused(world: World) -> None:
    """From "wijkagent.noord@politie.example"@evil.example (signed by evil): 550 5.7.1."""
    raw = by_attacker(world, message(f'From: "{AGENCY}"@{ATTACKER_DOMAIN}\r\n'))
    await assert_refused_without_trace(world, raw, mail_from=ATTACKER, says=AMBIGUOUS)


# -- From lines other readers see differently (espoofer a8-a11, a14) ---------------------

FROM_LINES = {
    "leading space, only From": f" From: Wijkagent <{AGENCY}>\r\n",
    "leading space after the attacker's From": f"From: <{ATTACKER}>\r\n From: <{AGENCY}>\r\n",
    "space before the colon": f"From : Wijkagent <{AGENCY}>\r\n",
    "folded header name": f"From\r\n : Wijkagent <{AGENCY}>\r\n",
    "agency From after the attacker's": f"From: <{ATTACKER}>\r\nFrom: <{AGENCY}>\r\n",
    "agency From before the attacker's": f"From: <{AGENCY}>\r\nFrom: <{ATTACKER}>\r\n",
    "two mailboxes": f"From: <{AGENCY}>, <{ATTACKER}>\r\n",
}


@pytest.mark.parametrize("case", list(FROM_LINES))
async def test_from_line_tricks_are_refused_as_ambiguous(world: World, case: str) -> None:
    """A From with a leading space, a space before ':', a folded name, or two: 550 5.7.1."""
    raw = message(FROM_LINES[case])
    # The attacker signs what they can: as evil.example, over the headers dkimpy can parse.
    if case != "folded header name":
        headers = ["to", "subject", "date"] + (["from"] if "From:" in FROM_LINES[case] else [])
        raw = by_attacker(world, raw, include_headers=headers)
    else:
        attacker_key(world)
    await assert_refused_without_trace(world, raw, mail_from=ATTACKER, says=AMBIGUOUS)


# -- DKIM signatures that do not cover what they seem to ------------------------------------


def _length_tag_plus_appended_text(world: World) -> bytes:
    signed = sign(plain_message(), world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                  length=True)
    return signed + b"\r\nPS van de aanvaller: bel dit nummer 0900-123!\r\n"


def _length_tag_alone(world: World) -> bytes:
    return sign(plain_message(), world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                length=True)


def _from_not_in_h(world: World) -> bytes:
    return sign(plain_message(), world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                include_headers=["to", "subject", "date"])


def _rsa_sha1(world: World) -> bytes:
    return sign(plain_message(), world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                algorithm=b"rsa-sha1")


def _expired(world: World) -> bytes:
    return sign(plain_message(), world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR,
                expires=int(time.time()) - 3600)


def _weak_key(world: World) -> bytes:
    key = rsa_key(512)
    publish(world.dns.zone, AGENCY_DOMAIN, "zwak", key)
    return sign(plain_message(), key, domain=AGENCY_DOMAIN, selector="zwak")


@pytest.mark.parametrize(
    "build",
    [_length_tag_plus_appended_text, _length_tag_alone, _from_not_in_h, _rsa_sha1, _expired,
     _weak_key],
    ids=["l=-plus-appended-text", "l=-alone", "from-not-in-h", "rsa-sha1", "expired-x",
         "512-bit-key"],
)
async def test_agency_signature_that_does_not_cover_the_mail_is_refused(
    world: World, build: object
) -> None:
    """dkim_verify refuses l= (any), h= without From, rsa-sha1, past x=, keys < 1024 bits."""
    assert callable(build)
    await assert_refused_without_trace(
        world, build(world), mail_from=AGENCY, says=NOT_AUTHENTICATED
    )


async def test_second_valid_signature_of_the_agency_is_found(world: World) -> None:
    """Control: an evil.example signature on top does not hide the agency's own below it."""
    genuine = world.agency_mail()
    both = by_attacker(world, genuine, include_headers=["from", "to", "subject", "date"])
    await assert_held(world, both)


# -- SMTP smuggling ---------------------------------------------------------------------------


class RawClient:
    """Bytes on a socket, exactly as written: no line-ending repair, no dot-stuffing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.reply())[0] == 220
        return client

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError("closed by the server")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    async def command(self, line: str) -> int:
        self.writer.write(line.encode() + b"\r\n")
        return (await self.reply())[0]

    async def replies_until_closed(self) -> list[int]:
        codes = []
        while True:
            try:
                codes.append((await self.reply())[0])
            except ConnectionError:
                return codes

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def smuggling_payload(world: World, end_of_data: bytes) -> bytes:
    """One agency-signed message whose body hides `end_of_data` + a second transaction.

    The hidden message is itself a genuinely signed agency mail, so if the server took
    the fake end of data for real, it would accept a second message (and hold it twice,
    for the intake's two lists).
    """
    hidden = world.agency_mail(subject="Gesmokkeld bericht").replace(
        b"<melding-1@politie.example>", b"<gesmokkeld@politie.example>"
    )
    body = (
        b"Eerste bericht, zonder regeleinde."
        + end_of_data
        + f"MAIL FROM:<{AGENCY}>\r\nRCPT TO:<{INTAKE}>\r\nDATA\r\n".encode()
        + hidden
    )
    outer = plain_message(subject="Buitenste bericht", body=body.decode("utf-8")).replace(
        b"<melding-1@politie.example>", b"<buiten@politie.example>"
    )
    return sign(outer, world.agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)


END_OF_DATA_VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r.\n", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize(
    "end_of_data", END_OF_DATA_VARIANTS, ids=[repr(v)[2:-1] for v in END_OF_DATA_VARIANTS]
)
async def test_smuggled_second_message_is_not_accepted(world: World, end_of_data: bytes) -> None:
    """A bare-LF/CR end of data never ends DATA: one reply, one message, nothing smuggled."""
    payload = smuggling_payload(world, end_of_data)
    assert b"\r\n.\r\n" not in payload and not payload.startswith(b".")
    client = await RawClient.open(world.port)
    try:
        assert await client.command("EHLO attacker.example") == 250
        assert await client.command(f"MAIL FROM:<{AGENCY}>") == 250
        assert await client.command(f"RCPT TO:<buurt-noord@{DOMAIN}>") == 250
        assert await client.command("DATA") == 354
        client.writer.write(payload + b".\r\nQUIT\r\n")
        codes = await client.replies_until_closed()
    finally:
        await client.close()
    # Exactly one answer to the data (250) and one to QUIT: no MAIL/RCPT/DATA replies.
    assert codes == [250, 221], codes
    rows = await world.store.read("SELECT raw FROM inbound")
    assert len(rows) == 1
    assert f"MAIL FROM:<{AGENCY}>".encode() in bytes(rows[0]["raw"])  # stayed body text
    await world.settle()
    held = await world.store.submissions()
    assert [(h.list_id, h.subject) for h in held] == [("buurt-noord", "Buitenste bericht")]
