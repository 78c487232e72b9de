"""What a reload may change, and what it tells the admin it changed.

A reload (SIGHUP) puts the new file's lists, agencies, coordinators, list keys
(``review_replies``, ``replies_to``, rate limits ...), moderation times, authentication
policy, retry times, retention, admin address and the like in force for new work. Some
settings are built into long-lived parts at start — the listening sockets, the database
and its folder, the DKIM signer, the resolver, the delivery transport, whether STARTTLS
is offered at all — and changing those needs a restart: :func:`plan_reload` keeps their
old values in the config it puts in force (so the config in force always describes what
the process does), and names them so the admin is told "needs a restart". The rest of
the file applies; the admin restarts when convenient, and the restart reads the file
anew. The certificate and key paths of [tls] apply too: every reload reads that pair
again (``server_tls``), so new paths are read like renewed files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from bin_gateway.config.settings import Agency, Config, MailingList

# Settings (section.key, or a whole optional section) fixed at start: see the docstring.
RESTART_ONLY = frozenset({
    "gateway.domain", "gateway.hostname", "gateway.listen", "gateway.data_dir",
    "tls",  # adding or removing the section; its certificate and key apply on reload
    "dkim.selector", "dkim.private_key",
    "inbound.nameservers", "inbound.dns_timeout",
    "delivery.mode", "delivery.smarthost", "delivery.starttls", "delivery.username",
    "delivery.password_file", "delivery.connections", "delivery.maildir",
    "http", "http.listen",
})  # fmt: skip
SECTIONS = ("gateway", "tls", "dkim", "inbound", "moderation", "delivery", "http")

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Reload:
    config: Config  # what goes in force: the new file, restart-only settings as they were
    changes: dict[str, list[str]]  # for the log: "settings", "lists_added", ... (non-empty)
    needs_restart: tuple[str, ...]  # restart-only settings the new file changes


def plan_reload(old: Config, new: Config) -> Reload:
    """The config to put in force when ``new`` replaces ``old``, and what changed."""
    sections: dict[str, Any] = {}
    settings: list[str] = []
    restart: list[str] = []
    for name in SECTIONS:
        section, changed = _merge(name, getattr(old, name), getattr(new, name))
        sections[name] = section
        settings += [key for key in changed if key not in RESTART_ONLY]
        restart += [key for key in changed if key in RESTART_ONLY]
    config = dataclasses.replace(new, **sections)
    changes = {
        "settings": settings,
        **_by_id("lists", old.lists, new.lists),
        **_by_id("agencies", old.agencies, new.agencies),
    }
    return Reload(config, {k: v for k, v in changes.items() if v}, tuple(restart))


def _merge(name: str, old: S | None, new: S | None) -> tuple[S | None, list[str]]:
    """``new`` with its restart-only keys as in ``old``; the dotted keys that differ."""
    if old is None or new is None:
        if old is new:
            return None, []
        return (old, [name]) if name in RESTART_ONLY else (new, [name])
    changed = _differing(old, new)
    kept = {key: getattr(old, key) for key in changed if f"{name}.{key}" in RESTART_ONLY}
    return dataclasses.replace(new, **kept), [f"{name}.{key}" for key in changed]  # type: ignore[type-var]


def _differing(old: Any, new: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def _by_id(
    kind: str, old: tuple[MailingList | Agency, ...], new: tuple[MailingList | Agency, ...]
) -> dict[str, list[str]]:
    """Added, removed and changed entries by id; a changed one with the keys that changed."""
    before = {entry.id: entry for entry in old}
    after = {entry.id: entry for entry in new}
    changed = [
        f"{key} ({', '.join(_differing(before[key], entry))})"
        for key, entry in after.items()
        if key in before and before[key] != entry
    ]
    return {
        f"{kind}_added": [key for key in after if key not in before],
        f"{kind}_removed": [key for key in before if key not in after],
        f"{kind}_changed": changed,
    }
