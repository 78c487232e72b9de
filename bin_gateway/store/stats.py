"""Counts per list for ``bin-gateway stats``: anonymous by construction (no addresses)."""

from __future__ import annotations

from .base import StoreBase


class StatsQueries(StoreBase):
    async def list_stats(self, list_id: str, since: float) -> dict[str, int]:
        """Members now, and what happened on the list after ``since`` (UNIX time)."""
        row = await self.read_one(
            "SELECT"
            " (SELECT count(*) FROM members WHERE list_id = :l AND state = 'active'),"
            " (SELECT count(*) FROM members WHERE list_id = :l AND state = 'disabled'),"
            " (SELECT count(*) FROM members WHERE list_id = :l AND created_at >= :s),"
            " (SELECT count(*) FROM bulletins WHERE list_id = :l AND created_at >= :s),"
            " (SELECT count(*) FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id"
            "   WHERE b.list_id = :l AND b.created_at >= :s AND d.state = 'sent'),"
            " (SELECT count(*) FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id"
            "   WHERE b.list_id = :l AND b.created_at >= :s AND d.state = 'failed'),"
            " (SELECT count(*) FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id"
            "   WHERE b.list_id = :l AND b.created_at >= :s"
            "   AND d.state IN ('queued', 'sending')),"
            " (SELECT count(*) FROM bounces x JOIN deliveries d ON d.id = x.delivery_id"
            "   JOIN bulletins b ON b.id = d.bulletin_id"
            "   WHERE b.list_id = :l AND x.at >= :s AND x.permanent = 1),"
            " (SELECT count(*) FROM bounces x JOIN deliveries d ON d.id = x.delivery_id"
            "   JOIN bulletins b ON b.id = d.bulletin_id"
            "   WHERE b.list_id = :l AND x.at >= :s AND x.permanent = 0),"
            " (SELECT count(*) FROM replies r JOIN reply_threads t ON t.id = r.thread_id"
            "   WHERE t.list_id = :l AND r.created_at >= :s AND r.direction = 'member'),"
            " (SELECT count(*) FROM replies r JOIN reply_threads t ON t.id = r.thread_id"
            "   WHERE t.list_id = :l AND r.created_at >= :s AND r.direction = 'member'"
            "   AND r.state = 'relayed'),"
            " (SELECT count(*) FROM replies r JOIN reply_threads t ON t.id = r.thread_id"
            "   WHERE t.list_id = :l AND r.created_at >= :s AND r.direction = 'answer')",
            {"l": list_id, "s": since},
        )
        names = ("members", "disabled", "joined", "bulletins", "copies_sent", "copies_failed",
                 "copies_pending", "bounces_permanent", "bounces_temporary", "replies",
                 "replies_relayed", "answers")  # fmt: skip
        return {name: int(value) for name, value in zip(names, row or (), strict=False)}
