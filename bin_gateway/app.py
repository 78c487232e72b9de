"""Build the gateway from its config; start, reload, drain, stop.

The SMTP listeners and the three workers (processor, scheduler, outbox) share one
event loop. SIGTERM and SIGINT stop intake first, let in-flight SMTP transactions and
deliveries finish (bounded by ``DRAIN_SECONDS``), then close the store.

SIGHUP reloads the config file: it is read and validated off the event loop; a file
with problems is refused (each problem logged, ``config.reload_refused``) and the config
in force stays; a good one is put in force for new work (``config.reloaded`` names what
changed). Settings built into the running parts (listen addresses, data_dir, DKIM,
resolver, delivery transport, adding or removing [tls], the HTTP listener:
``config.changes.RESTART_ONLY``) keep their old values and are logged as
``config.needs_restart``; the rest applies. Then, good file or not, the STARTTLS
certificate and key are read again from the paths in force (``server_tls``: a renewed
certificate needs no restart). systemd hears ``RELOADING=1`` then ``READY=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import structlog

from .auth.dns import make_resolver
from .config import Config, CurrentConfig, DeliveryMode, Reload, load_config, plan_reload
from .errors import ConfigError
from .http_app import HttpSide
from .metrics import Metrics
from .notices import NoticeWriter
from .outbox import Outbox
from .processor import Processor
from .reply_pool import ReplyPool, default_workers
from .router import Router
from .scheduler import Scheduler
from .sd_notify import notify, reloading, watchdog_interval
from .server_tls import ServerTls
from .services import Services, open_services
from .smarthost import SmarthostPool
from .smtp_server import GatewayHandler, make_smtp_factory
from .stages import SessionStages
from .transport import Transport

EXIT_AT_ONCE = 130  # as a shell reports an interrupted program

log = structlog.get_logger("bin_gateway.app")

DRAIN_SECONDS = 25.0
# Connections the kernel queues before we accept them. Python's default of 100 made a
# burst of 1,000 connects wait over 10 s for a greeting (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 1024


def make_transport(config: Config) -> Transport:
    delivery = config.delivery
    if delivery.mode is DeliveryMode.MAILDIR:
        from .maildir import MaildirTransport

        return MaildirTransport(delivery.maildir)
    password = ""
    if delivery.password_file is not None:
        password = delivery.password_file.read_text("utf-8").strip()
    return SmarthostPool(
        delivery.smarthost.host, delivery.smarthost.port,
        connections=delivery.connections, starttls=delivery.starttls,
        username=delivery.username, password=password,
        helo_name=config.gateway.hostname, timeout=delivery.timeout,
    )


class Gateway:
    """A running gateway: listeners bound, workers started."""

    def __init__(self, services: Services, transport: Transport) -> None:
        config = services.config
        # The config in force, read by every part at each use; reload() replaces it.
        self.current = CurrentConfig(config)
        current = self.current
        self.services = services
        self.transport = transport
        writer = NoticeWriter(domain=config.gateway.domain, signer=services.signer)
        self.outbox = Outbox(current, services.store, services.signer, transport, services.links)
        self.reply_pool = ReplyPool(config, writer, default_workers())
        self.processor = Processor(
            current, services.store, writer, self.outbox.wake, self.reply_pool, services.links
        )
        self.scheduler = Scheduler(
            current, services.store, self.processor.holding, self.outbox.wake
        )
        resolver = make_resolver(
            [(ns.host, ns.port) for ns in config.inbound.nameservers],
            timeout=config.inbound.dns_timeout,
        )
        self.metrics = Metrics()
        self.handler = GatewayHandler(
            current, services.store, Router(current, services.store),
            SessionStages(current, services.store, resolver), self.processor.wake,
            self.metrics,
        )
        self.http: HttpSide | None = None
        if config.http is not None:
            self.http = HttpSide(current, services.store, services.links,
                                 self.processor.membership, self.metrics, self.outbox.wake)
        self.tls = ServerTls(config.tls) if config.tls is not None else None
        self.servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    @classmethod
    async def start(cls, config: Config) -> Gateway:
        services = await open_services(config)
        gateway = cls(services, make_transport(config))
        await gateway._listen()
        if gateway.http is not None:
            await gateway.http.start()
        for name, work in (("processor", gateway.processor.run),
                           ("scheduler", gateway.scheduler.run),
                           ("outbox", gateway.outbox.run)):
            gateway._tasks.append(asyncio.create_task(work(), name=name))
        log.info("gateway.started", listen=[str(hp) for hp in config.gateway.listen],
                 ports=gateway.ports, delivery=config.delivery.mode.value)
        return gateway

    async def _listen(self) -> None:
        config = self.current.config
        factory = make_smtp_factory(self.current, self.handler, self.tls)
        loop = asyncio.get_running_loop()
        for hp in config.gateway.listen:
            self.servers.append(await loop.create_server(
                factory, hp.host, hp.port, backlog=LISTEN_BACKLOG))

    async def stop(self) -> None:
        """Stop intake, let in-flight work finish (bounded), close everything."""
        for server in self.servers:
            server.close()
        if self.http is not None:
            await self.http.stop()
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await self.handler.drained()
        except TimeoutError:
            log.warning("gateway.drain_timed_out", in_flight=self.handler.in_flight)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.reply_pool.close)
        await self.transport.close()
        await self.services.close()
        log.info("gateway.stopped")

    def reload(self, new: Config) -> Reload:
        """Put ``new`` in force for new work (restart-only settings keep their values)."""
        plan = plan_reload(self.current.config, new)
        self.current.config = plan.config
        return plan

    async def reload_tls(self) -> bool | None:
        """Read the certificate and key again (renewed files, or new paths in force);
        None without [tls], False when refused (the certificate in use stays)."""
        settings = self.current.config.tls  # a removed [tls] stays in force until a restart
        if self.tls is None or settings is None:
            return None
        return await self.tls.reload(settings)

    def failed_task(self) -> asyncio.Task[None] | None:
        return next((t for t in self._tasks if t.done() and not t.cancelled()), None)


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, reloading on SIGHUP; a dead worker stops the process
    (systemd restarts it)."""
    for warning in config.warnings():
        log.warning("config.warning", warning=warning)
    gateway = await Gateway.start(config)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            # A second SIGTERM: the admin will not wait. Leaving now loses nothing that
            # was answered 250 (committed first); unsent copies go out after a restart.
            log.warning("gateway.stopped_at_once")
            os._exit(EXIT_AT_ONCE)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    # Only flagged here: the reload runs in the loop below, one at a time (a SIGHUP during
    # a reload makes one more after it).
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    status = f"STATUS=listening on {', '.join(map(str, gateway.ports))}"
    notify(f"READY=1\n{status}")
    # The pings come from this loop: if the event loop hangs, they stop, and systemd acts.
    ping = watchdog_interval()
    tick = min(1.0, ping) if ping else 1.0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await _either(stop, reload)
            if reload.is_set() and not stop.is_set():
                reload.clear()
                notify(reloading())
                await reload_config(gateway, gateway.current.config.source)
                await gateway.reload_tls()  # also when the file did not change: certbot
                notify(f"READY=1\n{status}")
            if ping:
                notify("WATCHDOG=1")
            failed = gateway.failed_task()
            if failed is not None:
                log.error("worker.failed", worker=failed.get_name(),
                          error=repr(failed.exception()))
                raise SystemExit(1)
    finally:
        notify("STOPPING=1")
        await gateway.stop()


async def _either(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def reload_config(gateway: Gateway, path: Path) -> bool:
    """Read ``path`` off the event loop and put it in force; False when it was refused.

    Whatever goes wrong here, the gateway keeps serving with the config it had.
    """
    try:
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        log.error("config.reload_refused", source=exc.source, problems=exc.problems,
                  kept="the config in force stays until a good file is reloaded")
        return False
    except Exception as exc:  # a bug must not take the running gateway down
        log.exception("config.reload_failed", source=str(path), error=repr(exc))
        return False
    plan = gateway.reload(new)
    log.info("config.reloaded", source=str(path), **plan.changes)
    if plan.needs_restart:
        log.warning("config.needs_restart", settings=list(plan.needs_restart),
                    note="these keep their old values until bin-gateway is restarted")
    for warning in await asyncio.to_thread(plan.config.warnings):  # reads the DKIM key
        log.warning("config.warning", warning=warning)
    return True
