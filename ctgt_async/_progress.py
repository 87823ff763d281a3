"""What ``ctgt batch`` shows on stderr: a progress bar on a terminal, plain lines elsewhere.

The formatting is pure (`Snapshot` in, text out) so it is tested without a terminal. `Console`
is the only part that writes: on a terminal it redraws one line in place with a carriage
return and an ANSI "erase line", and clears the bar before any other message so the two never
mix; anywhere else (a log file, CI) it prints a plain line every ``interval`` seconds instead.
Only ASCII is drawn, so the bar survives any locale.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections import deque
from typing import Final, TextIO

__all__ = ["Console", "RateMeter", "Snapshot", "format_bar", "format_duration", "format_line"]

ERASE_LINE: Final = "\r\x1b[2K"
BAR_WIDTH: Final = 24
MIN_BAR_WIDTH: Final = 6
RATE_WINDOW: Final = 30.0
"""Seconds of history the rate and the ETA are computed over: recent enough to follow a
change of pace (a rate limit, a resume that skips ahead), long enough not to flicker."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The counts a progress display needs, at one moment."""

    total_lines: int
    settled_lines: int
    succeeded: int
    failed: int
    rate: float
    """Results per second, recently."""
    eta: float | None
    """Seconds until every line is settled, at the recent pace; ``None`` while unknown."""


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _fraction(snapshot: Snapshot) -> float:
    if snapshot.total_lines <= 0:
        return 1.0
    return min(snapshot.settled_lines / snapshot.total_lines, 1.0)


def _counts(snapshot: Snapshot) -> str:
    eta = "?" if snapshot.eta is None else format_duration(snapshot.eta)
    return (
        f"{snapshot.succeeded:,} ok, {snapshot.failed:,} failed, {snapshot.rate:,.1f}/s, ETA {eta}"
    )


def format_bar(snapshot: Snapshot, columns: int = 80) -> str:
    """One line for a terminal: bar, percentage, lines, results, rate and ETA.

    The figures come first in priority: on a narrow terminal the bar shrinks, then goes,
    before any figure is cut. The last column is left free, so that no terminal wraps.
    """
    fraction = _fraction(snapshot)
    text = f"{fraction:4.0%} {snapshot.settled_lines:,}/{snapshot.total_lines:,} lines, " + _counts(
        snapshot
    )
    room = columns - 1 - len(text) - 3  # "[", "]" and a space around the bar
    width = min(BAR_WIDTH, room)
    if width < MIN_BAR_WIDTH:
        return text[: max(columns - 1, 0)]
    filled = int(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {text}"


def format_line(snapshot: Snapshot) -> str:
    """One self-contained line for a log."""
    return (
        f"ctgt batch: {snapshot.settled_lines:,}/{snapshot.total_lines:,} lines "
        f"({_fraction(snapshot):.0%}), " + _counts(snapshot)
    )


class RateMeter:
    """Rates over the last `RATE_WINDOW` seconds, from samples of running totals."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self._window = window
        self._samples: deque[tuple[float, int, int]] = deque()

    def sample(self, now: float, results: int, settled: int) -> tuple[float, float]:
        """Record the totals at ``now``; return (results per second, settled lines per second)."""
        samples = self._samples
        samples.append((now, results, settled))
        while len(samples) > 2 and samples[1][0] <= now - self._window:
            samples.popleft()
        then, results_then, settled_then = samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (results - results_then) / elapsed, (settled - settled_then) / elapsed


class Console:
    """Writes progress and messages to stderr without the two trampling each other.

    Args:
        stream: Where to write (stderr).
        bar: Redraw a bar in place (a terminal) instead of printing lines.
        interval: Seconds between two plain progress lines.
        quiet: Show no progress at all, only messages and the summary.
    """

    def __init__(
        self, stream: TextIO, *, bar: bool, interval: float = 10.0, quiet: bool = False
    ) -> None:
        self._stream = stream
        self._bar = bar and not quiet
        self._interval = interval
        self.quiet = quiet
        self._shown = False
        self._last_line_at: float | None = None

    @property
    def refresh_interval(self) -> float:
        """How often `progress` is worth calling."""
        return 0.25 if self._bar else self._interval

    def progress(self, now: float, snapshot: Snapshot) -> None:
        if self.quiet:
            return
        if self._bar:
            columns = shutil.get_terminal_size((80, 24)).columns
            self._stream.write(ERASE_LINE + format_bar(snapshot, columns))
            self._stream.flush()
            self._shown = True
        elif self._last_line_at is None:
            # The first line comes after one interval: a short job needs none.
            self._last_line_at = now
        elif now - self._last_line_at >= self._interval:
            self._last_line_at = now
            self.message(format_line(snapshot))

    def message(self, text: str) -> None:
        """Print one line, clearing the bar first; the next `progress` redraws it."""
        if self._shown:
            self._stream.write(ERASE_LINE)
            self._shown = False
        self._stream.write(text + "\n")
        self._stream.flush()

    def clear(self) -> None:
        if self._shown:
            self._stream.write(ERASE_LINE)
            self._stream.flush()
            self._shown = False
