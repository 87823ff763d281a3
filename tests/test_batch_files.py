"""The JSONL side of ``ctgt batch``: reading input lines, writing results, resuming, sharding.

The parsing and encoding functions are pure and tested line by line; `OutputFile` is tested
on real files in a temporary directory (a torn last line, a foreign line, a second writer).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctgt_async import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BatchRequest,
    BatchResult,
    ChatCompletion,
    CTGTError,
    InvalidArgumentError,
    RateLimitError,
    StreamInterruptedError,
)
from ctgt_async._batch_files import (
    MAX_LINE_BYTES,
    BadLine,
    BatchJob,
    IdTable,
    OutputError,
    OutputFile,
    Seen,
    bad_line_record,
    count_lines,
    encode_record,
    parse_line,
    read_lines,
    result_record,
    shard_of,
)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = ChatCompletion.model_validate(
    {
        "id": "chatcmpl-1",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
REQUEST = httpx.Request("POST", "https://api.test/v1/chat/completions")


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\n"


# --- input lines ----------------------------------------------------------------------------


def test_a_line_in_the_openai_batch_format_becomes_a_request() -> None:
    parsed = parse_line(
        1,
        line(
            custom_id="a",
            method="POST",
            url="/v1/chat/completions",
            body={**BODY, "persona": "educator", "temperature": 0, "max_tokens": 9, "stream": True},
        ),
    )
    assert parsed == BatchRequest(
        "a",
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "persona": "educator",
            "temperature": 0,
            "stream": True,
            "extra_body": {"max_tokens": 9},
        },
    )
    # method and url may be left out; null optional fields are not sent.
    assert parse_line(2, line(custom_id="b", body={**BODY, "persona": None})) == BatchRequest(
        "b", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )


@pytest.mark.parametrize(
    ("raw", "custom_id", "message"),
    [
        (b"{not json\n", None, "not valid JSON"),
        (b"\xff\xfe{}\n", None, "not UTF-8 text (byte 1)"),
        (b"[1, 2]\n", None, "must be a JSON object, got [1, 2]"),
        (line(body=BODY), None, "custom_id must be a non-empty string, got null"),
        (line(custom_id=7, body=BODY), None, "custom_id must be a non-empty string, got 7"),
        (line(custom_id="", body=BODY), None, "custom_id must be a non-empty string"),
        (line(custom_id="a", method="GET", body=BODY), "a", 'method must be POST, got "GET"'),
        (line(custom_id="a", url="/v1/embeddings", body=BODY), "a", "url must be"),
        (line(custom_id="a"), "a", "body must be a JSON object, got null"),
        (line(custom_id="a", body={"messages": []}), "a", "body.model: is required"),
        (
            line(custom_id="a", body={"model": "m", "messages": [{"role": "user"}]}),
            "a",
            "body.messages[0].content: is required",
        ),
        (
            line(custom_id="a", body={**BODY, "temperature": 3}),
            "a",
            "body.temperature: must be between 0 and 2",
        ),
        (b'{"custom_id": "a", "body": {"model": NaN}}\n', None, "NaN is not valid JSON"),
        (
            b'{"custom_id": "a", "body": {"model": "m", "messages": [{"role": "user", '
            b'"content": "\\ud800"}]}}\n',
            "a",
            "lone UTF-16 surrogate",
        ),
    ],
)
def test_a_bad_line_says_what_is_wrong(raw: bytes, custom_id: str | None, message: str) -> None:
    parsed = parse_line(5, raw)
    assert isinstance(parsed, BadLine)
    assert parsed.number == 5
    assert parsed.custom_id == custom_id
    assert message in parsed.message


def test_a_line_nested_too_deeply_is_bad_json_not_a_crash() -> None:
    parsed = parse_line(1, b"[" * 100_000 + b"\n")
    assert isinstance(parsed, BadLine)
    assert parsed.message == "not valid JSON: nested too deeply"


def test_lines_are_read_with_their_numbers_and_an_overlong_one_is_not_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"one\n" + b"x" * 100 + b"\nthree")
    with path.open("rb") as file:
        assert list(read_lines(file, max_bytes=50)) == [(1, b"one\n"), (2, None), (3, b"three")]
    assert count_lines(path) == 3
    path.write_bytes(b"")
    assert count_lines(path) == 0


# --- ids and shards -------------------------------------------------------------------------


def test_the_id_table_tells_new_ids_from_done_ones_and_duplicates() -> None:
    table = IdTable()
    table.mark_done("old")
    assert table.see("new") is Seen.NEW
    assert table.see("old") is Seen.DONE
    assert table.see("old") is Seen.DUPLICATE
    assert table.see("new") is Seen.DUPLICATE
    many = [f"id-{i}" for i in range(50_000)]  # grows the table several times
    assert all(table.see(custom_id) is Seen.NEW for custom_id in many)
    assert all(table.see(custom_id) is Seen.DUPLICATE for custom_id in many)
    assert len(table) == 50_002


def test_shards_split_ids_stably_and_completely() -> None:
    # Pinned values: a shard must not change between machines, runs or Python versions
    # (SHA-256 of the id, its first 8 bytes as a big-endian number, modulo the count).
    assert [shard_of(f"request-{i}", 4) for i in range(8)] == [2, 3, 1, 0, 3, 0, 2, 3]
    assert shard_of("a", 1000) == 250
    counts = Counter(shard_of(f"request-{i}", 4) for i in range(4000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) > 900


# --- result lines ---------------------------------------------------------------------------


def test_a_success_line_follows_the_batch_output_format() -> None:
    record = result_record("a", BatchResult(0, "a", completion=COMPLETION))
    assert str(record["id"]).startswith("batch_req_")
    assert record["custom_id"] == "a"
    assert record["error"] is None
    assert record["response"] == {
        "status_code": 200,
        "request_id": None,
        "body": COMPLETION.model_dump(mode="json"),
    }


def test_an_error_line_carries_the_status_the_body_and_a_code() -> None:
    response = httpx.Response(
        429,
        json={"error": {"message": "slow down", "type": "rate_limit_error", "code": "rl"}},
        headers={"x-request-id": "req_1"},
        request=REQUEST,
    )
    error = RateLimitError(
        "429 Too Many Requests: slow down", response=response, body={"e": 1}, code="rl"
    )
    record = result_record("a", BatchResult(0, "a", error=error))
    assert record["response"] == {"status_code": 429, "request_id": "req_1", "body": {"e": 1}}
    assert record["error"] == {
        "code": "rl",
        "message": "429 Too Many Requests: slow down",
        "type": "RateLimitError",
    }
    dropped = result_record("b", BatchResult(1, "b", error=APIConnectionError(request=REQUEST)))
    assert dropped["response"] is None
    assert dropped["error"] == {
        "code": "connection_error",
        "message": "Connection error.",
        "type": "APIConnectionError",
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (APITimeoutError(request=REQUEST), "timeout"),
        (StreamInterruptedError("cut", request=REQUEST), "stream_interrupted"),
        (
            APIResponseValidationError(
                "not JSON", response=httpx.Response(200, request=REQUEST), body=""
            ),
            "invalid_response",
        ),
        (InvalidArgumentError("requests[3]", "must be a dict"), "invalid_request"),
    ],
)
def test_each_kind_of_failure_has_its_code(error: CTGTError, code: str) -> None:
    record = result_record("a", BatchResult(0, "a", error=error))
    assert record["response"] is None
    assert record["error"] == {"code": code, "message": str(error), "type": type(error).__name__}


def test_an_encoded_line_is_one_line_without_the_key() -> None:
    bad = BadLine(3, None, "the key sk-secret-1 leaked into an error body")
    data = encode_record(bad_line_record(bad), ("sk-secret-1",))
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert b"sk-secret-1" not in data
    assert json.loads(data)["error"]["line"] == 3
    lone = encode_record({"custom_id": "\ud800", "error": None})
    assert json.loads(lone)["custom_id"] == "\ud800"


# --- the output file ------------------------------------------------------------------------


def written(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def test_resuming_reads_back_ids_and_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    done = encode_record(result_record("a", BatchResult(0, "a", completion=COMPLETION)))
    failed = encode_record(bad_line_record(BadLine(4, None, "not valid JSON")))
    path.write_bytes(done + failed + done[: len(done) // 2])
    output = OutputFile(path)
    try:
        resume = output.resume
        assert resume.repaired_bytes == len(done) // 2
        assert (resume.succeeded, resume.failed) == (1, 1)
        assert resume.ids.see("a") is Seen.DONE
        assert resume.lines == {4}
        assert path.read_bytes() == done + failed
        output.write(b'{"custom_id":"b","error":null}\n')
    finally:
        output.close()
    assert [record["custom_id"] for record in written(path)] == ["a", None, "b"]


@pytest.mark.parametrize("foreign", [b'{"hello": "world"}\n', b"garbage\n"])
def test_a_line_this_command_did_not_write_stops_the_resume(tmp_path: Path, foreign: bytes) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id":"a","error":null}\n' + foreign)
    with pytest.raises(OutputError, match=r"out\.jsonl:2 is not a result line"):
        OutputFile(path)


def test_a_torn_line_longer_than_the_read_back_step_is_cut_whole(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = b'{"custom_id":"a","error":null}\n'
    path.write_bytes(whole + b'{"custom_id":"' + b"x" * 200_000)
    OutputFile(path).close()
    assert path.read_bytes() == whole
    path.write_bytes(b"x" * 100_000)
    OutputFile(path).close()
    assert path.read_bytes() == b""


def test_an_input_line_over_the_size_limit_is_a_bad_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"x" * (MAX_LINE_BYTES + 10) + b"\n" + line(custom_id="a", body=BODY))
    messages: list[str] = []
    output = OutputFile(tmp_path / "out.jsonl")
    try:
        job = BatchJob(source, output, report=messages.append)
        assert [request.id for request in job.requests()] == ["a"]
    finally:
        output.close()
    assert messages == [f"{source}:1: longer than {MAX_LINE_BYTES:,} bytes"]


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = OutputFile(path)
    try:
        with pytest.raises(OutputError, match="another ctgt batch"):
            OutputFile(path)
    finally:
        first.close()
    OutputFile(path).close()


def test_retry_failed_removes_the_error_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    ok = [encode_record(result_record(c, BatchResult(0, c, completion=COMPLETION))) for c in "ab"]
    error = encode_record(
        result_record("x", BatchResult(0, "x", error=APIConnectionError(request=REQUEST)))
    )
    path.write_bytes(ok[0] + error + ok[1])
    output = OutputFile(path, retry_failed=True)
    output.close()
    assert output.resume.dropped_failures == 1
    assert output.resume.ids.see("x") is Seen.NEW
    assert path.read_bytes() == ok[0] + ok[1]
    assert not list(tmp_path.glob("*.compacting"))


def test_a_job_writes_bad_lines_skips_duplicates_and_other_shards(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        line(custom_id="a", body=BODY)
        + b"\n"
        + b"oops\n"
        + line(custom_id="a", body=BODY)
        + line(custom_id="b", body={"model": "m"})
        + b"".join(line(custom_id=f"s{i}", body=BODY) for i in range(20))
    )
    messages: list[str] = []
    output = OutputFile(tmp_path / "out.jsonl")
    try:
        job = BatchJob(source, output, report=messages.append)
        requests = list(job.requests())
        for request in requests:
            job.record(BatchResult(0, request.id, completion=COMPLETION))
    finally:
        output.close()
    assert [request.id for request in requests] == ["a", *(f"s{i}" for i in range(20))]
    assert (job.counts.lines, job.counts.blank, job.counts.bad, job.counts.duplicates) == (
        25,
        1,
        2,
        1,
    )
    assert messages == [
        f"{source}:3: not valid JSON: Expecting value: line 1 column 1 (char 0)",
        f"{source}:4: duplicate custom_id 'a', skipped",
        f"{source}:5 (custom_id 'b'): body.messages: is required",
    ]
    expected_ids: list[str | None] = ["a", None, "b", *(f"s{i}" for i in range(20))]
    assert Counter(record["custom_id"] for record in written(output.path)) == Counter(expected_ids)

    # Shard 1 of 3 takes only its own ids (here, of the `s` lines).
    shard_output = OutputFile(tmp_path / "shard.jsonl")
    try:
        shard_job = BatchJob(source, shard_output, shard=(1, 3))
        ids = [request.id for request in shard_job.requests()]
    finally:
        shard_output.close()
    expected = [f"s{i}" for i in range(20) if shard_of(f"s{i}", 3) == 0]
    assert [i for i in ids if i.startswith("s")] == expected
    assert 0 < len(expected) < 20
