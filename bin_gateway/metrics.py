"""Prometheus metrics: the SMTP server's counters, and gauges read from the store.

Gauges come from the database at scrape time (held items, queue depth and age,
deliveries by state, replies, members per list), so they are right after a restart and
need no bookkeeping on the hot path; only what happens in the SMTP session is counted
in memory (accepted, refused by reply code).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import Config
from .store import Store


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._smtp = Counter(
            "bin_gateway_smtp_messages", "SMTP transactions answered after DATA",
            ["outcome", "reply"], registry=self.registry,
        )

    def smtp_outcome(self, outcome: str, reply: str) -> None:
        """``reply`` is the code and enhanced code ("550 5.7.1"): few distinct values."""
        self._smtp.labels(outcome=outcome, reply=reply).inc()

    async def render(self, store: Store, config: Config) -> bytes:
        snapshot = CollectorRegistry()
        snapshot.register(_Snapshot(await _families(store, config)))
        return generate_latest(self.registry) + generate_latest(snapshot)


async def _families(store: Store, config: Config) -> list[Metric]:
    now = time.time()
    held = await store.read_one("SELECT count(*) FROM submissions WHERE state = 'held'")
    # "deferred": queued again after a temporary failure (attempts > 0).
    by_state = await store.read(
        "SELECT CASE WHEN state = 'queued' AND attempts > 0 THEN 'deferred' ELSE state END,"
        " count(*) FROM deliveries GROUP BY 1")
    queue = await store.read_one(
        "SELECT count(*), min(created_at) FROM deliveries WHERE state IN ('queued','sending')")
    replies = await store.read(
        "SELECT direction, state, count(*) FROM replies GROUP BY direction, state")
    members = await store.read(
        "SELECT list_id, count(*) FROM members WHERE state = 'active' GROUP BY list_id")
    families: list[Metric] = []
    gauge = GaugeMetricFamily("bin_gateway_held_items", "Items waiting for a coordinator")
    gauge.add_metric([], int(held[0]) if held else 0)
    families.append(gauge)
    deliveries = GaugeMetricFamily(
        "bin_gateway_deliveries", "Copies by state (queued, deferred, sending, sent, failed)",
        labels=["state"])
    for state, count in by_state:
        deliveries.add_metric([str(state)], int(count))
    families.append(deliveries)
    depth = GaugeMetricFamily("bin_gateway_queue_depth", "Copies queued or being sent")
    depth.add_metric([], int(queue[0]) if queue else 0)
    families.append(depth)
    oldest = GaugeMetricFamily("bin_gateway_queue_oldest_seconds",
                               "Age of the oldest copy still to be sent")
    oldest.add_metric([], round(now - queue[1], 1) if queue and queue[1] else 0.0)
    families.append(oldest)
    reply = GaugeMetricFamily("bin_gateway_replies", "Member replies and answers by outcome",
                              labels=["direction", "state"])
    for direction, state, count in replies:
        reply.add_metric([str(direction), str(state)], int(count))
    families.append(reply)
    per_list = dict((str(k), int(v)) for k, v in members)
    member = GaugeMetricFamily("bin_gateway_members", "Active members", labels=["list"])
    for lst in config.lists:
        member.add_metric([lst.id], per_list.get(lst.id, 0))
    families.append(member)
    return families
