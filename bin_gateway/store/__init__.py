"""The one owner of SQLite: open, migrate, transaction(), a named method per query."""

from __future__ import annotations

from pathlib import Path

from .base import STORE_ERRORS, GroupCommitFailed, now
from .inbound import InboundQueries, NewInbound
from .joins import JoinQueries
from .members import MemberQueries
from .moderation import ModerationQueries
from .privacy import PrivacyQueries
from .queue import DeliveryOutcome, OwnMessage, QueueQueries
from .replies import ReplyQueries
from .stats import StatsQueries

__all__ = [
    "STORE_ERRORS", "DeliveryOutcome", "GroupCommitFailed", "NewInbound", "OwnMessage", "Store",
    "now", "open_store",
]


class Store(
    InboundQueries, JoinQueries, MemberQueries, ModerationQueries, PrivacyQueries,
    QueueQueries, ReplyQueries, StatsQueries,
):
    """All queries of the gateway, over one writer and one reader connection."""


async def open_store(path: Path) -> Store:
    store: Store = await Store.open(path)
    return store
