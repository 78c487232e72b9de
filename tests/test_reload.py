"""SIGHUP reloads the config: a good file takes effect for new work, a bad one is refused
with its problems logged and the old config kept; settings fixed at start are named as
needing a restart. The real daemon (``bin_gateway serve``, under the unit's
MemoryDenyWriteExecute policy) with a NOTIFY_SOCKET, and the in-process World for a
setting observed end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import aiosmtplib
from structlog.testing import capture_logs

from bin_gateway.app import reload_config
from bin_gateway.config import TlsSettings, load_config, plan_reload
from bin_gateway.keys import dkim_txt_record
from tests.support.dkim_keys import plain_message, publish, rsa_key, sign
from tests.support.dns_server import DnsServer
from tests.support.notify import receive_notifications
from tests.support.sink import Sink
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    COORDINATOR,
    DOMAIN,
    GATEWAY_SELECTOR,
    SELECTOR,
    MakeWorld,
    gateway_key,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
WEST = f"buurt-west@{DOMAIN}"
WEST_COORDINATOR = "coordinator.west@example.nl"
# The daemon as the unit runs it: MemoryDenyWriteExecute's policy, set with the kernel's
# PR_SET_MDWE (Linux 6.3+; what systemd itself uses where it can), so a dependency that
# needs writable code pages would fail here; on an older kernel it runs without.
UNDER_MDWE = """
import ctypes, os, sys, runpy
ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0)  # PR_SET_MDWE, REFUSE_EXEC_GAIN
sys.argv = ["bin-gateway", *sys.argv[1:]]
runpy.run_module("bin_gateway", run_name="__main__")
"""
NEW_LIST = f"""
[[lists]]
id = "buurt-west"
name = "BIN West"
coordinators = ["{WEST_COORDINATOR}"]
"""


async def _send(port: int, data: bytes, rcpt: str) -> tuple[int, int | None]:
    """One transaction: (RCPT code, DATA code or None when RCPT was refused)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30,
                             local_hostname="client.example")
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(AGENCY)
        try:
            await client.rcpt(rcpt)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return exc.code, None
        try:
            return 250, (await client.data(data)).code
        except aiosmtplib.SMTPDataError as exc:
            return 250, exc.code
    finally:
        await client.quit()


def _events(log_path: Path, event: str) -> list[dict[str, object]]:
    lines = log_path.read_text("utf-8").splitlines()
    found = [json.loads(line) for line in lines if line.startswith("{")]
    return [entry for entry in found if entry.get("event") == event or not event]


async def _wait_for_event(log_path: Path, event: str, count: int = 1) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(found := _events(log_path, event)) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} in {_events(log_path, '')}")


async def test_sighup_reloads_a_good_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    """The daemon: a new list is accepted after SIGHUP (RELOADING=1, READY=1 on the notify
    socket); a broken file is refused with its problems logged, and the old config keeps
    taking mail; a changed listen address is reported as needing a restart."""
    dns, sink = DnsServer().start(), await Sink.start()
    agency_key = rsa_key(1024)
    publish(dns.zone, AGENCY_DOMAIN, SELECTOR, agency_key)
    for domain in (AGENCY_DOMAIN, DOMAIN):
        dns.zone.add_txt(domain, "v=spf1 -all")
        dns.zone.add_txt(f"_dmarc.{domain}", "v=DMARC1; p=reject")
    pem = gateway_key("ed25519")
    dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
    config = write_config(tmp_path, dns_port=dns.port, sink_port=sink.port, key_pem=pem)
    good = config.read_text("utf-8")
    mail = sign(plain_message(f"Wijkagent <{AGENCY}>", subject="Inbraken in West"),
                agency_key, domain=AGENCY_DOMAIN, selector=SELECTOR)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    env = os.environ | {"PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    env.pop("WATCHDOG_USEC", None)
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", UNDER_MDWE, "serve", "--config", str(config),
            env=env, stdout=log_file, stderr=log_file)
    try:
        ready = await asyncio.to_thread(receive_notifications, sock, "READY=1", 30)
        match = re.search(r"listening on (\d+)", ready[-1])
        assert match, ready
        port = int(match.group(1))
        assert await _send(port, mail, WEST) == (550, None)

        config.write_text(good + NEW_LIST, "utf-8")
        process.send_signal(signal.SIGHUP)
        told = await asyncio.to_thread(receive_notifications, sock, "READY=1", 30)
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", told[0]), told
        assert told[-1].startswith("READY=1"), told
        reloaded = await _wait_for_event(log_path, "config.reloaded")
        assert reloaded[0]["lists_added"] == ["buurt-west"], reloaded
        assert await _send(port, mail, WEST) == (250, 250)
        # End to end: the new list's coordinator gets the moderation mail.
        received = await sink.wait_for(1, 30)
        assert any(WEST_COORDINATOR in r.rcpt_tos for r in received), received

        config.write_text(good + NEW_LIST + "[[lists]\nid = 'kapot'\n", "utf-8")
        process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(receive_notifications, sock, "READY=1", 30)
        refused = await _wait_for_event(log_path, "config.reload_refused")
        problems = refused[0]["problems"]
        assert isinstance(problems, list) and "TOML syntax error" in problems[0], refused
        config.write_text((good + NEW_LIST).replace('name = "BIN West"', "name = 12"), "utf-8")
        process.send_signal(signal.SIGHUP)
        refused = await _wait_for_event(log_path, "config.reload_refused", 2)
        assert "lists[2].name" in str(refused[1]["problems"]), refused
        assert process.returncode is None
        assert await _send(port, mail, WEST) == (250, 250)  # the last good config stays

        config.write_text(good.replace("127.0.0.1:0", "127.0.0.1:1") + NEW_LIST, "utf-8")
        process.send_signal(signal.SIGHUP)
        restart = await _wait_for_event(log_path, "config.needs_restart")
        assert restart[0]["settings"] == ["gateway.listen"], restart
        assert await _send(port, mail, WEST) == (250, 250)  # still on the old port

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        sock.close()
        await sink.stop()
        dns.stop()


async def test_reload_changes_a_list_setting_end_to_end(make_world: MakeWorld) -> None:
    """A reloaded subject_prefix is on the next bulletin's copies; the one before kept
    the old prefix."""
    world = await make_world()
    members = await world.add_members("buurt-noord", 2)
    post = world.coordinator_mail("Eerste bericht\r\n", to=f"buurt-noord@{DOMAIN}",
                                  subject="Voor")
    assert (await world.send(post, f"buurt-noord@{DOMAIN}", mail_from=COORDINATOR)).accepted
    before = await world.wait_for_mail_to(members[0])
    assert str(before[0]["Subject"]) == "[BIN Noord] Voor"

    path = world.config.source
    path.write_text(path.read_text("utf-8").replace(
        'name = "BIN Noord"', 'name = "BIN Noord"\nsubject_prefix = "[Noord-Nieuws]"'), "utf-8")
    with capture_logs() as logs:
        assert await reload_config(world.gateway, path)
    reloaded = [e for e in logs if e["event"] == "config.reloaded"]
    assert reloaded and reloaded[0]["lists_changed"] == ["buurt-noord (subject_prefix)"]

    post = world.coordinator_mail("Tweede bericht\r\n", to=f"buurt-noord@{DOMAIN}",
                                  subject="Na")
    assert (await world.send(post, f"buurt-noord@{DOMAIN}", mail_from=COORDINATOR)).accepted
    after = await world.wait_for_mail_to(members[0], 2)
    assert sorted(str(m["Subject"]) for m in after) == ["[BIN Noord] Voor", "[Noord-Nieuws] Na"]


async def test_a_refused_reload_keeps_the_config_in_force(make_world: MakeWorld) -> None:
    """An invalid value: every problem logged, the config in force is the same object,
    and mail to the lists is still taken."""
    world = await make_world()
    path = world.config.source
    in_force = world.gateway.current.config
    path.write_text(path.read_text("utf-8").replace('require = "aligned"', 'require = "maybe"')
                    .replace('retry_after = "200ms"', 'retry_after = "soon"'), "utf-8")
    with capture_logs() as logs:
        assert not await reload_config(world.gateway, path)
    refused = [e for e in logs if e["event"] == "config.reload_refused"]
    assert len(refused) == 1 and len(refused[0]["problems"]) == 2, refused
    assert "inbound.require" in refused[0]["problems"][0]
    assert world.gateway.current.config is in_force
    assert (await world.send(world.agency_mail(), f"agency@{DOMAIN}")).accepted


def test_plan_reload_keeps_restart_only_settings(tmp_path: Path) -> None:
    """Restart-only settings keep their old value in the config put in force and are named;
    the others take the new value."""
    old = load_config(write_config(tmp_path, dns_port=53, sink_port=2525,
                                   key_pem=gateway_key("ed25519")))
    new = load_config(write_config(tmp_path, dns_port=5353, sink_port=2626, remind_after="1h",
                                   key_pem=gateway_key("ed25519"), max_size="2 MB"))
    plan = plan_reload(old, new)
    assert plan.needs_restart == ("inbound.nameservers", "delivery.smarthost")
    assert plan.config.inbound.nameservers == old.inbound.nameservers
    assert plan.config.delivery.smarthost == old.delivery.smarthost
    assert plan.config.moderation == new.moderation
    size = plan.config.gateway.max_message_size
    assert size == new.gateway.max_message_size != old.gateway.max_message_size
    assert plan.changes == {"settings": ["gateway.max_message_size", "moderation.remind_after"]}
    assert plan_reload(old, old).changes == {}


def test_plan_reload_applies_new_tls_paths_but_not_adding_or_removing_tls(
    tmp_path: Path,
) -> None:
    """New certificate and key paths go in force (the reload reads them); adding or
    removing [tls] is named as needing a restart and the section stays as it was."""
    plain = load_config(write_config(tmp_path, dns_port=53, sink_port=2525,
                                     key_pem=gateway_key("ed25519")))
    first = dataclasses.replace(plain, tls=TlsSettings(tmp_path / "a.pem", tmp_path / "a.key"))
    moved = dataclasses.replace(plain, tls=TlsSettings(tmp_path / "b.pem", tmp_path / "b.key"))
    plan = plan_reload(first, moved)
    assert plan.needs_restart == ()
    assert plan.changes == {"settings": ["tls.certificate", "tls.private_key"]}
    assert plan.config.tls == moved.tls
    removed = plan_reload(first, plain)
    assert removed.needs_restart == ("tls",) and removed.config.tls == first.tls
    added = plan_reload(plain, first)
    assert added.needs_restart == ("tls",) and added.config.tls is None
