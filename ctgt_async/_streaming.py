"""`AsyncStream`: a streamed completion as an async iterator that owns its HTTP response.

Lifecycle of a stream, in order:

1. ``await create(stream=True)`` sends the request and waits for the status line and
   headers. Error statuses raise there, as typed errors, and retries happen there: no chunk
   has been handed out yet, so a retry cannot duplicate anything.
2. Iterating decodes server-sent events into `ChatCompletionChunk` objects. From the first
   chunk on nothing is retried: an error from here on is raised to the caller with the
   text received so far on it (``partial_text``, ``chunks_received``).
3. The stream ends at ``data: [DONE]`` (or, from servers that omit it, at a clean end of the
   body after a ``finish_reason``). The rest of the body is then drained, within bounds, so
   that the keep-alive connection goes back to the pool for the next request.
4. The response is closed when the stream ends, when an error is raised from it, and on
   ``close()``/``aclose()``/leaving ``async with`` (break, exception, cancellation). Closing
   is shielded from the cancellation that may have caused it, so it always completes.

Cancellation takes effect at the next read from the network, and at least every 32 chunks
while the stream hands out chunks that had already arrived (checking on every chunk would
cost a quarter of the per-chunk budget).

Use it as ``async with stream:`` so that leaving the loop early releases the connection at
once; nothing is closed from ``__del__``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import httpx
import pydantic

from ._config import DEFAULT_MAX_STREAM_EVENT_SIZE, DRAIN_MAX_BYTES, DRAIN_MAX_SECONDS
from ._errors import (
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    InvalidArgumentError,
    StreamDecodeError,
    StreamInterruptedError,
    describe_error_body,
    redact,
)
from ._models import ChatCompletion, ChatCompletionChunk, ChatMessage, Choice, Usage
from ._restream import SSEFormat, restream
from ._sse import ServerSentEvent, SSEDecodeError, SSEDecoder

__all__ = ["AsyncStream", "StreamOptions"]

ChunkT = TypeVar("ChunkT", bound=ChatCompletionChunk)

# Chunks already received are handed out without waiting for the network, so a cancellation
# would only be noticed at the next read. Checking for one on every chunk costs a quarter of
# the per-chunk budget; every 32nd chunk bounds the lag at a few dozen chunks for nearly free.
CANCEL_CHECK_EVERY = 32

# How much of an offending event an error quotes: enough to recognise it, not a log flood.
QUOTE_LIMIT = 200


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """Per-client stream settings, handed to each stream by the client."""

    idle_timeout: float | None = None
    max_event_size: int = DEFAULT_MAX_STREAM_EVENT_SIZE
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)


def _quote(data: str) -> str:
    return data if len(data) <= QUOTE_LIMIT else data[:QUOTE_LIMIT] + "…"


class _Assembler:
    """Collects what the chunks say so far, to build the final completion or report a cut."""

    __slots__ = ("chunks", "finish_reasons", "finished", "first", "parts", "roles", "usage")

    def __init__(self) -> None:
        self.chunks = 0
        self.first: ChatCompletionChunk | None = None
        self.parts: defaultdict[int, list[str]] = defaultdict(list)
        self.roles: dict[int, str] = {}
        self.finish_reasons: dict[int, str] = {}
        self.finished = False
        self.usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        # Runs once per chunk: kept to attribute reads and appends.
        self.chunks += 1
        if self.first is None:
            self.first = chunk
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                self.parts[choice.index].append(delta.content)
            if delta.role is not None:
                self.roles[choice.index] = delta.role
            if choice.finish_reason is not None:
                self.finish_reasons[choice.index] = choice.finish_reason
                self.finished = True
        if chunk.usage is not None:
            self.usage = chunk.usage

    def partial_text(self) -> dict[int, str]:
        return {index: "".join(parts) for index, parts in self.parts.items()}

    def attach(self, error: APIError) -> APIError:
        error.partial_text = self.partial_text()
        error.chunks_received = self.chunks
        return error

    def completion(self) -> ChatCompletion:
        first = self.first
        assert first is not None
        indices = sorted(self.parts.keys() | self.roles.keys() | self.finish_reasons.keys())
        choices = [
            Choice(
                index=index,
                message=ChatMessage(
                    role=self.roles.get(index, "assistant"),
                    content="".join(self.parts.get(index, [])),
                ),
                finish_reason=self.finish_reasons.get(index),
            )
            for index in indices
        ]
        return ChatCompletion(
            id=first.id,
            created=first.created,
            model=first.model,
            choices=choices,
            usage=self.usage,
        )


class AsyncStream(Generic[ChunkT]):
    """A streamed chat completion: iterate it for chunks, then it closes itself.

    ``async with stream:`` guarantees the HTTP response is closed however the block is left.
    See the module documentation for when errors are raised and what is retried.

    Attributes:
        response: The HTTP response (status and headers are available at once).
    """

    def __init__(
        self, response: httpx.Response, chunk_type: type[ChunkT], options: StreamOptions
    ) -> None:
        self.response = response
        self._chunk_type = chunk_type
        # The validator itself, not the classmethod around it: this runs once per chunk.
        # Models build their validators on first use (see _models.py); build it now.
        if not chunk_type.__pydantic_complete__:
            chunk_type.model_rebuild()
        self._validate_json: Callable[[str], ChunkT] = (
            chunk_type.__pydantic_validator__.validate_json
        )
        self._options = options
        self._decoder = SSEDecoder(max_event_size=options.max_event_size)
        self._pieces: AsyncIterator[bytes] = response.aiter_bytes()
        self._events: list[ServerSentEvent] = []
        self._next_event = 0
        self._assembler = _Assembler()
        self._last_event_at = anyio.current_time()
        self._done = False
        self._closed = False

    @classmethod
    async def _open(
        cls, response: httpx.Response, chunk_type: type[ChunkT], options: StreamOptions
    ) -> AsyncStream[ChunkT]:
        """Wrap a successful response, after checking that it really is an event stream."""
        content_type = response.headers.get("content-type", "text/event-stream")
        if content_type.partition(";")[0].strip().lower() != "text/event-stream":
            try:
                await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            raise APIResponseValidationError(
                f"Asked for a stream but the server sent {content_type!r}: "
                f"{_quote(redact(response.text, options.secrets))}",
                response=response,
                body=_quote(response.text),
            )
        return cls(response, chunk_type, options)

    @property
    def request_id(self) -> str | None:
        """The ``x-request-id`` response header, for support tickets."""
        request_id: str | None = self.response.headers.get("x-request-id")
        return request_id

    @property
    def chunks_received(self) -> int:
        """How many chunks have been decoded so far."""
        return self._assembler.chunks

    # -- iteration -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __anext__(self) -> ChunkT:
        try:
            while not self._closed:
                index = self._next_event
                if index < len(self._events):
                    self._next_event = index + 1
                    chunk = self._chunk_from(self._events[index])
                    if chunk is not None:
                        if not self._assembler.chunks % CANCEL_CHECK_EVERY:
                            await anyio.lowlevel.checkpoint_if_cancelled()
                        return chunk
                elif self._done:
                    break
                else:
                    await self._read_more()
            await self._finish()
        except BaseException:
            await self.close()
            raise
        raise StopAsyncIteration

    def _chunk_from(self, event: ServerSentEvent) -> ChunkT | None:
        data = event.data
        if event.event == "message" and data != "[DONE]":
            try:
                chunk: ChunkT = self._validate_json(data)
            except pydantic.ValidationError as exc:
                raise self._bad_event(data, exc) from exc
            self._assembler.add(chunk)
            return chunk
        if event.event == "error":
            raise self._error_event(data)
        if data == "[DONE]":
            self._done = True
            self._next_event = len(self._events)
        # Otherwise a named event this API does not define: not a chunk, skipped.
        return None

    async def _read_more(self) -> None:
        """Read the next piece of the body and decode the events it completes."""
        try:
            piece = await self._next_piece()
        except StopAsyncIteration:
            self._events = self._decoder.end()
            self._next_event = 0
            if not self._events:
                self._end_of_body(None)
            self._done = True
            return
        except httpx.TimeoutException as exc:
            raise self._assembler.attach(
                APITimeoutError(
                    f"Timed out waiting for the next stream event after "
                    f"{self._assembler.chunks} chunk(s).",
                    request=self.response.request,
                )
            ) from exc
        except httpx.TransportError as exc:
            self._end_of_body(exc)
            self._done = True
            return
        try:
            self._events = self._decoder.feed(piece)
        except SSEDecodeError as exc:
            raise self._decode_error(str(exc), _quote(piece.decode(errors="replace"))) from exc
        self._next_event = 0
        if self._events:
            self._last_event_at = anyio.current_time()

    async def _next_piece(self) -> bytes:
        idle_timeout = self._options.idle_timeout
        if idle_timeout is None:
            return await self._pieces.__anext__()
        with anyio.move_on_after(self._last_event_at + idle_timeout - anyio.current_time()):
            return await self._pieces.__anext__()
        raise self._assembler.attach(
            APITimeoutError(
                f"No stream event for {idle_timeout:g} s (stream_idle_timeout) after "
                f"{self._assembler.chunks} chunk(s).",
                request=self.response.request,
            )
        )

    def _end_of_body(self, cause: httpx.TransportError | None) -> None:
        """The body ended (or broke) before ``[DONE]``: fine after a finish_reason, else a cut."""
        if self._assembler.finished:
            return
        how = f"the connection failed ({cause})" if cause else "the body ended"
        error = StreamInterruptedError(
            f"The stream was cut off after {self._assembler.chunks} chunk(s): {how} before "
            "any finish_reason or [DONE].",
            request=self.response.request,
        )
        raise self._assembler.attach(error) from cause

    def _error_event(self, data: str) -> APIError:
        message, type_, code, body = describe_error_body(data.encode())
        text = redact(message or _quote(data) or "(no message)", self._options.secrets)
        details = ", ".join(f"{k}={v}" for k, v in (("type", type_), ("code", code)) if v)
        error = APIStatusError(
            f"Error event in the stream after {self._assembler.chunks} chunk(s): {text}"
            + (f" [{details}]" if details else ""),
            response=self.response,
            body=body,
            type=type_,
            code=code,
            server_message=text,
        )
        return self._assembler.attach(error)

    def _bad_event(self, data: str, exc: pydantic.ValidationError) -> APIError:
        try:
            payload = json.loads(data)
        except ValueError:
            return self._decode_error("A stream event is not valid JSON", _quote(data))
        if isinstance(payload, dict) and "error" in payload:
            return self._error_event(data)
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the top level"
        return self._decode_error(
            f"A stream event is not a valid chunk ({where}: {first['msg']})", _quote(data)
        )

    def _decode_error(self, problem: str, quoted: str) -> APIError:
        quoted = redact(quoted, self._options.secrets)
        error = StreamDecodeError(
            f"{problem} after {self._assembler.chunks} chunk(s): {quoted!r}",
            response=self.response,
            body=quoted,
        )
        return self._assembler.attach(error)

    async def _finish(self) -> None:
        """After the end marker: read what is left (bounded), so the connection is reusable.

        A cancellation here is handled like one mid-stream: ``__anext__`` closes the response.
        """
        if self._closed:
            return
        drained = 0
        with anyio.move_on_after(DRAIN_MAX_SECONDS):
            try:
                async for piece in self._pieces:
                    drained += len(piece)
                    if drained > DRAIN_MAX_BYTES:
                        break
            except httpx.HTTPError:
                pass  # The stream is complete; a failure after it costs only the connection.
        await self.close()

    # -- helpers -------------------------------------------------------------------------

    @property
    def text_stream(self) -> _TextStream:
        """The non-empty content strings of choice 0, in order, as an async iterator."""
        return _TextStream(self)

    def to_sse(self, format: SSEFormat = "openai") -> AsyncIterator[bytes]:
        """The stream re-encoded as server-sent events, for a web app to forward.

        Hand it to any ASGI streaming response (for example FastAPI's
        ``StreamingResponse(stream.to_sse(), media_type="text/event-stream")``).
        ``"openai"`` sends each chunk as OpenAI-format JSON and ends with ``data: [DONE]``;
        ``"text"`` sends only the text, a ``data:`` line per line of it. An upstream failure
        mid-way becomes a final ``event: error`` with a message safe to show; the stream is
        closed when the iterator ends, fails or is cancelled (as servers do when the browser
        disconnects), so the upstream connection never outlives the downstream one.
        """
        if format not in ("openai", "text"):
            raise InvalidArgumentError("format", f"must be 'openai' or 'text', got {format!r}")
        return restream(self, format)  # type: ignore[arg-type]

    async def get_final_completion(self) -> ChatCompletion:
        """Read the stream to its end and return the whole `ChatCompletion`.

        Works whether or not some chunks were already iterated: every chunk is remembered.
        """
        async for _ in self:
            pass
        if not self._done:
            raise self._assembler.attach(
                StreamInterruptedError(
                    "The stream was closed before it ended; the completion is incomplete.",
                    request=self.response.request,
                )
            )
        if self._assembler.first is None:
            raise APIResponseValidationError(
                "The stream ended without a single chunk.", response=self.response, body=""
            )
        return self._assembler.completion()

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the HTTP response. Safe to call more than once, and from a cancelled task."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self.response.aclose()
            await _unwind(self._pieces)

    async def aclose(self) -> None:
        """The same as `close`, under the name async generators use (PEP 525)."""
        await self.close()

    async def __aenter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<AsyncStream {state} status={self.response.status_code} "
            f"chunks={self._assembler.chunks}>"
        )


# Enough steps to pass any data already buffered below the closed response.
_UNWIND_STEPS = 1000


async def _unwind(pieces: AsyncIterator[bytes]) -> None:
    """Finish an abandoned body iterator, after its response was closed, without any I/O.

    httpx hands out a body through several nested async generators. Leaving one half-way
    leaves all of them suspended, and trio warns (``ResourceWarning``) about each one garbage
    collected before it finished. Closing the outermost does not finish the inner ones, so
    instead the iterator is stepped inside an already-cancelled scope: the first wait in the
    innermost layer raises the cancellation, which runs out through every layer and ends them
    all. The response is closed first, so there is nothing left to read or wait for.
    """
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            for _ in range(_UNWIND_STEPS):
                await pieces.__anext__()
        except Exception:  # The stream is already closed: there is nothing left to report.
            pass


class _TextStream:
    """Iterates only the text of a stream; closing it closes the stream."""

    def __init__(self, stream: AsyncStream[ChunkT]) -> None:
        self._stream: AsyncStream[ChatCompletionChunk] = stream  # type: ignore[assignment]

    def __aiter__(self) -> _TextStream:
        return self

    async def __anext__(self) -> str:
        async for chunk in self._stream:
            for choice in chunk.choices:
                if choice.index == 0 and choice.delta.content:
                    return choice.delta.content
        raise StopAsyncIteration

    async def __aenter__(self) -> _TextStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stream.close()
