"""The outgoing queue's batch insert: each message we write is queued once per source key,
whatever the batch holds and whatever was queued before, with one delivery per recipient.

A real SQLite file; what is queued is read back through a connection of its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bin_gateway.store import OwnMessage, open_store


def queued(tmp_path: Path) -> list[tuple[str, str, bytes]]:
    """(source key, recipient, message) of every delivery, as another process reads them."""
    with sqlite3.connect(tmp_path / "gateway.sqlite3") as other:
        return [(key, to, bytes(message)) for key, to, message in other.execute(
            "SELECT o.source_key, d.recipient, o.message FROM deliveries d"
            " JOIN outbound o ON o.id = d.outbound_id ORDER BY d.id"
        )]


async def test_each_source_key_is_queued_once_with_one_delivery_per_recipient(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    try:
        async with store.transaction() as db:
            first = await store.enqueue_messages(db, [
                OwnMessage("relay", "relay:1:a", ("a@x.nl",), b"to a"),
                OwnMessage("relay", "relay:1:b", ("b@x.nl", "c@x.nl"), b"to b and c"),
                OwnMessage("relay", "relay:1:a", ("other@x.nl",), b"a second time"),
            ])
        async with store.transaction() as db:
            again = await store.enqueue_messages(db, [
                OwnMessage("relay", "relay:1:b", ("b@x.nl",), b"queued before"),
                OwnMessage("ack", "ack:1:m", ("m@x.nl",), b"new"),
            ])
            single = await store.enqueue_message(
                db, kind="ack", source_key="ack:1:m", envelope_from="",
                recipients=["m@x.nl"], message=b"queued before, too",
            )
    finally:
        await store.close()
    assert first == {"relay:1:a", "relay:1:b"}
    assert again == {"ack:1:m"}
    assert single is False
    assert queued(tmp_path) == [
        ("relay:1:a", "a@x.nl", b"to a"),  # the first of a batch's twins wins
        ("relay:1:b", "b@x.nl", b"to b and c"),
        ("relay:1:b", "c@x.nl", b"to b and c"),
        ("ack:1:m", "m@x.nl", b"new"),
    ]


async def test_a_batch_larger_than_one_statement_is_queued_whole(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    mails = [OwnMessage("notice", f"n:{i}", (f"m{i}@x.nl",), b"%d" % i) for i in range(450)]
    try:
        async with store.transaction() as db:
            keys = await store.enqueue_messages(db, mails)
    finally:
        await store.close()
    assert keys == {mail.source_key for mail in mails}
    assert queued(tmp_path) == [(f"n:{i}", f"m{i}@x.nl", b"%d" % i) for i in range(450)]
