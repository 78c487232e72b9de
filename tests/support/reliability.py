"""The size of the reliability runs (fault injection, smarthost faults, load): one place.

CI runs the short size. ``RELIABILITY=long`` selects the full size the README's
"Reliability" table reports; ``RELIABILITY_SEED=N`` repeats a run's random choices
(every run prints its seed)::

    RELIABILITY=long RELIABILITY_SEED=1234 .venv/bin/pytest -s tests/test_fault_injection.py
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

__all__ = ["FAULTS", "LOAD", "LONG", "SMARTHOST", "seeded"]

LONG = os.environ.get("RELIABILITY", "").lower() == "long"


@dataclass(frozen=True, slots=True)
class FaultScale:
    """SIGKILL during intake, moderation, fan-out and reply relay."""

    kills: int
    members: int  # of the list every approved bulletin fans out to
    posts: int  # at most this many agency posts (each approved by a coordinator's OK),
    # one after the other while the kills go on
    replies_per_bulletin: int  # members answering each bulletin


@dataclass(frozen=True, slots=True)
class SmarthostScale:
    """A smarthost that fails at random."""

    members: int
    bulletins: int
    unknown_members: int  # the smarthost answers 550 for these, every time
    refusal_windows: int  # times the smarthost stops listening for a while


@dataclass(frozen=True, slots=True)
class LoadScale:
    """Many SMTP clients at once while a big fan-out runs."""

    clients: int
    messages: int
    members: int


FAULTS = (FaultScale(kills=32, members=2000, posts=24, replies_per_bulletin=12) if LONG
          else FaultScale(kills=8, members=2000, posts=5, replies_per_bulletin=10))
SMARTHOST = (SmarthostScale(members=2000, bulletins=2, unknown_members=20, refusal_windows=3)
             if LONG else
             SmarthostScale(members=200, bulletins=1, unknown_members=5, refusal_windows=1))
LOAD = (LoadScale(clients=50, messages=5000, members=10_000) if LONG
        else LoadScale(clients=10, messages=300, members=1000))


def seeded(name: str) -> random.Random:
    """A random generator whose seed is printed, so a failing run can be repeated."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
    print(f"\n{name}: RELIABILITY_SEED={seed}{' RELIABILITY=long' if LONG else ''}")
    return random.Random(seed)
