"""Hostile input, part 2: generated MIME trees, extreme structures, and what they cost.

A hypothesis strategy (tests/support/hostile_mime.py) writes messages with broken
encoded words, odd folding, NUL and 8-bit bytes, over-long lines, bogus boundaries and
charsets that do not exist. Whatever it writes, the parsers used at intake and in
processing raise nothing, the anonymiser never needs its whole-message fallback (its net
for internal exceptions), and what the gateway writes (a relayed reply, a bulletin copy) is
7-bit, CRLF, lines of at most 998 octets, and parses again.

Extremes are explicit: 10,000 parts, 100 and 1,000 nesting levels. At the gateway a
message with more structure than ``mime_limits`` allows is refused at DATA; a heavy but
allowed one (4.5 MB of HTML) is processed without stalling other SMTP clients.
"""

from __future__ import annotations

import threading
import time
from email import message_from_bytes
from email import policy as email_policy
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings

from bin_gateway.anonymise import Identity, Policy, anonymise
from bin_gateway.auth.author import parse_author
from bin_gateway.bounces import classify
from bin_gateway.decision import read_decision
from bin_gateway.holding import parse, summarise
from bin_gateway.membership import own_words
from bin_gateway.mime_limits import MAX_CONTAINERS, MAX_PARTS, structure_refusal
from tests.support.hostile import (
    MEMBER,
    ProbeClient,
    Route,
    as_sender,
    prepare_routes,
    render_bulletin,
)
from tests.support.hostile_mime import hostile_messages
from tests.support.world import DOMAIN, MakeWorld, World

IDENTITY = Identity(addresses=(MEMBER,), names=("Lid Nul",))
# The anonymiser's whole-message fallback, its net for an internal exception.
FALLBACK = "Dit bericht kon niet worden gelezen"
HEAD = b"From: Lid Nul <lid0@bewoners.example>\r\nSubject: test\r\nMIME-Version: 1.0\r\n"


def many_parts(count: int) -> bytes:
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\ndeel %d\r\n" % i for i in range(count)
    ) + b"--b--\r\n"


def nested_multiparts(depth: int) -> bytes:
    return HEAD + b"".join(
        b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
        for i in range(depth)
    ) + b"Content-Type: text/plain\r\n\r\nbinnenste\r\n" + b"".join(
        b"--n%d--\r\n" % i for i in reversed(range(depth))
    )


def nested_messages(depth: int) -> bytes:
    return HEAD + b"Content-Type: message/rfc822\r\n\r\nSubject: binnen\r\n" * depth + (
        b"Content-Type: text/plain\r\n\r\nbinnenste\r\n"
    )


def assert_wire_safe(data: bytes) -> None:
    """7-bit, CRLF only, no line over 998 octets, parses back without defects, and every
    leaf's transfer encoding decodes (its charset and type are the original's business:
    an attachment keeps its declared charset, existing or not)."""
    assert all(b < 0x80 for b in data)
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    message = message_from_bytes(data, policy=email_policy.default)
    assert not message.defects, message.defects
    for part in message.walk():
        if not part.is_multipart():
            # (Defects inside an attached message/rfc822 are the original's, kept as is.)
            assert isinstance(part.get_payload(decode=True), bytes)


def text_of(entity: bytes) -> str:
    message = message_from_bytes(b"From: x@y.example\r\n" + entity, policy=email_policy.default)
    texts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    return "".join(str(p.get_content()) for p in texts)


def intake_parsers(raw: bytes) -> None:
    """What reads a message at DATA and in processing, on every route."""
    structure_refusal(raw)
    headers = BytesParser(policy=email_policy.default).parsebytes(raw, headersonly=True)
    parse_author(raw, headers)
    summarise(raw)
    own_words(raw)
    classify(raw, MEMBER)


# -- generated ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_messages())
def test_hostile_mime_never_raises_and_output_is_wire_safe(raw: bytes) -> None:
    """Any generated message: no parser raises, the anonymiser needs no fallback, and the
    relayed entity and the bulletin copy are 7-bit CRLF lines of <= 998 octets that parse."""
    started = time.monotonic()
    intake_parsers(raw)
    read_decision(parse(raw))
    entity, _report = anonymise(raw, IDENTITY, Policy())
    assert FALLBACK not in text_of(entity)
    assert_wire_safe(b"From: x@y.example\r\n" + entity)
    assert_wire_safe(render_bulletin(raw))
    assert time.monotonic() - started < 10


# -- explicit extremes ------------------------------------------------------------------


def test_ten_thousand_parts_through_intake_parsers_and_anonymiser() -> None:
    """10,000 parts: refused at DATA by the structure limit, and even so the parsers and
    the anonymiser get through it in bounded time, with wire-safe output."""
    raw = many_parts(10_000)
    assert "MIME delimiter lines" in structure_refusal(raw)
    started = time.monotonic()
    intake_parsers(raw)
    entity, _report = anonymise(raw, IDENTITY, Policy())
    assert_wire_safe(b"From: x@y.example\r\n" + entity)
    assert time.monotonic() - started < 120  # ~10 s on one core


@pytest.mark.parametrize("make", [nested_multiparts, nested_messages])
def test_hundred_levels_deep_is_handled(make: object) -> None:
    """100 nesting levels are within the limits: every parser gets through them (text
    deeper than 20 levels is left out on purpose, by mailtext and reply_parts)."""
    raw = make(100)  # type: ignore[operator]
    assert structure_refusal(raw) == ""
    intake_parsers(raw)
    entity, _report = anonymise(raw, IDENTITY, Policy())
    assert FALLBACK not in text_of(entity)
    assert_wire_safe(b"From: x@y.example\r\n" + entity)
    assert_wire_safe(render_bulletin(raw))
    assert summarise(raw).subject == "test"


@pytest.mark.parametrize("make", [nested_multiparts, nested_messages])
def test_thousand_levels_deep_is_refused_before_python_recurses(make: object) -> None:
    """1,000 levels make Python's parser raise RecursionError in processing: the structure
    limit refuses them at DATA, and the anonymiser still answers (its net holds)."""
    raw = make(1_000)  # type: ignore[operator]
    with pytest.raises(RecursionError):
        parse(raw)
    assert "containers" in structure_refusal(raw)
    anonymise(raw, IDENTITY, Policy())


# -- the structure limit ------------------------------------------------------------------


def test_structure_limit_counts_parts_and_containers() -> None:
    """The limits sit where the constants say; each nesting level counts as a container."""
    assert structure_refusal(many_parts(MAX_PARTS - 1)) == ""
    assert structure_refusal(many_parts(MAX_PARTS + 1)) != ""
    assert structure_refusal(nested_multiparts(MAX_CONTAINERS)) == ""
    assert structure_refusal(nested_multiparts(MAX_CONTAINERS + 1)) != ""
    assert structure_refusal(nested_messages(MAX_CONTAINERS + 1)) != ""


@pytest.mark.parametrize(
    ("name", "line_end", "content_type"),
    [
        ("bare CR lines", b"\r", b"Content-Type: message/rfc822"),
        ("bare LF lines", b"\n", b"Content-Type: message/rfc822"),
        ("folded value", b"\r\n", b"Content-Type:\r\n message/rfc822"),
        ("comment first", b"\r\n", b"content-type: (x) Message/RFC822"),
        ("space before colon", b"\r\n", b"Content-Type : message/rfc822"),
    ],
)
def test_structure_limit_sees_what_python_sees(
    name: str, line_end: bytes, content_type: bytes
) -> None:
    """Nesting hidden behind bare CRs, folds, comments or case still counts: each variant
    nests deep enough to break Python's parser, and each is refused."""
    raw = (HEAD + (content_type + b"\r\n\r\nSubject: x\r\n") * 1_000 + b"\r\ntekst\r\n")
    raw = raw.replace(b"\r\n", line_end)
    assert structure_refusal(raw) != "", name


def test_structure_scan_is_linear_on_pathological_lines() -> None:
    """A line of "content-type:" a million times, or 15 MB of nothing: well under a second
    or two even on a loaded machine (the scan runs on the event loop)."""
    for raw in (b"content-type:" * 1_100_000, b"x" * 15_000_000, b"\n--" * 5_000_000):
        started = time.monotonic()
        structure_refusal(raw)
        assert time.monotonic() - started < 3


# -- regressions found by the strategy ----------------------------------------------------


@pytest.mark.parametrize(
    "part_headers",
    [
        b"Content-Type: " + b"x" * 1_100 + b" multipart/mixed",  # junk Python calls a type
        b"Content-Type: application/pdf\r\nContent-Disposition: " + b"x" * 1_100,
        b"Content-Type: image/png; " + b"y" * 1_100 + b"=1",  # parameter name
        b"Content-Type: image/png\r\nContent-ID: <" + b"z" * 1_100 + b"@x>",
        b"Content-Type: application/pdf; " + b"; ".join(b"p%d=v" % i for i in range(3_000)),
    ],
    ids=["content-type", "disposition", "parameter-name", "content-id", "3000-parameters"],
)
def test_bulletin_never_copies_an_unfoldable_header_line(part_headers: bytes) -> None:
    """An attachment's junk Content-* metadata no longer reaches the copy as a line over
    998 octets (a smarthost would split it and break the copy's DKIM signature), nor
    hangs the renderer (CPython's header folder looped forever on a 1,100-letter
    parameter name, and took minutes over thousands of parameters); the attachment's
    bytes still go out."""
    raw = HEAD + (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nDe tekst.\r\n--b\r\n"
        + part_headers
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\naGFsbG8gd2VyZWxk\r\n--b--\r\n"
    )
    # A regression would spin forever: fail after a minute instead of hanging the run
    # (a daemon thread left spinning does not keep the test process alive).
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(render_bulletin(raw)), daemon=True)
    worker.start()
    worker.join(60)
    assert result, "rendering did not finish within a minute"
    copy = result[0]
    assert_wire_safe(copy)
    parts = [p for p in message_from_bytes(copy, policy=email_policy.default).walk()
             if p.get_content_maintype() != "multipart"]
    assert any(p.get_payload(decode=True) == b"hallo wereld" for p in parts)


# -- at the gateway -------------------------------------------------------------------------


async def test_ten_thousand_parts_are_refused_on_every_route(world: World) -> None:
    """10,000 parts to any address: 554 5.6.0 at DATA (550 at RCPT for an unknown one),
    nothing stored, and a client in another thread is served meanwhile."""
    routes = await prepare_routes(world)
    before = len(await world.store.read("SELECT id FROM inbound"))
    probe = ProbeClient(world.port, f"buurt-zuid+aanmelden@{DOMAIN}",
                        b"From: x@y.example\r\nMessage-ID: <{n}@y>\r\n\r\nhoi\r\n",
                        "x@y.example").start()
    try:
        for route in [*routes, Route("postmaster", f"postmaster@{DOMAIN}", "x@y.example",
                                     "x@y.example", "")]:
            data, _ = as_sender(world, route, many_parts(10_000), f"veel-{route.name}@t")
            sent = await world.send(data, route.address, mail_from=route.mail_from)
            if route.name == "unknown":
                assert sent.data is None and sent.rcpt[0].code == 550
                continue
            assert sent.data is not None, route
            assert (sent.data.code, sent.data.text[:5]) == (554, "5.6.0"), (route, sent)
    finally:
        await probe.stop()
    assert probe.errors == []
    stored = await world.store.read("SELECT id FROM inbound")
    assert len(stored) == before + probe.transactions
    print(f"10,000 parts: slowest probe answer {probe.slowest * 1000:.0f} ms")


async def test_hundred_levels_deep_agency_mail_is_held_normally(world: World) -> None:
    """A 100-level nested agency mail is taken (250), processed, and the coordinators get
    their moderation request; nothing fails."""
    routes = {r.name: r for r in await prepare_routes(world)}
    raw, signed = as_sender(world, routes["list"], nested_multiparts(100), "diep@t")
    assert signed
    sent = await world.send(raw, routes["list"].address, mail_from=routes["list"].mail_from)
    assert sent.accepted, sent
    await world.settle(timeout=60)
    failed = await world.store.read("SELECT id FROM inbound WHERE state = 'failed'")
    assert failed == []
    subjects = [str(h.subject) for h in await world.store.submissions()]
    assert "test" in subjects


@pytest.mark.parametrize("route_name", ["intake", "moderation", "join"])
async def test_heavy_html_is_processed_without_stalling_other_clients(
    make_world: MakeWorld, route_name: str
) -> None:
    """4.5 MB of HTML (seconds of CPU to turn into text) to the intake, a moderation
    token or the join address of an approval list: processed off the event loop, so a
    client in another thread is answered promptly all along (before: stalls of 4-5 s)."""
    world = await make_world(max_size="6 MB", noord_extra='subscription = "approval"')
    route = next(r for r in await prepare_routes(world) if r.name == route_name)
    html = HEAD + b"Content-Type: text/html\r\n\r\n<p>" + (
        b"<b>x</b> " * 50 + b"\r\n") * 10_000 + b"</p>\r\n"
    raw, _ = as_sender(world, route, html, f"html-{route_name}@t")
    await world.settle(timeout=60)
    probe = ProbeClient(world.port, f"buurt-zuid+aanmelden@{DOMAIN}",
                        b"From: x@y.example\r\nMessage-ID: <{n}@y>\r\n\r\nhoi\r\n",
                        "x@y.example", interval=0.02).start()
    try:
        sent = await world.send(raw, route.address, mail_from=route.mail_from)
        assert sent.accepted, sent
        await world.settle(timeout=120)
    finally:
        await probe.stop()
    assert probe.errors == []
    failed = await world.store.read("SELECT id FROM inbound WHERE state = 'failed'")
    assert failed == []
    print(f"{route_name}: 4.5 MB HTML, slowest probe answer {probe.slowest * 1000:.0f} ms")
    assert probe.slowest < 2.5, probe.slowest
