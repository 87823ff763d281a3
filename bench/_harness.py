"""Shared harness for the benchmarks: fresh processes, interleaving, medians, a table.

Every measurement runs in its own interpreter (``python SCRIPT --driver NAME``), so no
driver inherits another's warmed caches, imports or heap. Drivers are interleaved within
each repetition (A B C, A B C, ...) so that slow drifts of the machine hit all of them
alike, and ratios are computed per repetition before taking their median.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Sample:
    driver: str
    value: float


def can_pin() -> bool:
    """Whether client and server can each have a core of their own (two or more, and taskset)."""
    if not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return False
    return len(os.sched_getaffinity(0)) >= 2


def pinned(command: Sequence[str], cpu: int | None) -> list[str]:
    """``command`` run on core ``cpu`` (through ``taskset``), or unchanged if it cannot be."""
    if cpu is None or not can_pin():
        return list(command)
    return ["taskset", "-c", str(cpu), *command]


def run_json(command: Sequence[str], *, cpu: int | None = None, timeout: float = 900) -> Any:
    """Run ``command`` in a fresh process (pinned to ``cpu``); parse its last stdout line.

    Raises `subprocess.CalledProcessError` (with the captured stderr) if it fails.
    """
    completed = subprocess.run(
        pinned(command, cpu), check=True, capture_output=True, text=True, timeout=timeout
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, minimum and maximum."""
    return statistics.median(values), min(values), max(values)


def run_driver(
    script: str, driver: str, extra: Sequence[str] = (), cpu: int | None = None
) -> float:
    """Run one measurement in a fresh process and return the number it prints."""
    command = [sys.executable, script, "--driver", driver, *extra]
    if cpu is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", str(cpu), *command]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(output.strip().splitlines()[-1])["value"])


def measure(
    script: str,
    drivers: Sequence[str],
    *,
    repetitions: int,
    extra: Sequence[str] = (),
    cpu: int | None = None,
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {driver: [] for driver in drivers}
    for repetition in range(repetitions):
        for driver in drivers:
            value = run_driver(script, driver, extra, cpu)
            results[driver].append(value)
            print(
                f"  rep {repetition + 1}/{repetitions} {driver:>10}: {value:10.2f}", file=sys.stderr
            )
    return results


def table(results: dict[str, list[float]], *, unit: str, baseline: str) -> str:
    """A Markdown table: median (min–max) per driver and the median per-repetition ratio."""
    lines = [
        f"| driver | median {unit} | min–max | ratio to {baseline} (median of per-rep ratios) |",
        "|---|---:|---:|---:|",
    ]
    base = results[baseline]
    for driver, values in results.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        lines.append(
            f"| {driver} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} "
            f"| {statistics.median(ratios):.2f}× |"
        )
    return "\n".join(lines)
