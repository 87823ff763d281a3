"""The files of ``ctgt batch``: OpenAI Batch API JSONL in and out, resuming, sharding.

Input lines follow the OpenAI Batch API::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "...", "messages": [...], "persona": "...", "temperature": 0.2}}

(``method`` and ``url`` may be left out.) Each output line is one result::

    {"id": "batch_req_...", "custom_id": "req-1",
     "response": {"status_code": 200, "request_id": null, "body": {...chat.completion...}},
     "error": null}

and for a failure ``error`` is ``{"code", "message", "type"}`` (``response`` then holds the
server's status and error body when there was one, else ``null``).

Nothing lost, nothing twice. Each result is appended with one ``write`` as soon as it is
known, so the operating system holds every finished line even if the process is killed the
next instant. On start, the output is read back: a last line without its newline (the one
write a kill can tear) is cut off, and every ``custom_id`` found is skipped. Each input
``custom_id`` is remembered in `IdTable`, which is how duplicates are found: 8 bytes per id,
the only memory that grows with the input.

The parts that decide (`parse_line`, `result_record`, `shard_of`, `IdTable`) do no I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import uuid
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final

from ._batch import BatchRequest, BatchResult, ChatCompletionParams
from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    CTGTError,
    InvalidArgumentError,
    StreamInterruptedError,
    redact,
)
from ._request import build_chat_completion_body

try:  # POSIX; on Windows two runs on one output are not prevented.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_LINE_BYTES",
    "BadLine",
    "BatchJob",
    "IdTable",
    "OutputError",
    "OutputFile",
    "Seen",
    "count_lines",
    "parse_line",
    "read_lines",
    "result_record",
    "shard_of",
]

MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""A longer input line is reported as bad instead of being read into memory: a prompt is a few
kilobytes, and the largest context windows are well below this."""

ENDPOINTS: Final = ("/v1/chat/completions", "/chat/completions")
"""The ``url`` values an input line may carry: the only endpoint this command calls."""

# `body` fields that are arguments of `create`; any other field goes to the API as given.
_ARGUMENTS: Final = ("model", "messages", "persona", "temperature", "user", "stream")


class OutputError(ValueError):
    """The output file cannot be resumed: it holds a line this command did not write."""


# --- ids ------------------------------------------------------------------------------------


class Seen(enum.Enum):
    """What `IdTable.see` found."""

    NEW = "new"
    """First time: the line is to be run."""
    DONE = "done"
    """In the output already (an earlier run): skip it quietly."""
    DUPLICATE = "duplicate"
    """Already met earlier in this input: skip it and say so."""


def _key(custom_id: str) -> int:
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    # The top 63 bits name the id; the lowest bit flags "met in the input". 0 is an empty slot.
    return (int.from_bytes(digest, "big") >> 1) or 1


class IdTable:
    """A set of custom ids in 8 bytes each: open addressing over one ``array('Q')``.

    A ``set`` of strings costs some 100 bytes per id, which for millions of lines is the
    biggest thing the command would hold. Ids are kept as 63-bit BLAKE2b hashes instead: two
    different ids share one with a probability of about n² / 2⁶⁴ (one in 18 billion for a
    million ids), and if it ever happened the second would be reported as a duplicate, not
    lost silently.
    """

    _MAX_LOAD = 0.7

    def __init__(self) -> None:
        self._slots = array("Q", [0]) * 1024
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _find(self, key: int) -> int:
        """The slot holding ``key``, or the empty slot where it belongs."""
        slots = self._slots
        mask = len(slots) - 1
        index = key & mask
        while True:
            value = slots[index]
            if value == 0 or value >> 1 == key:
                return index
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", [0]) * (2 * len(old))
        for value in old:
            if value:
                self._slots[self._find(value >> 1)] = value

    def _insert(self, key: int, flag: int) -> int:
        """Insert or flag ``key``; return the value the slot held before (0 when new)."""
        index = self._find(key)
        previous = self._slots[index]
        self._slots[index] = (key << 1) | flag | (previous & 1)
        if previous == 0:
            self._count += 1
            if self._count > self._MAX_LOAD * len(self._slots):
                self._grow()
        return previous

    def mark_done(self, custom_id: str) -> None:
        """Remember an id found in the output."""
        self._insert(_key(custom_id), 0)

    def see(self, custom_id: str) -> Seen:
        """Meet an id in the input: new, done in an earlier run, or a duplicate."""
        previous = self._insert(_key(custom_id), 1)
        if previous == 0:
            return Seen.NEW
        return Seen.DUPLICATE if previous & 1 else Seen.DONE


def shard_of(key: str, count: int) -> int:
    """The shard (0 to ``count - 1``) a custom id belongs to: the same on every machine.

    SHA-256 rather than `hash`, which is salted per process.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


# --- input lines ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BadLine:
    """An input line that cannot be sent, and why; it becomes an error result line."""

    number: int
    custom_id: str | None
    message: str
    code: str = "invalid_input"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _describe(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "null"
    return text if len(text) <= 60 else text[:60] + "…"


def _has_lone_surrogate(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _params(body: dict[str, Any]) -> ChatCompletionParams:
    """The ``create`` arguments for a body, checked as ``create`` would check them."""
    for key in ("model", "messages"):
        if key not in body:
            raise InvalidArgumentError(key, "is required")
    extra = {key: value for key, value in body.items() if key not in _ARGUMENTS}
    arguments = {key: body[key] for key in _ARGUMENTS if key in body}
    build_chat_completion_body(
        model=arguments["model"],
        messages=arguments["messages"],
        persona=arguments.get("persona"),
        temperature=arguments.get("temperature"),
        stream=arguments.get("stream"),
        user=arguments.get("user"),
        extra_body=extra,
    )
    params: ChatCompletionParams = {"model": body["model"], "messages": body["messages"]}
    for key in ("persona", "temperature", "user"):
        if body.get(key) is not None:
            params[key] = body[key]  # type: ignore[literal-required]
    if body.get("stream") is True:
        params["stream"] = True
    if extra:
        params["extra_body"] = extra
    return params


def parse_line(number: int, raw: bytes) -> BatchRequest | BadLine:
    """Read one input line into a request, or say what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadLine(number, None, f"not UTF-8 text (byte {error.start + 1})")
    try:
        line = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return BadLine(number, None, "not valid JSON: nested too deeply", "invalid_json")
    except ValueError as error:
        return BadLine(number, None, f"not valid JSON: {error}", "invalid_json")
    if not isinstance(line, dict):
        return BadLine(number, None, f"must be a JSON object, got {_describe(line)}")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(
            number, None, f"custom_id must be a non-empty string, got {_describe(custom_id)}"
        )
    method = line.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        return BadLine(number, custom_id, f"method must be POST, got {_describe(method)}")
    url = line.get("url", ENDPOINTS[0])
    if not isinstance(url, str) or url.rstrip("/") not in ENDPOINTS:
        return BadLine(number, custom_id, f"url must be {ENDPOINTS[0]}, got {_describe(url)}")
    body = line.get("body")
    if not isinstance(body, dict):
        return BadLine(number, custom_id, f"body must be a JSON object, got {_describe(body)}")
    if "\\u" in text and _has_lone_surrogate(body):
        return BadLine(number, custom_id, "body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    try:
        params = _params(body)
    except InvalidArgumentError as error:
        return BadLine(number, custom_id, f"body.{error.field}: {error.problem}", "invalid_request")
    return BatchRequest(custom_id, params)


def read_lines(
    file: IO[bytes], max_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` for each line, from 1; ``None`` for a line over ``max_bytes``.

    An over-long line is skipped without holding it, so one broken line cannot exhaust memory.
    """
    number = 0
    while True:
        raw = file.readline(max_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_bytes:
            while raw and not raw.endswith(b"\n"):
                raw = file.readline(1024 * 1024)
            yield number, None
        else:
            yield number, raw


def count_lines(path: Path) -> int:
    """How many lines a file holds, counting a last one without its newline."""
    count = 0
    last = b"\n"
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


# --- result lines ---------------------------------------------------------------------------


def _error_code(error: CTGTError) -> str:
    if isinstance(error, APIStatusError):
        return error.code or f"http_{error.status_code}"
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, StreamInterruptedError):
        return "stream_interrupted"
    if isinstance(error, APIConnectionError):
        return "connection_error"
    if isinstance(error, APIResponseValidationError):
        return "invalid_response"
    return "invalid_request"


def result_record(custom_id: str, result: BatchResult) -> dict[str, object]:
    """The output line for a result, as a JSON-ready dict."""
    record: dict[str, object] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id}
    error = result.error
    if error is None:
        assert result.completion is not None
        body = result.completion.model_dump(mode="json")
        record["response"] = {"status_code": 200, "request_id": None, "body": body}
        record["error"] = None
        return record
    if isinstance(error, APIStatusError):
        record["response"] = {
            "status_code": error.status_code,
            "request_id": error.request_id,
            "body": error.body,
        }
    else:
        record["response"] = None
    record["error"] = {
        "code": _error_code(error),
        "message": str(error),
        "type": type(error).__name__,
    }
    return record


def bad_line_record(bad: BadLine) -> dict[str, object]:
    """The output line for an input line that could not be sent."""
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": bad.custom_id,
        "response": None,
        "error": {
            "code": bad.code,
            "message": f"line {bad.number}: {bad.message}",
            "line": bad.number,
        },
    }


def encode_record(record: dict[str, object], secrets: tuple[str, ...] = ()) -> bytes:
    """One JSON line; text that cannot be UTF-8 (a lone surrogate) is written escaped."""
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, separators=(",", ":"))
        data = text.encode("ascii")
    if record.get("error") is not None and any(secret and secret in text for secret in secrets):
        data = redact(text, secrets).encode("utf-8", "backslashreplace")
    return data + b"\n"


# --- the output file ------------------------------------------------------------------------


@dataclasses.dataclass
class Resume:
    """What the output held before this run."""

    ids: IdTable
    lines: set[int]
    """Input line numbers answered by an error line without a custom_id."""
    succeeded: int = 0
    failed: int = 0
    repaired_bytes: int = 0
    dropped_failures: int = 0
    """Error lines removed for ``--retry-failed``."""


def _torn_tail(file: IO[bytes]) -> int:
    """Where the last complete line ends: the size to cut a torn last line back to."""
    end = file.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        step = min(64 * 1024, position)
        file.seek(position - step)
        chunk = file.read(step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return position - step + newline + 1
        position -= step
    return 0


def _classify_output_line(
    number: int, raw: bytes, path: Path
) -> tuple[str | None, int | None, bool]:
    """``(custom_id, input line, failed)`` of an output line, or `OutputError`."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "custom_id" not in record or "error" not in record:
        raise OutputError(
            f"{path}:{number} is not a result line of ctgt batch; give another --output, "
            "or remove that line if this is the right file"
        )
    custom_id = record["custom_id"]
    failed = record["error"] is not None
    line = None
    if not isinstance(custom_id, str):
        custom_id = None
        error = record["error"]
        if isinstance(error, dict) and isinstance(error.get("line"), int):
            line = error["line"]
    return custom_id, line, failed


class OutputFile:
    """The output, open for appending: one ``write`` per line, so a kill tears at most one.

    Opening it takes an exclusive lock (where the OS has ``flock``), so that two runs writing
    the same file fail fast instead of interleaving their lines.
    """

    def __init__(self, path: Path, *, retry_failed: bool = False) -> None:
        self.path = path
        handle = self._open_locked(path)
        try:
            self.resume = self._read_back(handle, retry_failed)
            if self.resume.dropped_failures:
                handle.close()
                handle = self._open_locked(path)
        except BaseException:
            handle.close()
            raise
        self._file = handle

    @staticmethod
    def _open_locked(path: Path) -> IO[bytes]:
        handle = path.open("a+b", buffering=0)
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise OutputError(
                    f"{path} is being written by another ctgt batch; wait for it to finish"
                ) from None
        return handle

    def _read_back(self, handle: IO[bytes], retry_failed: bool) -> Resume:
        resume = Resume(ids=IdTable(), lines=set())
        size = handle.seek(0, os.SEEK_END)
        keep = _torn_tail(handle)
        if keep < size:
            handle.truncate(keep)
            resume.repaired_bytes = size - keep
        kept: IO[bytes] | None = None
        temporary = self.path.with_name(self.path.name + ".compacting")
        try:
            with self.path.open("rb") as lines:
                for number, raw in enumerate(lines, 1):
                    custom_id, line, failed = _classify_output_line(number, raw, self.path)
                    if failed and retry_failed:
                        if kept is None:
                            kept = self._start_compaction(temporary, number)
                        resume.dropped_failures += 1
                        continue
                    if kept is not None:
                        kept.write(raw)
                    if custom_id is not None:
                        resume.ids.mark_done(custom_id)
                    elif line is not None:
                        resume.lines.add(line)
                    if failed:
                        resume.failed += 1
                    else:
                        resume.succeeded += 1
            if kept is not None:
                kept.flush()
                os.fsync(kept.fileno())
                kept.close()
                os.replace(temporary, self.path)
                kept = None
        finally:
            if kept is not None:
                kept.close()
                with contextlib.suppress(OSError):
                    temporary.unlink()
        return resume

    def _start_compaction(self, temporary: Path, first_dropped: int) -> IO[bytes]:
        """A copy of the lines before ``first_dropped``, to finish without the failures."""
        kept = temporary.open("wb")
        with self.path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if number >= first_dropped:
                    break
                kept.write(raw)
        return kept

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0 :]

    def close(self) -> None:
        """Flush to disk and release the lock."""
        if not self._file.closed:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()


# --- the job --------------------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    """What happened to the lines of the input, in this run."""

    lines: int = 0
    succeeded: int = 0
    failed: int = 0
    bad: int = 0
    duplicates: int = 0
    resumed: int = 0
    other_shard: int = 0
    blank: int = 0


class BatchJob:
    """Turns the input into requests and results into output lines, keeping count.

    `requests` is a generator the batch pulls from: it reads a line only when the batch has
    room for a request, writes bad lines' error results itself, and skips what the output
    already answers, what another shard owns, and duplicates. `record` writes a result.
    Everything runs in one task between awaits, so the two never write at the same time.

    Args:
        input_path: The JSONL input.
        output: The output file, already opened (and resumed).
        shard: ``(k, n)``: take only the ids that `shard_of` puts in shard ``k - 1`` of ``n``.
        report: Prints one message (a bad line, a duplicate, a failure) for the user.
        secrets: Strings never to write into an error line (the API key).
        max_reported_failures: Failed requests reported one by one before falling silent.
    """

    def __init__(
        self,
        input_path: Path,
        output: OutputFile,
        *,
        shard: tuple[int, int] | None = None,
        report: Callable[[str], None] = lambda message: None,
        secrets: tuple[str, ...] = (),
        max_reported_failures: int = 10,
    ) -> None:
        self.input_path = input_path
        self.output = output
        self.shard = shard
        self.counts = Counts()
        self._report = report
        self._secrets = secrets
        self._max_reported = max_reported_failures
        self._reported = 0
        self._in_flight: dict[str, int] = {}
        self._ids = output.resume.ids
        self._done_lines = output.resume.lines
        self._name = str(input_path)

    @property
    def settled_lines(self) -> int:
        """Lines read whose fate is final: all but those in flight."""
        return self.counts.lines - len(self._in_flight)

    def requests(self) -> Iterator[BatchRequest]:
        with self.input_path.open("rb") as file:
            for number, raw in read_lines(file):
                self.counts.lines = number
                request = self._admit(number, raw)
                if request is not None:
                    self._in_flight[request.id] = number
                    yield request

    def _admit(self, number: int, raw: bytes | None) -> BatchRequest | None:
        parsed: BatchRequest | BadLine
        if raw is None:
            parsed = BadLine(number, None, f"longer than {MAX_LINE_BYTES:,} bytes")
        elif not raw.strip():
            self.counts.blank += 1
            return None
        else:
            parsed = parse_line(number, raw)
        custom_id = parsed.id if isinstance(parsed, BatchRequest) else parsed.custom_id
        if self.shard is not None:
            key = custom_id if custom_id is not None else f"line:{number}"
            if shard_of(key, self.shard[1]) != self.shard[0] - 1:
                self.counts.other_shard += 1
                return None
        if custom_id is None:
            if number in self._done_lines:
                self.counts.resumed += 1
            else:
                assert isinstance(parsed, BadLine)
                self._write_bad(parsed)
            return None
        seen = self._ids.see(custom_id)
        if seen is Seen.DONE:
            self.counts.resumed += 1
            return None
        if seen is Seen.DUPLICATE:
            self.counts.duplicates += 1
            self._report(f"{self._name}:{number}: duplicate custom_id {custom_id!r}, skipped")
            return None
        if isinstance(parsed, BadLine):
            self._write_bad(parsed)
            return None
        return parsed

    def _write_bad(self, bad: BadLine) -> None:
        self.output.write(encode_record(bad_line_record(bad), self._secrets))
        self.counts.bad += 1
        label = f" (custom_id {bad.custom_id!r})" if bad.custom_id is not None else ""
        self._report(f"{self._name}:{bad.number}{label}: {bad.message}")

    def record(self, result: BatchResult) -> None:
        """Write the output line of a finished request."""
        custom_id = result.id
        assert custom_id is not None
        number = self._in_flight.pop(custom_id, 0)
        self.output.write(encode_record(result_record(custom_id, result), self._secrets))
        if result.error is None:
            self.counts.succeeded += 1
            return
        self.counts.failed += 1
        if self._reported < self._max_reported:
            self._reported += 1
            message = redact(str(result.error), self._secrets)
            self._report(f"{self._name}:{number} (custom_id {custom_id!r}): {message}")
            if self._reported == self._max_reported:
                self._report(f"further failures are not shown here; see {self.output.path}")

    @property
    def in_flight(self) -> int:
        """Requests sent whose result is not written yet."""
        return len(self._in_flight)
