"""``ctgt batch``: one result line per custom_id, whatever happens to the process.

Most tests call ``main()`` in process with ``--simulate``. The ones about signals run the
command as a subprocess, slowed down with ``--time-to-first-token`` so that it is caught
mid-run, and then run it again to check that it resumes to exactly one line per id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctgt_async._cli import main

CTGT = [sys.executable, "-m", "ctgt_async._cli"]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def write_input(path: Path, count: int, *, extra: bytes = b"") -> list[str]:
    ids = [f"request-{i}" for i in range(count)]
    with path.open("wb") as file:
        for custom_id in ids:
            body = {**BODY, "messages": [{"role": "user", "content": f"question {custom_id}"}]}
            file.write(json.dumps({"custom_id": custom_id, "body": body}).encode() + b"\n")
        file.write(extra)
    return ids


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def ids_in(path: Path) -> Counter[str | None]:
    return Counter(record["custom_id"] for record in records(path))


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTGT_")}
    env.update(extra)
    return env


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "in.jsonl", tmp_path / "out.jsonl"


# --- in process -----------------------------------------------------------------------------


def test_a_job_writes_one_line_per_id_and_a_summary(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    ids = write_input(source, 50)
    assert main(["batch", str(source), "-o", str(output), "--simulate"]) == 0
    assert ids_in(output) == Counter(ids)
    assert all(record["error"] is None for record in records(output))
    assert all(record["response"]["status_code"] == 200 for record in records(output))
    err = capsys.readouterr().err
    assert "ctgt batch: 50 lines in 0:0" in err
    assert "50 succeeded, 0 failed" in err

    # Run again: everything is done already, nothing is sent, nothing is added.
    before = output.read_bytes()
    assert main(["batch", str(source), "-o", str(output), "--simulate"]) == 0
    assert output.read_bytes() == before
    err = capsys.readouterr().err
    assert "resuming; 50 lines already written" in err
    assert "50 done by an earlier run" in err


def test_bad_lines_are_reported_with_their_number_and_answered_in_the_output(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    extra = (
        b"this is not json\n"
        + json.dumps({"custom_id": "request-1", "body": BODY}).encode()
        + b"\n"
        + json.dumps({"custom_id": "no-model", "body": {"messages": []}}).encode()
        + b"\n"
    )
    ids = write_input(source, 5, extra=extra)
    assert main(["batch", str(source), "-o", str(output), "--simulate"]) == 1
    err = capsys.readouterr().err
    assert f"ctgt: {source}:6: not valid JSON" in err
    assert f"ctgt: {source}:7: duplicate custom_id 'request-1', skipped" in err
    assert f"ctgt: {source}:8 (custom_id 'no-model'): body.model: is required" in err
    assert "5 succeeded, 0 failed, 2 bad lines, 1 duplicate skipped" in err
    assert "holds 2 error lines; run again with --retry-failed" in err
    assert ids_in(output) == Counter([*ids, None, "no-model"])
    by_id = {record["custom_id"]: record for record in records(output)}
    assert by_id[None]["error"]["line"] == 6
    assert by_id["no-model"]["error"]["code"] == "invalid_request"

    # On a second run the bad lines are known answered: still one line each.
    assert main(["batch", str(source), "-o", str(output), "--simulate"]) == 1
    assert ids_in(output) == Counter([*ids, None, "no-model"])


def test_shards_split_a_job_without_overlap(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = files
    ids = write_input(source, 60, extra=b"broken\n")
    found: Counter[str | None] = Counter()
    for k in (1, 2, 3):
        output = source.with_name(f"out-{k}.jsonl")
        main(["batch", str(source), "-o", str(output), "--simulate", "--shard", f"{k}/3"])
        shard = ids_in(output)
        assert 0 < len(shard) < 61
        found += shard
    assert found == Counter([*ids, None])
    assert "in other shards" in capsys.readouterr().err


def test_retry_failed_sends_the_failed_requests_again(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    ids = write_input(source, 20)
    failing = ["--simulate", "--fault-rate", "1", "--max-retries", "0", "--quiet"]
    assert main(["batch", str(source), "-o", str(output), *failing]) == 1
    assert all(record["error"] is not None for record in records(output))
    err = capsys.readouterr().err
    assert err.count(f"{source}:") == 10  # ten failures reported, then a pointer to the file
    assert f"further failures are not shown here; see {output}" in err
    assert main(["batch", str(source), "-o", str(output), "--simulate", "--retry-failed"]) == 0
    assert ids_in(output) == Counter(ids)
    assert all(record["error"] is None for record in records(output))
    assert "removed 20 error lines to retry" in capsys.readouterr().err


def test_plain_progress_lines_when_stderr_is_not_a_terminal(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    write_input(source, 40)
    slow = ["--time-to-first-token", "0.05", "--concurrency", "4", "--progress-interval", "0.1"]
    assert main(["batch", str(source), "-o", str(output), "--simulate", *slow]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^ctgt batch: \d+/40 lines \(\d+%\), \d+ ok, 0 failed, [\d.]+/s", err, re.M)
    assert "\x1b" not in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--shard", "0/3"], "must be K/N with 1 <= K <= N"),
        (["--shard", "4/3"], "must be K/N with 1 <= K <= N"),
        (["--concurrency", "0"], "must be at least 1"),
        (["--concurrency", "many"], "must be a whole number, got 'many'"),
        (["--max-retries", "-1"], "must not be negative"),
        (["--max-retries", "x"], "must be a whole number"),
        (["--progress-interval", "soon"], "must be a number of seconds"),
        (["--progress-interval", "-1"], "must be a finite number >= 0"),
    ],
)
def test_bad_options_are_usage_errors(
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    source, output = files
    write_input(source, 1)
    with pytest.raises(SystemExit) as exited:
        main(["batch", str(source), "-o", str(output), "--simulate", *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--token-delay", "1"], "ctgt: error: --token-delay: only goes with --simulate"),
        (["--simulate", "--fault-rate", "2"], "ctgt: error: --fault-rate: must be between 0 and 1"),
        (["-o", "IN"], "ctgt: error: --output: must not be the input file"),
        ([], "ctgt: error: No API key given"),
    ],
)
def test_bad_setups_are_one_line_and_exit_2(
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("CTGT_API_KEY", raising=False)
    source, output = files
    write_input(source, 1)
    arguments = [str(source) if argument == "IN" else argument for argument in arguments]
    assert main(["batch", str(source), "-o", str(output), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


# --- as a process ---------------------------------------------------------------------------


def start(source: Path, output: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CTGT, "batch", str(source), "-o", str(output), "--simulate", "--quiet", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def wait_for_lines(output: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if output.exists() and output.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{output} did not reach {count} lines")


# 1,000 lines at 8 in flight and 50 ms each: some 6 seconds, long enough to be caught mid-run
# however slow the machine; the runs that resume are not slowed down.
LINES = 1000
SLOW = ("--time-to-first-token", "0.05", "--concurrency", "8")


def test_killed_with_sigkill_then_run_again_gives_exactly_one_line_per_id(
    files: tuple[Path, Path],
) -> None:
    source, output = files
    ids = write_input(source, LINES)
    process = start(source, output, *SLOW)
    wait_for_lines(output, 40, process)
    process.kill()
    process.communicate(timeout=30)
    written = ids_in(output)
    assert 40 <= sum(written.values()) < LINES
    # Make the worst case certain: a kill in the middle of a write leaves half a line.
    torn = json.dumps({"custom_id": "request-299", "response": None, "error": None})
    with output.open("ab") as file:
        file.write(torn[: len(torn) // 2].encode())

    rerun = subprocess.run(
        [*CTGT, "batch", str(source), "-o", str(output), "--simulate"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "cut off a torn last line" in rerun.stderr
    assert f"resuming; {sum(written.values())} lines already written" in rerun.stderr
    assert ids_in(output) == Counter(ids)


def test_ctrl_c_finishes_the_lines_being_written_and_exits_130(
    files: tuple[Path, Path],
) -> None:
    source, output = files
    ids = write_input(source, LINES)
    process = start(source, output, *SLOW)
    wait_for_lines(output, 40, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert output.read_bytes().endswith(b"\n")
    first = ids_in(output)  # every line is whole JSON
    assert sum(first.values()) < LINES
    assert "stopped; " in err
    assert "will be sent when the same command is run again" in err
    assert "Traceback" not in err

    rerun = start(source, output)
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert ids_in(output) == Counter(ids)


def test_sigterm_stops_the_same_way_with_exit_143(files: tuple[Path, Path]) -> None:
    source, output = files
    write_input(source, LINES)
    process = start(source, output, *SLOW)
    wait_for_lines(output, 10, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143, err
    assert output.read_bytes().endswith(b"\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def served() -> Iterator[str]:
    port = free_port()
    with subprocess.Popen(
        [*CTGT, "serve", "--port", str(port), "--api-key", "sk-right"],
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    ) as process:
        assert process.stderr is not None
        assert "serving http://127.0.0.1" in process.stderr.readline()
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def test_a_wrong_key_stops_the_job_without_writing_error_lines(
    files: tuple[Path, Path],
) -> None:
    source, output = files
    write_input(source, 30)
    with served() as base_url:
        result = subprocess.run(
            [*CTGT, "batch", str(source), "-o", str(output), "--quiet"],
            capture_output=True,
            text=True,
            env=environment(CTGT_API_KEY="sk-wrong", CTGT_BASE_URL=base_url),
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "ctgt: error: 401 Unauthorized: Invalid API key provided" in result.stderr
    assert "sk-wrong" not in result.stderr
    assert records(output) == []
