"""The progress display of ``ctgt batch``: pure formatting, and a console that never mixes a
bar with other messages."""

from __future__ import annotations

import io

import pytest

from ctgt_async._progress import (
    ERASE_LINE,
    Console,
    RateMeter,
    Snapshot,
    format_bar,
    format_duration,
    format_line,
)

HALF = Snapshot(total_lines=2000, settled_lines=1000, succeeded=990, failed=10, rate=12.5, eta=80)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (0.2, "0:01"), (59.5, "1:00"), (61, "1:01"), (3725, "1:02:05")],
)
def test_durations_read_like_a_clock(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_bar_shows_the_share_done_the_counts_the_rate_and_the_eta() -> None:
    assert format_bar(HALF, columns=200) == (
        "[############------------]  50% 1,000/2,000 lines, 990 ok, 10 failed, 12.5/s, ETA 1:20"
    )
    # A narrow terminal shrinks the bar, then drops it, before cutting any figure; the last
    # column stays free so that the line never wraps.
    figures = " 50% 1,000/2,000 lines, 990 ok, 10 failed, 12.5/s, ETA 1:20"
    assert format_bar(HALF, columns=80) == "[########---------] " + figures
    assert format_bar(HALF, columns=66) == figures
    assert format_bar(HALF, columns=40) == figures[:39]
    unknown = Snapshot(total_lines=0, settled_lines=0, succeeded=0, failed=0, rate=0.0, eta=None)
    assert format_bar(unknown, columns=200).startswith("[" + "#" * 24 + "] 100%")
    assert format_line(HALF) == (
        "ctgt batch: 1,000/2,000 lines (50%), 990 ok, 10 failed, 12.5/s, ETA 1:20"
    )


def test_the_rate_follows_the_recent_window() -> None:
    meter = RateMeter(window=10)
    assert meter.sample(0.0, 0, 0) == (0.0, 0.0)
    assert meter.sample(5.0, 50, 100) == (10.0, 20.0)
    meter.sample(20.0, 50, 100)  # a stall: the old samples leave the window
    results, settled = meter.sample(25.0, 100, 100)
    assert results == pytest.approx(50 / 20)
    assert settled == 0.0


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_cleared_for_messages() -> None:
    stream = io.StringIO()
    console = Console(stream, bar=True)
    console.progress(0.0, HALF)
    console.progress(0.25, HALF)
    console.message("ctgt: in.jsonl:3: not valid JSON")
    console.clear()  # nothing shown: nothing to clear
    console.progress(0.5, HALF)
    console.clear()
    bar = format_bar(HALF)
    assert (
        stream.getvalue()
        == (ERASE_LINE + bar + ERASE_LINE + bar + ERASE_LINE + "ctgt: in.jsonl:3: not valid JSON\n")
        + ERASE_LINE
        + bar
        + ERASE_LINE
    )
    assert console.refresh_interval == 0.25


def test_elsewhere_a_plain_line_comes_every_interval() -> None:
    stream = io.StringIO()
    console = Console(stream, bar=False, interval=10)
    for now in (0.0, 5.0, 10.0, 15.0, 20.5):
        console.progress(now, HALF)
    assert stream.getvalue() == (format_line(HALF) + "\n") * 2
    assert console.refresh_interval == 10


def test_quiet_shows_messages_only() -> None:
    stream = io.StringIO()
    console = Console(stream, bar=True, quiet=True)
    console.progress(0.0, HALF)
    console.message("summary")
    assert stream.getvalue() == "summary\n"
