"""The recording smarthost sink in a process of its own, for measurements.

Under load the sink's CPU (aiosmtpd spends about half a millisecond a message) must not
be taken from the test's clients, whose timings are the measurement. Run as::

    python -m tests.support.sink_process OUT.jsonl

It prints its port on the first line of stdout, records every accepted message, and
on SIGTERM writes one JSON line per message (envelope sender, recipients, the reply
markers found in it) to OUT.jsonl, then exits.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from tests.support.sink import Sink

MARKER = re.compile(rb"kenmerk ([a-z0-9-]+)")


async def main(out: Path) -> None:
    sink = await Sink.start()
    print(sink.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sink.stop()
    with out.open("w", encoding="utf-8") as file:
        for message in sink.messages:
            markers = sorted({m.decode() for m in MARKER.findall(message.data)})
            file.write(json.dumps({"mail_from": message.mail_from, "rcpt_tos": message.rcpt_tos,
                                   "markers": markers}) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
