"""Hostile input, part 1: CPython's own e-mail test corpus against every route.

Every ``msg_*.txt`` of ``test/test_email/data`` goes through DATA to each address the
gateway answers (intake, list, moderation token, reply token, join, leave, bounce token,
unknown), twice: as it is (its own From), and rewritten as that route's legitimate sender
(From replaced, DKIM-signed where the route authenticates), so it gets past the checks
into processing. Each transaction must end in 250 or a 5xx: never a 4xx (our answer to an
internal error), never a dropped or hung connection. Meanwhile a client in another thread
keeps a session busy with NOOPs and normal transactions, which must all succeed; after
the run no worker has died, nothing accepted failed in processing, and a normal bulletin
still goes from the agency through moderation to the members.

The same corpus goes through the parsers used at intake and processing and the
anonymiser, which must raise nothing and give parseable output.
"""

from __future__ import annotations

import time
from collections import Counter
from email import message_from_bytes
from email import policy as email_policy
from email.parser import BytesParser

import pytest

from bin_gateway.anonymise import Identity, Policy, anonymise
from bin_gateway.auth.authenticate import read_authentication_results
from bin_gateway.auth.author import parse_author
from bin_gateway.bounces import classify
from bin_gateway.decision import read_decision
from bin_gateway.holding import attachment_names, parse, subject_of
from bin_gateway.mailtext import best_text
from bin_gateway.membership import own_words
from tests.support.hostile import (
    MEMBER,
    ProbeClient,
    approve,
    as_sender,
    corpus,
    corpus_dir,
    moderation_for,
    prepare_routes,
    render_bulletin,
)
from tests.support.world import AGENCY, DOMAIN, World

CORPUS = corpus()
_FOLDER, _MISSING = corpus_dir()
needs_corpus = pytest.mark.skipif(not CORPUS, reason=f"CPython e-mail corpus: {_MISSING}")

IDENTITY = Identity(addresses=(MEMBER,), names=("Lid Nul",))


def assert_parseable(data: bytes) -> None:
    """Our output reads back without defects: every leaf's content decodes."""
    message = message_from_bytes(data, policy=email_policy.default)
    assert not message.defects, message.defects
    for part in message.walk():
        if part.get_content_maintype() not in ("multipart", "message"):
            part.get_content()


def run_parsers(raw: bytes) -> None:
    """Every parser a message meets from DATA to the outbox; outputs must parse again."""
    headers = BytesParser(policy=email_policy.default).parsebytes(raw, headersonly=True)
    parse_author(raw, headers)
    read_authentication_results(raw, "politie.example", ["mx.bin.example.nl"])
    message = parse(raw)
    subject_of(message)
    attachment_names(message)
    best_text(message)
    read_decision(message)
    own_words(raw)
    classify(raw, MEMBER)
    entity, _report = anonymise(raw, IDENTITY, Policy())
    assert_parseable(b"From: x@y.example\r\n" + entity)
    assert_parseable(render_bulletin(raw))


@needs_corpus
@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus_message_goes_through_every_parser(name: str, raw: bytes) -> None:
    """Each corpus message, LF or CRLF, passes every intake parser, the anonymiser and the
    bulletin renderer without an exception, in bounded time, with parseable output."""
    for variant in (raw, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")):
        started = time.monotonic()
        run_parsers(variant)
        assert time.monotonic() - started < 10, name


def test_corpus_is_present_or_the_skip_says_why() -> None:
    """Where the corpus is missing the reason is printed, so a skip is never silent."""
    if not CORPUS:
        print(f"hostile corpus tests skipped: {_MISSING}")
        pytest.skip(_MISSING)
    assert len(CORPUS) >= 40, _FOLDER  # CPython 3.11 ships 48


@needs_corpus
async def test_corpus_through_every_route_gets_250_or_5xx(world: World) -> None:
    """All corpus messages to all routes, as-is and as the legitimate sender: 250 or 5xx
    only; a concurrent client is never refused or stalled; nothing fails in processing;
    a normal bulletin still reaches the members afterwards."""
    routes = await prepare_routes(world)
    probe_message = world.agency_mail(subject="Proef").replace(
        b"<melding-1@", b"<proef-{n}@")
    probe = ProbeClient(world.port, f"agency@{DOMAIN}", probe_message, AGENCY).start()
    answers: Counter[tuple[str, str, int]] = Counter()
    signed = 0
    started = time.monotonic()
    try:
        for route in routes:
            for index, (name, raw) in enumerate(CORPUS):
                legit, was_signed = as_sender(world, route, raw, f"corpus-{index}-{route.name}@t")
                signed += was_signed
                for variant, data in (("as-is", raw), ("sender", legit)):
                    sent = await world.send(data, route.address, mail_from=route.mail_from)
                    reply = sent.data if sent.data is not None else sent.rcpt[0]
                    answers[(route.name, variant, reply.code)] += 1
                    assert reply.code == 250 or 500 <= reply.code < 600, (name, route, reply)
                    if route.name == "unknown":
                        assert sent.data is None and reply.code == 550, (name, reply)
    finally:
        await probe.stop()
    report(answers, signed, probe, time.monotonic() - started)
    assert probe.errors == [], probe.errors
    assert probe.transactions >= 2 and probe.noops >= 10

    await world.settle(timeout=120)
    assert world.gateway.failed_task() is None
    failed = await world.store.read("SELECT id, route, error FROM inbound WHERE state = 'failed'")
    assert [tuple(r) for r in failed] == []
    # Deep enough: corpus mail was accepted and processed on the authenticated routes too.
    for route_name in ("intake", "list", "moderation", "reply", "join", "bounce"):
        assert answers[(route_name, "sender", 250)] > 0, route_name

    # And the gateway still does its job, start to finish.
    normal = world.agency_mail(subject="Na de storm").replace(b"<melding-1@", b"<na-storm@")
    assert (await world.send(normal, f"buurt-noord@{DOMAIN}")).accepted
    await world.settle(timeout=60)
    await approve(world, await moderation_for(world, "Na de storm"))
    await world.settle(timeout=60)
    copies = [r for r in world.sink.messages
              if MEMBER in r.rcpt_tos and b"Na de storm" in r.data]
    assert copies, "the normal bulletin did not reach the member"
    assert world.gateway.failed_task() is None


def report(
    answers: Counter[tuple[str, str, int]], signed: int, probe: ProbeClient, seconds: float
) -> None:
    """The figures for the README's reliability table (shown with pytest -s)."""
    lines = [f"corpus: {len(CORPUS)} messages, {sum(answers.values())} transactions in "
             f"{seconds:.1f} s, {signed} signed as the route's sender"]
    for (route, variant, code), count in sorted(answers.items()):
        lines.append(f"  {route:<10} {variant:<6} {code}: {count}")
    lines.append(f"probe: {probe.noops} NOOPs, {probe.transactions} transactions, "
                 f"slowest answer {probe.slowest * 1000:.0f} ms")
    print("\n".join(lines))
