"""A 100,000-line job runs in flat memory.

The job runs in a fresh process: the CLI's own pipeline (`BatchJob` reading and writing the
files, `Batch` running the requests, `run_batch_job` tying them together), with one seam:
each request is answered at once by a stub instead of a round trip through the client and
the simulator. That round trip costs about 0.4 ms of CPU, which would make 100,000 lines a
40-second test; what it allocates lives only while the request is in flight, and the client
tests check that nothing of it stays behind.

The peak resident memory is read after 10,000 results and at the end. Between the two, the
only thing allowed to grow is the table of custom ids (8 bytes a slot: 2 MiB for 100,000
ids), plus allocator slack. Keeping the results, or reading the input eagerly, would cost
hundreds of megabytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LINES = 100_000
FIRST_MARK = 10_000
ALLOWED_GROWTH = 6 * 1024 * 1024

SCRIPT = """
import json, resource, sys
from pathlib import Path

import anyio, anyio.lowlevel

from ctgt_async import ChatCompletion
from ctgt_async._batch import Batch
from ctgt_async._batch_files import BatchJob, OutputFile, count_lines
from ctgt_async._cli import run_batch_job
from ctgt_async._progress import Console

source, output, first_mark = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
# ru_maxrss is in KiB on Linux and in bytes on macOS.
UNIT = 1 if sys.platform == "darwin" else 1024
COMPLETION = ChatCompletion.model_validate({
    "id": "chatcmpl-1", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer."}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
})
marks = {}


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * UNIT


async def answer(params):
    await anyio.lowlevel.checkpoint()
    return COMPLETION


def on_progress(progress):
    if progress.done == first_mark:
        marks["first"] = peak()


async def main():
    out = OutputFile(output)
    job = BatchJob(source, out)
    batch = Batch(job.requests(), call=answer, limiter=None, concurrency=64,
                  on_progress=on_progress)
    console = Console(sys.stderr, bar=False, quiet=True)
    await run_batch_job(job, batch, console, total_lines=count_lines(source))
    out.close()
    marks["succeeded"] = job.counts.succeeded


anyio.run(main)
marks["last"] = peak()
print(json.dumps(marks))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="reads ru_maxrss from the resource module")
def test_a_100_000_line_job_runs_in_flat_memory(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    with source.open("w", encoding="utf-8") as file:
        for index in range(LINES):
            body = {"model": "m", "messages": [{"role": "user", "content": f"question {index}"}]}
            file.write(json.dumps({"custom_id": f"request-{index}", "body": body}) + "\n")
    output = tmp_path / "out.jsonl"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script), str(source), str(output), str(FIRST_MARK)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    marks = json.loads(result.stdout)
    assert marks["succeeded"] == LINES
    assert output.read_bytes().count(b"\n") == LINES
    growth = marks["last"] - marks["first"]
    assert growth <= ALLOWED_GROWTH, f"peak memory grew by {growth / 2**20:.1f} MiB"
