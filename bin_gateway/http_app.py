"""The small HTTP side (``[http]``): one-click unsubscribe, /healthz, /metrics.

* ``POST /u/<token>`` with ``List-Unsubscribe=One-Click`` is RFC 8058: the mail client
  unsubscribes without showing anything. ``GET /u/<token>`` (a person, or a client that
  opens links) shows a small Dutch page with one button that POSTs the same; a GET alone
  never unsubscribes, since link scanners open every link in a mail.
* ``/healthz``: 200 when the database answers and the smarthost accepts a connection,
  else 503, with the parts as JSON (for a load balancer or monitoring).
* ``/metrics``: Prometheus text, read from the store at scrape time plus the SMTP
  server's counters.

It is meant to sit behind the admin's web server (TLS there); it listens on loopback by
default and serves nothing else.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from .config import CurrentConfig, DeliveryMode, FollowsConfig
from .link_tokens import LinkClaim, LinkSigner
from .membership import Membership
from .metrics import Metrics
from .store import Store

log = structlog.get_logger("bin_gateway.http")

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;font-size:1.25rem;line-height:1.5;
max-width:32rem;margin:2rem auto;padding:0 1rem;color:#111}}
button{{font-size:1.25rem;padding:.8rem 1.6rem;border-radius:.4rem;border:0;
background:#0b5cad;color:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>
"""
_WORDS = {
    "nl": {
        "ask_title": "Afmelden", "ask": "Wilt u geen berichten van {list} meer ontvangen?",
        "button": "Ja, meld mij af",
        "done_title": "U bent afgemeld",
        "done": "U krijgt geen berichten van {list} meer. U ontvangt hierover nog één"
                " bevestiging per e-mail.",
        "gone_title": "Al afgemeld", "gone": "Dit adres staat niet (meer) op {list}.",
        "join_title": "Aanmelding bevestigen", "join_ask": "Wilt u lid worden?",
        "join_button": "Ja, ik wil lid worden",
        "joined_title": "Welkom", "joined": "U bent nu lid. U krijgt nog een welkomstmail.",
        "bad_title": "Deze link werkt niet",
        "bad": "De link is niet (meer) geldig. Afmelden kan ook door een e-mail te sturen naar"
               " het afmeldadres onderaan elk bericht.",
    },
}


class HttpSide(FollowsConfig):
    def __init__(
        self, current: CurrentConfig, store: Store, links: LinkSigner, membership: Membership,
        metrics: Metrics, wake_outbox: Callable[[], None],
    ) -> None:
        self._current = current
        self._store = store
        self._links = links
        self._membership = membership
        self._metrics = metrics
        self._wake_outbox = wake_outbox  # the confirmation mail is queued: send it now
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/u/{token}", self.unsubscribe_page)
        app.router.add_post("/u/{token}", self.unsubscribe)
        app.router.add_get("/j/{token}", self.join_page)
        app.router.add_post("/j/{token}", self.join)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self) -> None:
        http = self._config.http
        assert http is not None
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, http.listen.host, http.listen.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else http.listen.port
        log.info("http.started", listen=str(http.listen), port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- unsubscribe ----------------------------------------------------------------------

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        claim, lst_name, error = self._claim(request)
        if error is not None:
            return error
        assert claim is not None
        words = _WORDS["nl"]
        form = (f'<form method="post"><input type="hidden" name="List-Unsubscribe"'
                f' value="One-Click"><button type="submit">{words["button"]}</button></form>')
        return _page(words["ask_title"], words["ask"].format(list=lst_name), form)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        claim, lst_name, error = self._claim(request)
        if error is not None:
            return error
        assert claim is not None
        form = await request.post()
        if form.get("List-Unsubscribe") != "One-Click":
            return _page(_WORDS["nl"]["bad_title"], _WORDS["nl"]["bad"], "", status=400)
        removed = await self._membership.unsubscribe(claim.member_id, claim.list_id)
        words = _WORDS["nl"]
        if removed:
            self._wake_outbox()
            return _page(words["done_title"], words["done"].format(list=lst_name), "")
        return _page(words["gone_title"], words["gone"].format(list=lst_name), "")

    def _claim(
        self, request: web.Request
    ) -> tuple[LinkClaim | None, str, web.Response | None]:
        words = _WORDS["nl"]
        claim = self._links.read(request.match_info["token"])
        lst = self._config.list_by_id(claim.list_id) if claim else None
        if claim is None or lst is None:
            return None, "", _page(words["bad_title"], words["bad"], "", status=404)
        if claim.expires_at < time.time():
            return None, "", _page(words["bad_title"], words["bad"], "", status=410)
        return claim, lst.name, None

    # -- confirming a join (double opt-in by link) ----------------------------------------

    async def join_page(self, request: web.Request) -> web.Response:
        """A GET only shows the button: link scanners must not confirm anything."""
        words = _WORDS["nl"]
        form = (f'<form method="post"><button type="submit">{words["join_button"]}'
                "</button></form>")
        return _page(words["join_title"], words["join_ask"], form)

    async def join(self, request: web.Request) -> web.Response:
        words = _WORDS["nl"]
        outcome = await self._membership.confirm_by_link(request.match_info["token"])
        if outcome == "invalid":
            return _page(words["bad_title"], words["bad"], "", status=404)
        if outcome == "confirmed":
            self._wake_outbox()
        return _page(words["joined_title"], words["joined"], "")

    # -- health and metrics ---------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        parts = {"database": await self._database_ok(), "delivery": await self._delivery_ok()}
        ok = all(v == "ok" for v in parts.values())
        return web.Response(text=json.dumps(parts), content_type="application/json",
                            status=200 if ok else 503)

    async def _database_ok(self) -> str:
        try:
            async with asyncio.timeout(2.0):
                await self._store.read_one("SELECT 1")
        except Exception as exc:  # reported, not raised: this is the health check
            return f"error: {type(exc).__name__}"
        return "ok"

    async def _delivery_ok(self) -> str:
        delivery = self._config.delivery
        if delivery.mode is DeliveryMode.MAILDIR:
            return "ok" if delivery.maildir.parent.exists() else "maildir folder missing"
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(
                    delivery.smarthost.host, delivery.smarthost.port)
        except (OSError, TimeoutError) as exc:
            return f"smarthost unreachable: {type(exc).__name__}"
        writer.close()
        return "ok"

    async def metrics(self, request: web.Request) -> web.Response:
        body = await self._metrics.render(self._store, self._config)
        return web.Response(body=body, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})


def _page(title: str, text: str, form: str, status: int = 200) -> web.Response:
    body = _PAGE.format(lang="nl", title=html.escape(title), text=html.escape(text), form=form)
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none';"
                                 " style-src 'unsafe-inline'; form-action 'self'"})
