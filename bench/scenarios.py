"""One measurement in a fresh process: one driver, one scenario, against ``bench/server.py``.

``bench/run.py`` starts the server and runs this script once per driver, scenario and
repetition. Each run imports only its own driver, warms up outside the measured part, then
prints one JSON line: client CPU (``time.process_time()``, every thread of this process) per
unit of work, wall time, peak RSS, and the server's CPU time over the same window, read from
``/proc`` so that every result shows whether the server kept up.

    python bench/server.py --port 8765 &
    python bench/scenarios.py --url http://127.0.0.1:8765/v1 --scenario stream --driver ctgt
    python bench/scenarios.py --url ... --scenario requests --driver openai --backend trio

Scenarios:

* ``stream``: one stream of ``--chunks`` chunks; CPU µs per chunk.
* ``requests``: ``--requests`` non-streaming requests, ``--concurrency`` at a time (that many
  worker tasks); CPU µs per request.
* ``streams``: ``--streams`` concurrent streams of ``--chunks`` chunks; CPU µs per chunk.
* ``batch``: ``--requests`` requests at ``--concurrency`` through ctgt-async's batch API
  (driver ``batch``) or a hand-written anyio task group and semaphore over the same client
  (driver ``hand``); CPU µs per request. Skipped (with the reason) while the package has no
  batch API.

Drivers: ``ctgt`` (``AsyncCTGT()`` as constructed by default), ``openai`` (``AsyncOpenAI()``,
on its own httpx2 client), ``httpx`` (the floor: raw httpx 0.28 doing the least any client
must: post, read, ``json.loads``; for streams ``aiter_bytes``, a split on blank lines and
``json.loads``), ``aiohttp`` (the same least work on aiohttp, asyncio only).
"""

from __future__ import annotations

import argparse
import glob
import inspect
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

DRIVERS = ("httpx", "ctgt", "openai", "aiohttp")
BATCH_DRIVERS = ("hand", "batch")
SCENARIOS = ("stream", "requests", "streams", "batch")
API_KEY = "sk-bench"
MODEL = "gemini-2.5-flash-lite"
MESSAGES = [{"role": "user", "content": "Tell me a story."}]
# The pool limits that ctgt-async and openai both use by default, given to the raw clients
# too, so that every driver keeps the same number of connections alive.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100


# --- drivers --------------------------------------------------------------------------------


class Driver:
    """One client library: open it, send one request, read one stream."""

    async def __aenter__(self) -> Driver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def complete(self) -> None:
        raise NotImplementedError

    async def stream(self, chunks: int) -> int:
        """Read a stream of ``chunks`` events; return how many were parsed."""
        raise NotImplementedError


def _body(stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


def _split_events(buffer: bytes, piece: bytes) -> tuple[bytes, int]:
    """The floor's parser: append, cut at blank lines, ``json.loads`` each ``data:`` payload."""
    buffer += piece
    *events, buffer = buffer.split(b"\n\n")
    count = 0
    for event in events:
        data = event[6:]
        if data != b"[DONE]":
            json.loads(data)
            count += 1
    return buffer, count


class HttpxDriver(Driver):
    def __init__(self, base_url: str) -> None:
        import httpx

        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
        )
        self.client = httpx.AsyncClient(limits=limits, timeout=600.0)
        self.url = f"{base_url}/chat/completions"
        self.headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def complete(self) -> None:
        response = await self.client.post(self.url, content=_body(False), headers=self.headers)
        assert response.status_code == 200, response.status_code
        json.loads(response.content)

    async def stream(self, chunks: int) -> int:
        headers = {**self.headers, "x-bench-chunks": str(chunks)}
        count = 0
        buffer = b""
        async with self.client.stream(
            "POST", self.url, content=_body(True), headers=headers
        ) as response:
            assert response.status_code == 200, response.status_code
            async for piece in response.aiter_bytes():
                buffer, parsed = _split_events(buffer, piece)
                count += parsed
        return count


class AiohttpDriver(Driver):
    def __init__(self, base_url: str) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
        self.session = aiohttp.ClientSession(connector=connector)
        self.url = f"{base_url}/chat/completions"
        self.headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    async def complete(self) -> None:
        async with self.session.post(self.url, data=_body(False), headers=self.headers) as response:
            assert response.status == 200, response.status
            json.loads(await response.read())

    async def stream(self, chunks: int) -> int:
        headers = {**self.headers, "x-bench-chunks": str(chunks)}
        count = 0
        buffer = b""
        async with self.session.post(self.url, data=_body(True), headers=headers) as response:
            assert response.status == 200, response.status
            async for piece in response.content.iter_any():
                buffer, parsed = _split_events(buffer, piece)
                count += parsed
        return count


class _SDKDriver(Driver):
    """ctgt-async and openai share the call shape; only their construction differs."""

    client: Any

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()

    async def complete(self) -> None:
        await self.client.chat.completions.create(model=MODEL, messages=MESSAGES)

    async def stream(self, chunks: int) -> int:
        stream = await self.client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-bench-chunks": str(chunks)},
        )
        count = 0
        async with stream:
            async for _ in stream:
                count += 1
        return count


class CtgtDriver(_SDKDriver):
    def __init__(self, base_url: str) -> None:
        from ctgt_async import AsyncCTGT

        self.client = AsyncCTGT(api_key=API_KEY, base_url=base_url)

    async def __aenter__(self) -> Driver:
        await self.client.__aenter__()
        return self


class OpenAIDriver(_SDKDriver):
    def __init__(self, base_url: str) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(api_key=API_KEY, base_url=base_url)


DRIVER_CLASSES: dict[str, Callable[[str], Driver]] = {
    "httpx": HttpxDriver,
    "aiohttp": AiohttpDriver,
    "ctgt": CtgtDriver,
    "openai": OpenAIDriver,
}


# --- measuring ------------------------------------------------------------------------------


def server_cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by process ``pid`` (all its threads), or None where unreadable.

    ``/proc/PID/task/*/schedstat`` counts nanoseconds; ``/proc/PID/stat`` (clock ticks, usually
    10 ms) is the fallback.
    """
    if pid is None:
        return None
    try:
        total = 0
        tasks = glob.glob(f"/proc/{pid}/task/*/schedstat")
        for path in tasks:
            with open(path) as file:
                total += int(file.read().split()[0])
        if tasks:
            return total / 1e9
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# Set by --profile: a cProfile.Profile switched on only inside the measured part.
PROFILER: Any = None


class Window:
    """The measured part: client CPU and wall time, and the server's CPU over the same span."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Window:
        self.server_start = server_cpu_seconds(self.server_pid)  # read before the clocks start
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()
        if PROFILER is not None:
            PROFILER.enable()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if PROFILER is not None:
            PROFILER.disable()
        cpu = time.process_time() - self.cpu_start
        wall = time.perf_counter() - self.wall_start
        server_end = server_cpu_seconds(self.server_pid)
        server = None
        if self.server_start is not None and server_end is not None:
            server = server_end - self.server_start
        self.result = {
            "cpu_s": cpu,
            "wall_s": wall,
            "server_cpu_s": server,
            "server_util": None if server is None or wall <= 0 else server / wall,
        }

    def per_unit(self, units: int, unit: str) -> dict[str, Any]:
        return {
            "value": self.result["cpu_s"] / units * 1e6,
            "unit": unit,
            "units": units,
            **self.result,
        }


async def fan_out(total: int, concurrency: int, work: Callable[[], Awaitable[Any]]) -> None:
    """Run ``work`` ``total`` times on ``concurrency`` worker tasks."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await work()

    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, total)):
            group.start_soon(worker)


async def scenario_stream(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    assert await driver.stream(50) == 50  # warm-up: imports, first connection, lazy setup
    with Window(args.server_pid) as window:
        count = await driver.stream(args.chunks)
    assert count == args.chunks, count
    return window.per_unit(count, "µs/chunk")


async def scenario_requests(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    # Warm-up: one full round at the measured concurrency opens the pool's connections.
    await fan_out(args.concurrency, args.concurrency, driver.complete)
    with Window(args.server_pid) as window:
        await fan_out(args.requests, args.concurrency, driver.complete)
    return window.per_unit(args.requests, "µs/request")


async def scenario_streams(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    assert await driver.stream(10) == 10
    counts: list[int] = []

    async def one() -> None:
        counts.append(await driver.stream(args.chunks))

    with Window(args.server_pid) as window:
        async with anyio.create_task_group() as group:
            for _ in range(args.streams):
                group.start_soon(one)
    assert counts == [args.chunks] * args.streams, counts
    return window.per_unit(sum(counts), "µs/chunk")


# --- the batch API --------------------------------------------------------------------------

# Where the batch API may live, probed in order. When it lands under another name or with
# another signature, adjust `find_batch_api` and `_drain`: nothing else depends on its shape.
BATCH_PLACES = (
    "client.batch",
    "client.chat.completions.batch",
    "ctgt_async.batch",
    "ctgt_async.run_batch",
)
CONCURRENCY_NAMES = ("concurrency", "max_concurrency", "limit")


def find_batch_api(client: Any) -> tuple[Callable[[int, int], Awaitable[int]] | None, str]:
    """A runner ``(total, concurrency) -> results`` over the batch API, or None and why not."""
    import ctgt_async

    roots = {"client": client, "ctgt_async": ctgt_async}
    for place in BATCH_PLACES:
        root, *names = place.split(".")
        target: Any = roots[root]
        for name in names:
            target = getattr(target, name, None)
        if target is None:
            continue
        if not callable(target) and callable(getattr(target, "run", None)):
            target = target.run  # a module or namespace with a run() function
        if not callable(target):
            continue
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        concurrency_name = next((n for n in CONCURRENCY_NAMES if n in parameters), None)
        if concurrency_name is None:
            return None, (
                f"{place} exists but takes none of {CONCURRENCY_NAMES}; adapt find_batch_api "
                "in bench/scenarios.py to its signature"
            )
        leading = (client,) if root == "ctgt_async" and "client" in parameters else ()
        return _batch_runner(target, leading, concurrency_name), place
    return None, (
        f"ctgt_async has no batch API yet (probed {', '.join(BATCH_PLACES)}); this scenario "
        "runs once it does"
    )


def _batch_runner(
    function: Callable[..., Any], leading: tuple[Any, ...], concurrency_name: str
) -> Callable[[int, int], Awaitable[int]]:
    async def run(total: int, concurrency: int) -> int:
        requests = ({"model": MODEL, "messages": MESSAGES} for _ in range(total))
        return await _drain(function(*leading, requests, **{concurrency_name: concurrency}))

    return run


async def _drain(results: Any) -> int:
    """Consume what the batch API returned: an async iterator of results, or an awaitable."""
    if hasattr(results, "__aenter__"):
        async with results as entered:
            return await _count_ok(entered)
    if hasattr(results, "__aiter__"):
        return await _count_ok(results)
    finished = await results
    return len(finished)


async def _count_ok(results: AsyncIterator[Any]) -> int:
    count = 0
    async for result in results:
        error = getattr(result, "error", None)
        if error is not None:
            raise RuntimeError(f"a batch request failed: {error!r}")
        count += 1
    return count


async def scenario_batch(driver_name: str, args: argparse.Namespace) -> dict[str, Any]:
    from ctgt_async import AsyncCTGT

    async with AsyncCTGT(api_key=API_KEY, base_url=args.url) as client:

        async def hand(total: int, concurrency: int) -> int:
            semaphore = anyio.Semaphore(concurrency)
            done = 0

            async def one() -> None:
                nonlocal done
                async with semaphore:
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
                done += 1

            async with anyio.create_task_group() as group:
                for _ in range(total):
                    group.start_soon(one)
            return done

        runner: Callable[[int, int], Awaitable[int]] | None = hand
        if driver_name == "batch":
            runner, why = find_batch_api(client)
            if runner is None:
                return {"skipped": why}
        assert runner is not None
        assert await runner(args.concurrency, args.concurrency) == args.concurrency
        with Window(args.server_pid) as window:
            done = await runner(args.requests, args.concurrency)
        assert done == args.requests, done
        return window.per_unit(done, "µs/request")


# --- entry point ----------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.scenario == "batch":
        return await scenario_batch(args.driver, args)
    scenario = {
        "stream": scenario_stream,
        "requests": scenario_requests,
        "streams": scenario_streams,
    }[args.scenario]
    async with DRIVER_CLASSES[args.driver](args.url) as driver:
        return await scenario(driver, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="the server's API root, ending in /v1")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--driver", choices=DRIVERS + BATCH_DRIVERS, required=True)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--server-pid", type=int, help="read this process's CPU time too")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--profile", metavar="FILE", help="write a cProfile (pstats) of the measured part"
    )
    args = parser.parse_args()
    if args.driver == "aiohttp" and args.backend != "asyncio":
        parser.error("aiohttp runs on asyncio only")
    if args.profile:
        import cProfile

        global PROFILER
        PROFILER = cProfile.Profile()
    result = anyio.run(measure, args, backend=args.backend)
    if PROFILER is not None:
        PROFILER.dump_stats(args.profile)
    result.update(
        scenario=args.scenario,
        driver=args.driver,
        backend=args.backend,
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / (1024 * 1024 if sys.platform == "darwin" else 1024),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
