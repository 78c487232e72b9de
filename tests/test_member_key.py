"""One member per address per list, whatever the letter case (migration 0005).

A database from before the migration, holding the same person twice ("Jan@" and "jan@")
with copies of two bulletins, is opened: the two become one, the copies stay, and a
later add of a third spelling adds nobody. The lookup the reply path makes uses the index.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from bin_gateway.store import open_store


def version_4_database(path: Path) -> None:
    folder = resources.files("bin_gateway.store").joinpath("migrations")
    with sqlite3.connect(path) as db:
        for name in sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql")):
            number = int(name.split("_", 1)[0])
            if number <= 4:
                db.executescript(folder.joinpath(name).read_text("utf-8"))
                db.execute(f"PRAGMA user_version = {number}")
        for bulletin in (1, 2):
            db.execute("INSERT INTO inbound (id, received_at, route, target, mail_from,"
                       " rcpt_tos, client_ip, helo, raw) VALUES (?, 0, 'post', 'noord', '',"
                       " '[]', '', '', x'')", (bulletin,))
            db.execute("INSERT INTO bulletins (id, list_id, inbound_id, sender_name, origin,"
                       " subject, created_at, member_count) VALUES (?, 'noord', ?, 'Politie',"
                       " 'p@x.nl', 's', 0, 2)", (bulletin, bulletin))
        db.executemany(
            "INSERT INTO members (id, list_id, email, name, created_at) VALUES (?,?,?,?,0)",
            [(1, "noord", "Jan@Example.NL", "Jan"), (2, "noord", "jan@example.nl", "Jan"),
             (3, "noord", "piet@example.nl", "Piet"), (4, "zuid", "JAN@example.nl", "Jan")],
        )
        # Bulletin 1 reached both spellings (sent); bulletin 2 only the second (queued).
        db.executemany(
            "INSERT INTO deliveries (bulletin_id, member_id, recipient, token, state,"
            " created_at, next_attempt_at) VALUES (?,?,?,?,?,0,0)",
            [(1, 1, "Jan@Example.NL", "t1", "sent"), (1, 2, "jan@example.nl", "t2", "sent"),
             (2, 2, "jan@example.nl", "t3", "queued"), (1, 3, "piet@example.nl", "t4", "sent")],
        )


async def test_case_twins_are_merged_and_their_copies_kept(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    version_4_database(path)
    store = await open_store(path)
    try:
        noord = {m.email: m.id for m in await store.members("noord")}
        assert noord == {"Jan@Example.NL": 1, "piet@example.nl": 3}
        assert [m.email for m in await store.members("zuid")] == ["JAN@example.nl"]
        rows = await store.read("SELECT bulletin_id, member_id, token, state FROM deliveries"
                                " ORDER BY token")
        assert [tuple(r) for r in rows] == [
            (1, 1, "t1", "sent"),  # the oldest's own copy
            (1, None, "t2", "sent"),  # the twin's copy of the same bulletin: history only
            (2, 1, "t3", "queued"),  # the twin's copy of another bulletin: now Jan's
            (1, 3, "t4", "sent"),
        ]
        assert await store.add_members("noord", [("JAN@example.nl", "Jan")]) == 0
        assert await store.add_members("zuid", [("jan@EXAMPLE.nl", "Jan")]) == 0
        assert await store.add_members("zuid", [("piet@example.nl", "Piet")]) == 1
    finally:
        await store.close()


async def test_the_member_lookup_uses_the_index(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    try:
        plan = await store.read(
            "EXPLAIN QUERY PLAN SELECT * FROM members WHERE list_id = ? AND lower(email)"
            " = lower(?)", ("noord", "Jan@example.nl"),
        )
        assert any("members_key" in row["detail"] for row in plan), [tuple(r) for r in plan]
    finally:
        await store.close()
