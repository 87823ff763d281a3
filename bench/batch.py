"""The batch API against the loop users write by hand, over the same client and simulator.

Each driver sends ``--requests`` chat completions at ``--concurrency`` to the simulator
running in process (`Simulator().client()`), under asyncio:

* ``gather``: the loop users write by hand, ``asyncio.gather`` over one coroutine per
  request, each behind an ``asyncio.Semaphore``;
* ``workers``: the leanest loop there is, ``--concurrency`` tasks pulling from one shared
  generator: no reordering, no progress, no adaptation, a floor for the batch's overhead;
* ``batch``: ``client.batch(requests, concurrency=...)`` over a generator, reading each result.

Each measurement runs in a fresh interpreter, warms up outside the measured part, and reports
wall-clock requests per second, CPU time per request (``time.process_time``, which includes
the simulator's share, the same for both) and the growth of the peak RSS during the run.
Drivers are interleaved within each repetition and ratios taken per repetition (see
``bench/_harness.py``). A second table repeats the memory figure at ``--scale`` times the
size, to show which driver's memory grows with the input.

    python bench/batch.py                          # 5 repetitions of 10,000 requests
    python bench/batch.py --repetitions 3 --scale 4
    python bench/batch.py --driver batch           # one measurement, printed as JSON

The simulator records every request for tests to inspect; here its log is bounded (as
``ctgt batch --simulate`` does), so that it does not hide the clients' own memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio

DRIVERS = ("gather", "workers", "batch")
REQUESTS = 10_000
CONCURRENCY = 64
MODEL = "gemini-2.5-flash-lite"
# ru_maxrss is in KiB on Linux and in bytes on macOS.
RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def requests(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"model": MODEL, "messages": [{"role": "user", "content": f"Question {index}?"}]}


async def run_gather(client: Any, count: int, concurrency: int) -> int:
    from ctgt_async import APIError

    semaphore = asyncio.Semaphore(concurrency)

    async def one(params: dict[str, Any]) -> object:
        async with semaphore:
            try:
                return await client.chat.completions.create(**params)
            except APIError as error:
                return error

    results = await asyncio.gather(*(one(params) for params in requests(count)))
    return sum(1 for result in results if not isinstance(result, Exception))


async def run_workers(client: Any, count: int, concurrency: int) -> int:
    from ctgt_async import APIError

    pending = requests(count)
    done = 0

    async def worker() -> None:
        nonlocal done
        for params in pending:
            try:
                await client.chat.completions.create(**params)
            except APIError:
                continue
            done += 1

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return done


async def run_batch(client: Any, count: int, concurrency: int) -> int:
    done = 0
    async with client.batch(requests(count), concurrency=concurrency) as results:
        async for result in results:
            done += result.ok
    return done


RUNNERS: dict[str, Callable[[Any, int, int], Awaitable[int]]] = {
    "gather": run_gather,
    "workers": run_workers,
    "batch": run_batch,
}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT


async def timed(driver: str, count: int, concurrency: int) -> dict[str, float]:
    from ctgt_async.testing import Simulator

    simulator = Simulator(max_records=100)
    async with simulator.client(max_retries=0) as client:
        runner = RUNNERS[driver]
        await runner(client, 2 * concurrency, concurrency)  # warm up the pool and the caches
        gc.collect()
        base = peak_rss()
        cpu, wall = time.process_time(), time.perf_counter()
        done = await runner(client, count, concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        grown = peak_rss() - base
    assert done == count, (driver, done)
    return {
        "requests_per_second": count / wall,
        "cpu_us_per_request": cpu / count * 1e6,
        "peak_rss_growth_mib": grown / 2**20,
    }


def one_measurement(driver: str, count: int, concurrency: int) -> dict[str, float]:
    return anyio.run(timed, driver, count, concurrency)


def run_driver(driver: str, count: int, concurrency: int) -> dict[str, float]:
    """One measurement in a fresh interpreter."""
    command = [
        sys.executable,
        __file__,
        "--driver",
        driver,
        "--requests",
        str(count),
        "--concurrency",
        str(concurrency),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


METRICS = (
    ("requests_per_second", "requests/s"),
    ("cpu_us_per_request", "CPU µs/request"),
    ("peak_rss_growth_mib", "peak RSS growth MiB"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--driver", choices=DRIVERS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--scale", type=int, default=4, help="size factor of the memory table")
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(one_measurement(args.driver, args.requests, args.concurrency)))
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import table

    samples: dict[str, list[dict[str, float]]] = {driver: [] for driver in DRIVERS}
    for repetition in range(args.repetitions):
        # Rotate the order, so that no driver always runs on a warmer machine.
        shift = repetition % len(DRIVERS)
        for driver in DRIVERS[shift:] + DRIVERS[:shift]:
            result = run_driver(driver, args.requests, args.concurrency)
            samples[driver].append(result)
            print(
                f"  rep {repetition + 1}/{args.repetitions} {driver:>6}: {result}", file=sys.stderr
            )
    print(
        f"batch: {args.requests:,} requests at concurrency {args.concurrency}, in-process "
        f"simulator, asyncio, {args.repetitions} repetitions\n"
    )
    for metric, unit in METRICS:
        values = {driver: [sample[metric] for sample in samples[driver]] for driver in DRIVERS}
        print(table(values, unit=unit, baseline="gather") + "\n")

    bigger = args.requests * args.scale
    growth = {
        driver: statistics.median(
            run_driver(driver, bigger, args.concurrency)["peak_rss_growth_mib"]
            for _ in range(max(1, args.repetitions // 2))
        )
        for driver in DRIVERS
    }
    small = {
        driver: statistics.median(sample["peak_rss_growth_mib"] for sample in samples[driver])
        for driver in DRIVERS
    }
    print(f"| driver | peak RSS growth, {args.requests:,} requests | {bigger:,} requests |")
    print("|---|---:|---:|")
    for driver in DRIVERS:
        print(f"| {driver} | {small[driver]:.1f} MiB | {growth[driver]:.1f} MiB |")


if __name__ == "__main__":
    main()
