"""A renewed STARTTLS certificate takes effect on SIGHUP, without a restart; a pair that
cannot be used is refused, logged, and the certificate in use stays. The real daemon on
loopback; the certificates are made here and told apart by serial number."""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest
from cryptography import x509

from bin_gateway.keys import dkim_txt_record
from tests.support.certificates import Pair, make_pair
from tests.support.daemon import DaemonProcess
from tests.support.dkim_keys import plain_message, sign
from tests.support.dns_server import DnsServer
from tests.support.sink import Sink
from tests.support.world import (
    AGENCY,
    AGENCY_DOMAIN,
    DOMAIN,
    GATEWAY_SELECTOR,
    SELECTOR,
    gateway_key,
    publish_test_domains,
    write_config,
)

HOSTNAME = f"mail.{DOMAIN}"
INTAKE = f"agency@{DOMAIN}"
TLS = '\n[tls]\ncertificate = "{certificate}"\nprivate_key = "{private_key}"\n'
CERTIFICATE, PRIVATE_KEY = "tls/fullchain.pem", "tls/privkey.pem"


def replace_file(path: Path, data: bytes) -> None:
    """As a deploy hook does: the new file appears whole under the old name."""
    path.parent.mkdir(exist_ok=True)
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    os.replace(staged, path)


@dataclass(slots=True)
class Run:
    tmp: Path
    daemon: DaemonProcess
    port: int
    mail: bytes  # signed agency mail the intake accepts
    base_config: str  # the config file without [tls]

    def install(self, pair: Pair, certificate: str = CERTIFICATE,
                private_key: str = PRIVATE_KEY) -> None:
        replace_file(self.tmp / certificate, pair.certificate)
        replace_file(self.tmp / private_key, pair.private_key)

    def write_config(self, tls: str) -> None:
        (self.tmp / "config.toml").write_text(self.base_config + tls, "utf-8")

    def sighup(self) -> None:
        os.kill(self.daemon.pid, signal.SIGHUP)

    async def connect(self) -> aiosmtplib.SMTP:
        """An SMTP session after EHLO, not yet in TLS."""
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=30,
                                 local_hostname="client.example", start_tls=False)
        await client.connect()
        await client.ehlo()
        return client

    async def starttls(self, client: aiosmtplib.SMTP) -> int:
        """STARTTLS on ``client``; the serial number of the certificate presented."""
        assert client.supports_extension("starttls")
        await client.starttls(tls_context=_any_certificate())
        tls: ssl.SSLObject = client.get_transport_info("ssl_object")
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    async def session_in_tls(self) -> tuple[aiosmtplib.SMTP, int]:
        client = await self.connect()
        return client, await self.starttls(client)

    async def send(self, client: aiosmtplib.SMTP) -> int:
        """One agency mail to the intake on ``client``: the code DATA got."""
        await client.mail(AGENCY)
        await client.rcpt(INTAKE)
        return (await client.data(self.mail)).code


def _any_certificate() -> ssl.SSLContext:
    # The test compares serial numbers itself; these certificates are self-signed.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    """The daemon with [tls] offering a first certificate, and the mail it takes."""
    dns, sink = DnsServer().start(), await Sink.start()
    agency_key, _ = publish_test_domains(dns.zone)
    pem = gateway_key("ed25519")
    dns.zone.add_txt(f"{GATEWAY_SELECTOR}._domainkey.{DOMAIN}", dkim_txt_record(pem))
    path = write_config(tmp_path, dns_port=dns.port, sink_port=sink.port, key_pem=pem)
    mail = sign(plain_message(f"Wijkagent <{AGENCY}>", subject="Inbraken"), agency_key,
                domain=AGENCY_DOMAIN, selector=SELECTOR)  # fmt: skip
    daemon = DaemonProcess(path, tmp_path / "gateway.log")
    try:
        yield Run(tmp_path, daemon, 0, mail, path.read_text("utf-8"))
    finally:
        await daemon.reap()
        await sink.stop()
        dns.stop()


async def start(run: Run, first: Pair) -> None:
    run.install(first)
    run.write_config(TLS.format(certificate=CERTIFICATE, private_key=PRIVATE_KEY))
    await run.daemon.start()
    run.port = await run.daemon.port()


async def test_a_renewed_certificate_is_offered_after_sighup(run: Run) -> None:
    """Files replaced, SIGHUP: a new STARTTLS presents the new certificate (tls.reloaded
    with its serial and notAfter), a session already in TLS keeps working, and one that
    connected before but asks for STARTTLS after gets the new one; new paths in the file
    apply on the next reload, with no needs_restart."""
    old, renewed, moved = make_pair(HOSTNAME), make_pair(HOSTNAME), make_pair(HOSTNAME)
    await start(run, old)
    before, serial = await run.session_in_tls()
    assert serial == old.serial
    waiting = await run.connect()  # EHLO done, STARTTLS after the reload

    run.install(renewed)
    run.sighup()
    (reloaded,) = await run.daemon.wait_for_event("tls.reloaded")
    assert reloaded["serial"] == f"{renewed.serial:x}" and reloaded["renewed"] is True
    assert reloaded["not_after"] == renewed.not_after.isoformat()
    assert reloaded["subject"] == f"CN={HOSTNAME}"
    after, serial = await run.session_in_tls()
    assert serial == renewed.serial
    assert await run.send(after) == 250
    assert await run.send(before) == 250  # the session opened before the reload
    assert await run.starttls(waiting) == renewed.serial
    assert await run.send(waiting) == 250

    run.install(moved, "tls/moved-chain.pem", "tls/moved-key.pem")
    run.write_config(TLS.format(certificate="tls/moved-chain.pem",
                                private_key="tls/moved-key.pem"))  # fmt: skip
    run.sighup()
    changed = (await run.daemon.wait_for_event("config.reloaded", 2))[1]
    assert changed["settings"] == ["tls.certificate", "tls.private_key"], changed
    reloaded = (await run.daemon.wait_for_event("tls.reloaded", 2))[1]
    assert reloaded["serial"] == f"{moved.serial:x}"
    assert reloaded["certificate"] == str(run.tmp / "tls/moved-chain.pem")
    assert run.daemon.events("config.needs_restart") == []
    client, serial = await run.session_in_tls()
    assert serial == moved.serial
    assert await run.send(client) == 250
    for session in (before, after, waiting, client):
        await session.quit()
    assert await run.daemon.terminate() < 30


async def test_an_unusable_certificate_is_refused_and_the_old_one_kept(run: Run) -> None:
    """A key of another certificate, then a missing key file: tls.reload_refused says what
    is wrong (and no key), the old certificate is still offered and mail still taken.
    Removing [tls] needs a restart; a good pair put back is read on that same reload."""
    old, renewed = make_pair(HOSTNAME), make_pair(HOSTNAME)
    await start(run, old)

    replace_file(run.tmp / CERTIFICATE, renewed.certificate)  # with the old key
    run.sighup()
    (refused,) = await run.daemon.wait_for_event("tls.reload_refused")
    problem = str(refused["problem"])
    assert "privkey.pem\" is not the key of the certificate in" in problem, refused
    assert refused["kept_serial"] == f"{old.serial:x}"
    client, serial = await run.session_in_tls()
    assert serial == old.serial
    assert await run.send(client) == 250

    (run.tmp / PRIVATE_KEY).unlink()
    run.sighup()
    refused = (await run.daemon.wait_for_event("tls.reload_refused", 2))[1]
    assert "privkey.pem\" cannot be read (No such file or directory)" in str(refused["problem"])
    # The config reader checks that the files are readable too: the file is refused.
    (config_refused,) = await run.daemon.wait_for_event("config.reload_refused")
    assert "tls.private_key" in str(config_refused["problems"]), config_refused
    assert await run.send(client) == 250  # the session in TLS goes on
    client2, serial = await run.session_in_tls()
    assert serial == old.serial
    assert await run.send(client2) == 250

    run.install(renewed)
    run.write_config("")  # no [tls]: STARTTLS stays on until a restart
    run.sighup()
    (restart,) = await run.daemon.wait_for_event("config.needs_restart")
    assert restart["settings"] == ["tls"], restart
    (reloaded,) = await run.daemon.wait_for_event("tls.reloaded")
    assert reloaded["serial"] == f"{renewed.serial:x}"
    client3, serial = await run.session_in_tls()
    assert serial == renewed.serial

    log = run.daemon.log_path.read_text("utf-8")
    for pair in (old, renewed):
        key_lines = pair.private_key.decode().splitlines()[1:-1]
        assert not any(line in log for line in key_lines)
    assert "PRIVATE KEY" not in log
    for session in (client, client2, client3):
        await session.quit()
    assert await run.daemon.terminate() < 30
