"""A progress bar for long admin commands (member import, queue retry, backup).

Drawn on stderr, and only when stderr is a terminal: a cron job, a pipe or CI sees the
command's usual output and nothing more. The decision is made here, from ``isatty``
alone, not by rich's own guess (which follows variables such as FORCE_COLOR), so the
output a script parses does not change with the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

__all__ = ["Report", "progress", "shows_progress"]


def shows_progress() -> bool:
    return sys.stderr.isatty()


class Report:
    """``report(done)``: ``done`` steps of the total are finished; ``total`` corrects the
    total when the work learns it as it goes (a backup's page count)."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextmanager
def progress(description: str, total: int) -> Iterator[Report]:
    """A bar for ``total`` steps on stderr when it is a terminal; else reports go nowhere.
    The finished bar stays on screen as a record of what was done."""
    if not shows_progress():
        yield Report()
        return
    console = Console(file=sys.stderr, force_terminal=True)
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        yield Report(bar, bar.add_task(description, total=total))
