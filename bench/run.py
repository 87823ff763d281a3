"""The benchmark suite in one command: ctgt-async beside openai and the raw-httpx floor.

    python bench/run.py                    # 7 repetitions, a few minutes; also `nox -s bench`
    python bench/run.py --quick            # every scenario once at small sizes (CI: it runs)
    python bench/run.py --repetitions 3 --scenarios a,c
    python bench/run.py --update-docs      # also copy the table and chart into docs/assets/
    python bench/run.py --from-json bench/results/latest.json   # re-render saved numbers

How it measures:

* ``bench/server.py``, a raw asyncio HTTP/1.1 server answering from pre-rendered bytes, runs
  in its own process for the whole run. Every client measurement reads the server's CPU time
  over its measured part, and the output shows it as a share of one core.
* With two or more cores and ``taskset``, the server is pinned to core 1 and every client
  process to core 0, so that they never compete for a core.
* Every measurement runs in a fresh interpreter (``bench/scenarios.py``, ``stream_parse.py``
  or a bare ``import``) that imports one driver, warms up outside the measured part, and
  reports ``time.process_time()`` around it.
* Within each repetition every scenario runs every driver, in an order rotated from one
  repetition to the next; ratios are taken within a repetition, then their median.

Scenarios (the rows of the performance issue): (a) one stream of 20,000 chunks over loopback,
(b) the same bytes through an in-process mock transport, (c) 2,000 non-streaming requests at
concurrency 64 under asyncio and under trio, (d) 256 concurrent streams of 200 chunks (CPU and
peak RSS), (e) import time, (f) the batch API against a hand-written task group + semaphore.

Output: ``bench/results/latest.md`` (also printed), ``latest.json`` (every raw number) and
``latest.png`` (needs matplotlib). The suite is never a pass/fail gate on speed: it exits
non-zero only when a measurement crashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import can_pin, pinned  # noqa: E402
from _report import Goal, Results, Row, chart, goals_table, main_table, server_table  # noqa: E402

SERVER_CPU = 1
CLIENT_CPU = 0
DRIVERS = ("httpx", "ctgt", "openai", "aiohttp")
MODULES = {"httpx": "httpx", "ctgt": "ctgt_async", "openai": "openai", "aiohttp": "aiohttp"}
OPTIONAL = {"openai": "pip install openai (the bench extra)", "aiohttp": "pip install aiohttp"}
VERSIONS = (
    "ctgt-async",
    "httpx",
    "httpcore",
    "openai",
    "httpx2",
    "httpcore2",
    "anyio",
    "trio",
    "pydantic",
    "aiohttp",
)
IMPORT_CODE = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


@dataclasses.dataclass(frozen=True)
class Sizes:
    stream_chunks: int = 20_000
    requests: int = 2_000
    concurrency: int = 64
    streams: int = 256
    streams_chunks: int = 200
    import_samples: int = 5


QUICK = Sizes(
    stream_chunks=2_000,
    requests=200,
    concurrency=64,
    streams=32,
    streams_chunks=50,
    import_samples=1,
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One measurement, run once per driver and repetition."""

    key: str
    label: str
    drivers: tuple[str, ...]
    argv: Callable[[str], list[str]] | None  # None: the import-time measurement
    server: bool = True


def plan(sizes: Sizes, drivers: tuple[str, ...], url: Callable[[], str]) -> list[Job]:
    python = sys.executable
    scenarios = str(HERE / "scenarios.py")

    def client(scenario: str, *extra: str) -> Callable[[str], list[str]]:
        def argv(driver: str) -> list[str]:
            head = [python, scenarios, "--url", url(), "--scenario", scenario, "--driver", driver]
            return [*head, *extra]

        return argv

    def in_process(driver: str) -> list[str]:
        name = "floor" if driver == "httpx" else driver
        chunks = str(sizes.stream_chunks)
        return [python, str(HERE / "stream_parse.py"), "--driver", name, "--chunks", chunks]

    no_aiohttp = tuple(d for d in drivers if d != "aiohttp")
    c = ("--requests", str(sizes.requests), "--concurrency", str(sizes.concurrency))
    trio = (*c, "--backend", "trio")
    d = ("--streams", str(sizes.streams), "--chunks", str(sizes.streams_chunks))
    return [
        Job("a", "(a) one stream", drivers, client("stream", "--chunks", str(sizes.stream_chunks))),
        Job("b", "(b) in-process", no_aiohttp, in_process, server=False),
        Job("c", "(c) requests, asyncio", drivers, client("requests", *c)),
        Job("c_trio", "(c) requests, trio", no_aiohttp, client("requests", *trio)),
        Job("d", "(d) concurrent streams", drivers, client("streams", *d)),
        Job("e", "(e) import", drivers, None, server=False),
        Job("f", "(f) batch API", ("hand", "batch"), client("batch", *c)),
    ]


def rows_for(sizes: Sizes) -> tuple[list[Row], list[Row]]:
    """The main table's rows, and the batch table's."""
    s = sizes
    stream = f"one stream of {s.stream_chunks:,} chunks"
    requests = f"{s.requests:,} requests at concurrency {s.concurrency}"
    streams = f"{s.streams} concurrent streams × {s.streams_chunks} chunks"
    main = [
        Row("a", "a", f"(a) {stream} over loopback: CPU per chunk", "µs/chunk",
            short=f"(a) {stream}, loopback"),
        Row("b", "b", f"(b) the same {s.stream_chunks:,} chunks in process (MockTransport): "
            "CPU per chunk", "µs/chunk", short="(b) the same bytes, in process"),
        Row("c", "c", f"(c) {requests}, asyncio: CPU per request", "µs/request",
            short=f"(c) {requests}, asyncio"),
        Row("c_trio", "c_trio", f"(c) {requests}, trio: CPU per request", "µs/request",
            short=f"(c) {requests}, trio"),
        Row("d", "d", f"(d) {streams}: CPU per chunk", "µs/chunk", short=f"(d) {streams}: CPU"),
        Row("d_rss", "d", f"(d) {streams}: peak RSS", "MiB", field="rss_mib",
            short=f"(d) {streams}: peak RSS"),
        Row("e", "e", "(e) `import` of the package, fresh process", "ms",
            short="(e) import time"),
    ]  # fmt: skip
    batch = [
        Row("f", "f", f"(f) {requests} with ctgt-async: CPU per request", "µs/request",
            short=f"(f) batch API, {requests}"),
    ]  # fmt: skip
    return main, batch


GOALS = [
    Goal("(a) stream over loopback: ctgt ÷ httpx", "a", "ctgt", "httpx", 1.25),
    Goal("(b) stream in process: ctgt ÷ httpx", "b", "ctgt", "httpx", 1.25),
    Goal("(a) stream over loopback: ctgt ÷ openai", "a", "ctgt", "openai", 1 / 6),
    Goal("(b) stream in process: ctgt ÷ openai", "b", "ctgt", "openai", 1 / 6),
    Goal("(d) concurrent streams, peak RSS: ctgt ÷ httpx", "d_rss", "ctgt", "httpx", 1.3),
    Goal("(d) concurrent streams, CPU: ctgt ÷ httpx", "d", "ctgt", "httpx", 1.25, stated=False),
    Goal("(c) concurrent requests, asyncio: ctgt ÷ openai", "c", "ctgt", "openai", 0.5),
    Goal("(c) concurrent requests, trio: ctgt ÷ openai", "c_trio", "ctgt", "openai", 1.0),
    Goal("(e) import time: ctgt ÷ openai", "e", "ctgt", "openai", 0.35),
    Goal("(f) batch API ÷ hand-written loop", "f", "batch", "hand", 1.10),
]
RATIOS = [("ctgt", "httpx"), ("ctgt", "openai"), ("openai", "httpx"), ("aiohttp", "httpx")]


# --- the server -----------------------------------------------------------------------------


@contextmanager
def loopback_server(sizes: Sizes, log: Path) -> Iterator[dict[str, Any]]:
    """Start ``server.py`` (pinned to its own core) and yield its ``{"port", "pid"}``."""
    prerender = f"10,50,{sizes.stream_chunks},{sizes.streams_chunks}"
    command = [sys.executable, str(HERE / "server.py"), "--prerender", prerender]
    command += ["--exit-on-stdin-eof"]
    if can_pin():
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark server did not start; see {log}")
        info = json.loads(line)
        info["process"] = process
        yield info
    finally:
        if process.stdin:
            process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- measuring ------------------------------------------------------------------------------


def run_once(command: list[str]) -> Any:
    """One fresh client process on the client core: its last line of output (JSON), or
    ``{"error": ...}`` saying why it failed."""
    try:
        completed = subprocess.run(
            pinned(command, CLIENT_CPU), capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-15:]
        return {"error": "\n".join(tail) or f"exit code {completed.returncode}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def import_time(driver: str, samples: int) -> dict[str, Any]:
    """Median wall time (ms) of ``import MODULE`` over ``samples`` fresh processes."""
    code = IMPORT_CODE.format(MODULES[driver])
    times = []
    for _ in range(samples):
        result = run_once([sys.executable, "-c", code])
        if isinstance(result, dict):
            return result  # an error
        times.append(float(result) * 1000)
    return {"value": statistics.median(times), "samples": times, "unit": "ms"}


def describe(record: dict[str, Any]) -> str:
    if "skipped" in record:
        return f"skipped: {record['skipped']}"
    if "error" in record:
        return "FAILED:\n    " + record["error"].replace("\n", "\n    ")
    text = f"{record['value']:10.2f} {record.get('unit', '')}"
    if record.get("server_util") is not None:
        text += f"  (server {record['server_util'] * 100:4.1f}% of a core)"
    if record.get("rss_mib") is not None:
        text += f"  peak RSS {record['rss_mib']:.0f} MiB"
    return text


# --- what produced the numbers --------------------------------------------------------------


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    found.update((name, version(name)) for name in VERSIONS)
    found["ctgt-async"] += source_state()
    return found


def source_state() -> str:
    """`` (git abc1234)``, noting uncommitted changes to the package, or ``""`` outside git."""

    def git(*arguments: str) -> str:
        command = ["git", "-C", str(ROOT), *arguments]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "ctgt_async")
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" (git {commit}{', with uncommitted changes to ctgt_async/' if dirty else ''})"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": nproc or str(os.cpu_count()),
        "cpu": model,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "pinned": can_pin(),
    }


def header(meta: dict[str, Any]) -> str:
    m, v = meta["machine"], meta["versions"]
    pinning = (
        f"server on core {SERVER_CPU}, every client process on core {CLIENT_CPU} (`taskset`)"
        if m["pinned"]
        else "not pinned (fewer than two cores, or no `taskset`)"
    )
    listed = ", ".join(f"{name} {version}" for name, version in v.items())
    return "\n".join(
        [
            f"Command: `{meta['command']}` ({meta['date']}; {meta['repetitions']} repetition"
            f"{'s' if meta['repetitions'] != 1 else ''}, drivers interleaved; took "
            f"{meta['elapsed_s'] / 60:.1f} min).  ",
            f"Machine: {m['nproc']} cores (`nproc`), {m['cpu']}, {m['system']}; {pinning}.  ",
            f"Versions: {listed}.",
        ]
    )


def render(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Markdown report, and what the chart needs, from the saved data."""
    meta, results = data["meta"], data["results"]
    sizes = Sizes(**meta["sizes"])
    drivers = [d for d in DRIVERS if d in meta["drivers"]]
    main_rows, batch_rows = rows_for(sizes)
    jobs = {job.key: job for job in plan(sizes, tuple(drivers), lambda: "")}
    server_jobs = {key: job.label for key, job in jobs.items() if job.server}
    batch_records = results.get("f", {}).get("batch", [])
    skipped = next((r["skipped"] for r in batch_records if "skipped" in r), None)
    sections = [
        header(meta),
        "",
        "Each cell: the median over the repetitions (min–max). Each ratio: the median of the "
        "ratios taken within each repetition (min–max). Lower is better everywhere.",
        "",
        main_table(results, main_rows, drivers, RATIOS),
        "",
        "**The batch API** (ctgt-async only: its batch runner against a hand-written anyio "
        "task group + semaphore over the same client, against the same server).",
        "",
        main_table(results, batch_rows, ["hand", "batch"], [("batch", "hand")]),
    ]
    if skipped:
        sections += ["", f"Batch API: skipped — {skipped}."]
    sections += [
        "",
        "**Goals** (from the performance issue), as ratios measured in this run.",
        "",
        goals_table(results, main_rows + batch_rows, GOALS),
        "",
        "**The loopback server's CPU** during each measured part, as a share of one core: it "
        "is never the bottleneck while this stays well below 100%.",
        "",
        server_table(results, server_jobs, [*drivers, "hand", "batch"]),
    ]
    errors = [
        f"- {job} / {driver}, repetition {index + 1}: {record['error'].splitlines()[-1]}"
        for job, per_driver in results.items()
        for driver, records in per_driver.items()
        for index, record in enumerate(records)
        if "error" in record
    ]
    if errors:
        sections += ["", "**Failed measurements**", "", *errors]
    drivers_of = {key: job.drivers for key, job in jobs.items()}
    return "\n".join(sections) + "\n", {"rows": main_rows + batch_rows, "drivers_of": drivers_of}


def write_outputs(data: dict[str, Any], out: Path, *, update_docs: bool) -> None:
    markdown, chart_data = render(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "latest.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    meta = data["meta"]
    title = (
        f"ctgt-async benchmarks: median and min–max of {meta['repetitions']} "
        f"repetition{'s' if meta['repetitions'] != 1 else ''} · {meta['machine']['cpu']}, "
        f"{meta['versions']['python']} · lower is better"
    )
    problem = chart(
        results=data["results"], path=str(out / "latest.png"), title=title, **chart_data
    )
    if problem:
        print(f"No chart: {problem}.", file=sys.stderr)
    written = [out / "latest.md", out / "latest.json"] + ([] if problem else [out / "latest.png"])
    print("Wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    if update_docs:
        assets = ROOT / "docs" / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "latest.md", assets / "bench.md")
        if not problem:
            shutil.copyfile(out / "latest.png", assets / "bench.png")
        print(f"Copied the table{'' if problem else ' and chart'} to {assets}", file=sys.stderr)


# --- the run --------------------------------------------------------------------------------


def available_drivers(requested: list[str]) -> tuple[str, ...]:
    chosen = []
    for driver in requested:
        if driver not in MODULES:
            raise SystemExit(f"unknown driver {driver!r}; choose from {', '.join(DRIVERS)}")
        if importlib.util.find_spec(MODULES[driver]) is None:
            hint = OPTIONAL.get(driver, "it is required")
            print(f"Leaving out {driver}: not importable ({hint}).", file=sys.stderr)
            continue
        chosen.append(driver)
    return tuple(chosen)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else Sizes()
    repetitions = 1 if args.quick else args.repetitions
    drivers = available_drivers(args.drivers.split(","))
    address: dict[str, str] = {}
    jobs = [
        job
        for job in plan(sizes, drivers, lambda: address["url"])
        if job.key.split("_")[0] in args.scenarios.split(",")
    ]
    if importlib.util.find_spec("trio") is None and any(j.key == "c_trio" for j in jobs):
        print("Leaving out the trio row of (c): trio is not installed.", file=sys.stderr)
        jobs = [job for job in jobs if job.key != "c_trio"]
    results: Results = {job.key: {driver: [] for driver in job.drivers} for job in jobs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not can_pin():
        print("Fewer than two cores or no taskset: client and server are not pinned.")
    with loopback_server(sizes, out / "server.log") as server:
        address["url"] = f"http://127.0.0.1:{server['port']}/v1"
        server_pid = str(server["pid"])
        if any(job.key == "e" for job in jobs):
            for driver in drivers:  # compile bytecode once, outside the measurements
                import_time(driver, 1)
        for repetition in range(repetitions):
            for job in jobs:
                shift = repetition % len(job.drivers)
                for driver in job.drivers[shift:] + job.drivers[:shift]:
                    if job.argv is None:
                        record = import_time(driver, sizes.import_samples)
                    else:
                        command = job.argv(driver)
                        if job.server:
                            command += ["--server-pid", server_pid]
                        record = run_once(command)
                    results[job.key][driver].append(record)
                    print(
                        f"[{repetition + 1}/{repetitions}] {job.label:<24} {driver:>8}: "
                        f"{describe(record)}",
                        file=sys.stderr,
                        flush=True,
                    )
            if server["process"].poll() is not None:
                raise RuntimeError(f"the benchmark server died; see {out / 'server.log'}")
    command = shlex.join(["python", "bench/run.py", *sys.argv[1:]])
    meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repetitions": repetitions,
        "elapsed_s": time.perf_counter() - started,
        "sizes": dataclasses.asdict(sizes),
        "drivers": list(drivers),
        "machine": machine(),
        "versions": versions(),
    }
    return {"meta": meta, "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repetitions", type=int, default=7, help="default: 7")
    parser.add_argument("--quick", action="store_true", help="once, at small sizes (for CI)")
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="default: all importable")
    parser.add_argument(
        "--scenarios", default="a,b,c,d,e,f", help="letters of the rows to run (default: all)"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="default: bench/results")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="copy the table and chart to docs/assets/bench.{md,png}",
    )
    parser.add_argument("--from-json", metavar="FILE", help="re-render saved results, run nothing")
    args = parser.parse_args()
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
    else:
        data = run(args)
    write_outputs(data, Path(args.out), update_docs=args.update_docs)
    failed = any(
        "error" in record
        for per_driver in data["results"].values()
        for records in per_driver.values()
        for record in records
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
