"""Progress on stderr for the commands that work through many items: the one helper that sweep,
survey, verify, fsck, `restore --prefix` and train share.

On a terminal it is a transient rich bar (count, rate, time left, the current item). Anywhere else
(a pipe, a log file, CI) it is plain lines on stderr: one each time another tenth of the total is
done, or PLAIN_SECONDS after the last line (whichever comes first), and one at the end, so a long
run shows it is alive without flooding a log. `archiver --quiet` turns both off.
"""

from __future__ import annotations

import math
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

PLAIN_SECONDS = 30.0  # at most this long between two plain lines while work goes on
PLAIN_STEPS = 10  # ... and a line at each tenth of a known total
PLAIN_UNKNOWN_EVERY = 1000  # without a total: a line every this many items too


def quiet() -> bool:
    """Whether `archiver --quiet` was given (read from the root command's `App`)."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(app, "quiet", False))


class Bar:
    """Counted progress of one step: `start(total)`, `advance(item)` per item (or `update(done)`),
    `stop()`. `advance(item, ok=False)` counts a refusal, shown beside the count."""

    def __init__(
        self,
        description: str,
        *,
        unit: str = "",
        console: Console | None = None,
        quiet_: bool | None = None,
    ) -> None:
        self.description = description
        self.unit = unit
        self._console = console or Console(stderr=True)
        self._off = quiet() if quiet_ is None else quiet_
        self._terminal = self._console.is_terminal
        self._rich: Progress | None = None
        self._task: Any = None
        self.total: int | None = None
        self.done = 0
        self.refused = 0
        self._note = ""
        self._started = self._last_line = time.monotonic()
        self._last_step = 0  # the tenth (or thousand) the last plain line reported

    def describe(self, description: str) -> None:
        """A new description, before `start` (the fleet sweep names its Ray actors)."""
        self.description = description

    def start(self, total: int | None = None) -> None:
        self.total, self.done, self.refused = total, 0, 0
        self._started = self._last_line = time.monotonic()
        self._last_step = 0
        if self._off or not self._terminal:
            return
        self._rich = Progress(
            SpinnerColumn() if total is None else BarColumn(),
            TextColumn("{task.description}"),
            MofNCompleteColumn() if total is not None else TextColumn("{task.completed}"),
            TextColumn("{task.fields[rate]}"),
            *([TimeRemainingColumn()] if total is not None else []),
            TextColumn("{task.fields[note]}"),
            console=self._console,
            transient=True,
        )
        self._rich.start()
        self._task = self._rich.add_task(self.description, total=total, rate="", note="")

    def advance(self, item: str = "", ok: bool | None = None, *, n: int = 1) -> None:
        """`n` more items done, the last of them `item`; `ok=False` counts a refusal."""
        self.refused += ok is False
        self.update(self.done + n, item)

    def update(self, done: int, note: str = "") -> None:
        """`done` items done so far; `note` (the current item, a loss) is shown beside the count."""
        self.done, self._note = done, note
        if self._off:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=done, rate=self._rate(), note=self._extra())
            return
        step = math.floor(done * PLAIN_STEPS / self.total) if self.total else done // PLAIN_UNKNOWN_EVERY
        now = time.monotonic()
        if step > self._last_step or now - self._last_line >= PLAIN_SECONDS or done == self.total:
            self._last_step, self._last_line = step, now
            self._line()

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        per_second = self.done / elapsed
        unit = f" {self.unit}" if self.unit else ""
        return f"{per_second:.2f}{unit}/s" if per_second < 10 else f"{per_second:.0f}{unit}/s"

    def _extra(self) -> str:
        refused = f"{self.refused} refused " if self.refused else ""
        return refused + self._note

    def _line(self) -> None:
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        left = ""
        if self.total and self.done and self.done < self.total:
            elapsed = time.monotonic() - self._started
            left = f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
        extra = self._extra()
        click.echo(
            f"archiver: {self.description} {count} ({self._rate()}{left})" + (f" {extra}" if extra else ""),
            err=True,
        )


def bar(description: str, total: int | None = None, *, unit: str = "") -> Bar:
    """A started `Bar` on stderr (off with `--quiet`)."""
    made = Bar(description, unit=unit)
    made.start(total)
    return made
