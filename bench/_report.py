"""Turning raw measurements into the Markdown tables and the chart of ``bench/run.py``.

Pure functions over plain data: a ``Results`` maps a measurement's key to, per driver, one
record per repetition (a dict with the numbers, or ``{"error": ...}`` / ``{"skipped": ...}``).
Nothing here runs a benchmark, so the formatting can be changed and re-run from a saved JSON
file (``python bench/run.py --from-json bench/results/latest.json``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]

DRIVER_TITLES = {
    "httpx": "httpx (floor)",
    "ctgt": "ctgt-async",
    "openai": "openai",
    "aiohttp": "aiohttp (raw)",
    "hand": "task group + semaphore",
    "batch": "batch API",
}
COLOURS = {
    "httpx": "#9e9e9e",
    "ctgt": "#3f51b5",
    "openai": "#10a37f",
    "aiohttp": "#ef8d22",
    "hand": "#9e9e9e",
    "batch": "#3f51b5",
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a number (``field``) of one measurement (``job``)."""

    key: str
    job: str
    label: str
    unit: str
    field: str = "value"
    short: str = ""  # the chart panel's title


@dataclass(frozen=True)
class Goal:
    """A target from the issue: ``numerator ÷ denominator`` on ``row`` at most ``target``."""

    label: str
    row: str
    numerator: str
    denominator: str
    target: float
    stated: bool = True


def values(results: Results, row: Row, driver: str) -> list[float | None]:
    """Per repetition: the row's number for ``driver``, or None where it failed or was skipped."""
    records = results.get(row.job, {}).get(driver, [])
    return [record.get(row.field) for record in records]


def numbers(results: Results, row: Row, driver: str) -> list[float]:
    return [value for value in values(results, row, driver) if value is not None]


def ratios(results: Results, row: Row, numerator: str, denominator: str) -> list[float]:
    """``numerator ÷ denominator`` within each repetition where both were measured."""
    tops, bottoms = values(results, row, numerator), values(results, row, denominator)
    if len(tops) != len(bottoms):
        return []  # one of them is not measured on this row at all
    return [a / b for a, b in zip(tops, bottoms, strict=True) if a is not None and b]


def why_missing(results: Results, row: Row, driver: str) -> str | None:
    """The reason a driver has no number on a row: skipped, failed, or not run."""
    records = results.get(row.job, {}).get(driver)
    if not records:
        return None
    for key in ("skipped", "error"):
        if any(key in record for record in records):
            return key
    return None


def number(value: float) -> str:
    """Three significant figures or so, with thousands separators."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread_text(found: Sequence[float], formatter: Any = number, suffix: str = "") -> str:
    if not found:
        return "—"
    median = statistics.median(found)
    text = f"{formatter(median)}{suffix}"
    if len(found) > 1:
        text += f" ({formatter(min(found))}–{formatter(max(found))})"
    return text


def ratio(value: float) -> str:
    return f"{value:.2f}"


def cell(results: Results, row: Row, driver: str) -> str:
    found = numbers(results, row, driver)
    if found:
        return spread_text(found)
    return why_missing(results, row, driver) or "—"


def main_table(
    results: Results,
    rows: Sequence[Row],
    drivers: Sequence[str],
    ratio_pairs: Sequence[tuple[str, str]],
) -> str:
    """Scenario rows × driver columns, then ratio columns (per-repetition ratios' median)."""
    ratio_columns = [(a, b) for a, b in ratio_pairs if a in drivers and b in drivers]
    header = ["scenario", "unit", *(DRIVER_TITLES[d] for d in drivers)]
    header += [f"{a} ÷ {b}" for a, b in ratio_columns]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        cells = [row.label, row.unit, *(cell(results, row, d) for d in drivers)]
        for a, b in ratio_columns:
            cells.append(spread_text(ratios(results, row, a, b), ratio, "×"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_table(results: Results, rows: Sequence[Row], goals: Sequence[Goal]) -> str:
    by_key = {row.key: row for row in rows}
    lines = [
        "| goal | measured: median (min–max) | target | met? |",
        "|---|---:|---:|---|",
    ]
    for goal in goals:
        found = ratios(results, by_key[goal.row], goal.numerator, goal.denominator)
        if not found:
            verdict = "not measured"
        elif statistics.median(found) > goal.target:
            verdict = "**no**"
        elif max(found) > goal.target:
            verdict = "yes (median; not every repetition)"
        else:
            verdict = "yes (every repetition)"
        label = goal.label if goal.stated else f"{goal.label} (for reference, not a stated goal)"
        lines.append(
            f"| {label} | {spread_text(found, ratio, '×')} | ≤ {goal.target:.2f}× | {verdict} |"
        )
    return "\n".join(lines)


def server_table(results: Results, jobs: dict[str, str], drivers: Sequence[str]) -> str:
    """The loopback server's CPU use during each measured part, as a share of one core."""
    lines = [
        "| scenario | " + " | ".join(DRIVER_TITLES[d] for d in drivers) + " |",
        "|---|" + "---:|" * len(drivers),
    ]
    for job, label in jobs.items():
        cells = []
        for driver in drivers:
            records = results.get(job, {}).get(driver, [])
            found = [r["server_util"] * 100 for r in records if r.get("server_util") is not None]
            if found:
                cells.append(f"{statistics.median(found):.1f}% (max {max(found):.1f}%)")
            else:
                cells.append("—")
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(
    results: Results,
    rows: Sequence[Row],
    drivers_of: dict[str, Sequence[str]],
    path: str,
    title: str,
) -> str | None:
    """A bar chart, one panel per row: median per driver, whiskers from min to max.

    Returns None when written, or the reason it was not (matplotlib is optional).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or the bench extra)"
    columns = 4
    panel_rows = -(-len(rows) // columns)
    figure, axes = plt.subplots(
        panel_rows, columns, figsize=(4.0 * columns, 3.4 * panel_rows), squeeze=False
    )
    for index, row in enumerate(rows):
        axis = axes[index // columns][index % columns]
        drivers = [d for d in drivers_of[row.job] if numbers(results, row, d)]
        found = [numbers(results, row, d) for d in drivers]
        medians = [statistics.median(f) for f in found]
        lows = [statistics.median(f) - min(f) for f in found]
        highs = [max(f) - statistics.median(f) for f in found]
        bars = axis.bar(
            range(len(drivers)),
            medians,
            yerr=[lows, highs],
            capsize=3,
            color=[COLOURS[d] for d in drivers],
        )
        top = max((max(f) for f in found), default=1.0)
        for bar, median, values_ in zip(bars, medians, found, strict=True):
            axis.text(
                bar.get_x() + bar.get_width() / 2,
                max(values_) + top * 0.02,
                number(median),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        missing = [
            f"{DRIVER_TITLES[d]}: {why_missing(results, row, d) or 'not run'}"
            for d in drivers_of[row.job]
            if d not in drivers
        ]
        if missing:
            axis.text(
                0.98, 0.97, "\n".join(missing), ha="right", va="top", fontsize=7,
                color="#666666", transform=axis.transAxes,
            )  # fmt: skip
        axis.set_xlim(-0.6, max(len(drivers_of[row.job]), 3) - 0.4)  # bars of one width
        axis.set_xticks(range(len(drivers)))
        axis.set_xticklabels([DRIVER_TITLES[d] for d in drivers], fontsize=8, rotation=15)
        axis.set_title(row.short or row.label, fontsize=9)
        axis.set_ylabel(row.unit, fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
        axis.margins(y=0.15)
        axis.spines[["top", "right"]].set_visible(False)
    for index in range(len(rows), panel_rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
