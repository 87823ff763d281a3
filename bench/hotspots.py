"""Where the time goes: profile one driver in one scenario of the suite, and print the top costs.

    python bench/hotspots.py a c d                 # ctgt-async, cProfile of the measured part
    python bench/hotspots.py a --tool py-spy       # sampling profiler (pip install py-spy)
    python bench/hotspots.py c --driver openai --top 30
    python bench/hotspots.py e                     # import time, module by module

Scenarios are the suite's letters: ``a`` one long stream, ``c`` concurrent requests (asyncio;
``c_trio`` under trio), ``d`` concurrent streams, ``e`` import. The server, sizes and client
are those of ``bench/run.py`` (``--quick`` for its small sizes).

``cProfile`` (the default) records only the measured part, exactly, but adds a cost to every
Python call, which inflates call-heavy code. ``py-spy`` samples the whole process at 1 kHz
without pausing it; samples in imports and in building the client are dropped, the short
warm-up is not (`--scale` makes the streams longer, for more samples). Both print
each function's inclusive share (time with it on the stack) and self share of the total.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from _harness import pinned  # noqa: E402

PROFILED = ("a", "c", "c_trio", "d", "e")
SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")
# py-spy samples the whole process: leave out imports and building the client.
SETUP = re.compile(r"_find_and_load |\w+Driver\.__init__ ")


def short(path: str) -> str:
    """A file path without the interpreter's or the repository's prefix."""
    path = SITE.sub("", path)
    return path.replace(str(run.ROOT) + os.sep, "")


def print_table(title: str, rows: list[tuple[float, float, str]], top: int) -> None:
    print(f"\n{title}\n")
    print("| inclusive | self | function |")
    print("|---:|---:|---|")
    for inclusive, own, name in rows[:top]:
        print(f"| {inclusive:5.1f}% | {own:5.1f}% | `{name}` |")


def report_cprofile(path: str, top: int) -> None:
    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        own, cumulative = entry[2], entry[3]
        name = f"{function} ({short(file)}:{line})" if line else function
        rows.append((cumulative / total * 100, own / total * 100, name))
    print(f"cProfile of the measured part: {total:.3f} s in total")
    print_table("By inclusive time", sorted(rows, reverse=True), top)
    print_table("By self time", sorted(rows, key=lambda row: row[1], reverse=True), top)


def report_py_spy(path: str, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = dropped = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if any(SETUP.match(frame) for frame in frames):
            dropped += count
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    frames_seen = set(inclusive)
    rows = [(inclusive[f] / total * 100, own[f] / total * 100, short(f)) for f in frames_seen]
    print(f"py-spy: {total} samples ({dropped} more in imports or client setup, left out)")
    print_table("By inclusive time", sorted(rows, reverse=True), top)
    print_table("By self time", sorted(rows, key=lambda row: row[1], reverse=True), top)


def report_imports(driver: str, top: int) -> None:
    module = run.MODULES[driver]
    command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    subprocess.run(command, capture_output=True, check=True)  # bytecode compiled, caches warm
    stderr = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            own, cumulative, indent, name = match.groups()
            rows.append((int(cumulative), int(own), len(indent) // 2, name))
    total = max(row[0] for row in rows if row[3] == module)
    print(f"`import {module}`: {total / 1000:.0f} ms by -X importtime (one run)")
    print("\n| cumulative | self | depth | module |\n|---:|---:|---:|---|")
    for cumulative, own, depth, name in sorted(rows, reverse=True)[:top]:
        print(f"| {cumulative / 1000:6.1f} ms | {own / 1000:5.1f} ms | {depth} | `{name}` |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="+", choices=PROFILED)
    parser.add_argument("--driver", default="ctgt", choices=run.DRIVERS)
    parser.add_argument("--tool", default="cprofile", choices=("cprofile", "py-spy"))
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="the small sizes of --quick")
    parser.add_argument(
        "--scale", type=int, default=1, help="multiply the streams' chunk counts (more samples)"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="where profiles are kept")
    args = parser.parse_args()
    sizes = run.QUICK if args.quick else run.Sizes()
    sizes = dataclasses.replace(
        sizes,
        stream_chunks=sizes.stream_chunks * args.scale,
        streams_chunks=sizes.streams_chunks * args.scale,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if args.tool == "py-spy" and not os.path.exists(py_spy):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    address: dict[str, str] = {}
    jobs = {job.key: job for job in run.plan(sizes, (args.driver,), lambda: address["url"])}
    with run.loopback_server(sizes, out / "server.log") as server:
        address["url"] = f"http://127.0.0.1:{server['port']}/v1"
        for scenario in args.scenarios:
            print(f"\n## ({scenario}) {args.driver}, {jobs[scenario].label}\n")
            if scenario == "e":
                report_imports(args.driver, args.top)
                continue
            command = jobs[scenario].argv(args.driver)  # type: ignore[misc]
            command += ["--server-pid", str(server["pid"])]
            name = f"profile-{scenario}-{args.driver}"
            if args.tool == "cprofile":
                path = str(out / f"{name}.prof")
                subprocess.run(pinned([*command, "--profile", path], 0), check=True)
                report_cprofile(path, args.top)
            else:
                path = str(out / f"{name}.py-spy.txt")
                with tempfile.TemporaryFile() as sink:
                    spy = [py_spy, "record", "-r", "1000", "-f", "raw", "-o", path]
                    spy += ["--nonblocking", "--"]
                    subprocess.run(pinned([*spy, *command], 0), check=True, stderr=sink)
                report_py_spy(path, args.top)
            print(f"\n(raw profile: {short(path)})")


if __name__ == "__main__":
    main()
