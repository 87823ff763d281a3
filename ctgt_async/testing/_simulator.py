"""`Simulator`: a faithful local stand-in for the CTGT chat completions API."""

from __future__ import annotations

import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._asgi import (
    Receive,
    Responder,
    Scope,
    Send,
    decode_headers,
    json_or_none,
    lifespan,
    read_body,
)
from ._faults import (
    SIMULATE_HEADER,
    DropConnection,
    ErrorEvent,
    MalformedChunk,
    RateLimiter,
    SimulateHeaderError,
    Stall,
    StatusFault,
    StreamFault,
    error_payload,
    parse_simulate_header,
    retry_after_headers,
    status_fault_payload,
)
from ._recording import REDACTED, RecordedRequest
from ._replies import Timing, send_completion, send_stream
from ._text import generate_reply
from ._validation import InvalidRequest, parse_chat_request

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from .._client import AsyncCTGT

__all__ = ["Simulator"]

ENDPOINT = "/v1/chat/completions"
_STREAM_FAULTS = (DropConnection, MalformedChunk, ErrorEvent, Stall)


class Simulator:
    """The CTGT chat completions API as a plain ASGI 3 application.

    It answers `POST /v1/chat/completions` as the reference page describes: Bearer keys are
    checked (401), bodies validated (400 naming the field), replies are deterministic
    text with `usage`, and `"stream": true` gives OpenAI-style server-sent events. Every
    response carries an `x-request-id`. Run it in process with `SimulatorTransport`, or on a
    real socket with `serve()`.

    Replies are reproducible: the same request to a simulator with the same `seed` gives the
    same text, and at temperature 0 the seed does not matter at all. Tokens are
    whitespace-separated words: `completion_tokens` is the number of words in the reply (and
    of content deltas in its stream); `prompt_tokens` is the number of words in the messages'
    contents plus 4 per message.

    Faults can be scripted from Python (`fail_next`, `break_next_stream`, `rate_limit`,
    `fault_rate`) or chosen per request with the `X-CTGT-Simulate` header, so clients in any
    language can use them over a socket. The header holds directives separated by `,` or `;`:

        status=<400-599>         answer with this error status (a 429 gets `Retry-After: 0`)
        retry-after=<seconds>    with `status`: send `Retry-After` (and `retry-after-ms`)
        drop-after=<n>           stream: drop the connection after n events
        malformed-after=<n>      stream: send a non-JSON event after n events, then go on
        error-after=<n>          stream: send an error event after n events, then end
        stall-after=<n>          stream: go silent after n events, until the client leaves
        stall-for=<seconds>      with `stall-after`: resume the stream after this long

    for example `X-CTGT-Simulate: status=503, retry-after=1` or `drop-after=3`. An invalid
    header is a 400. Stream faults do nothing to a non-streaming request.

    A request meets, in order: routing (404/405), the key check (401), the rate limit (429),
    a status fault (the header's, else a scripted one, else a random one), validation (400),
    and for streams a stream fault (the header's, else a scripted one).

    All state is touched only between awaits, on one event loop, so concurrent requests need
    no locks.
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = ("sk-test",),
        seed: int = 0,
        time_to_first_token: float = 0.0,
        token_delay: float = 0.0,
        fault_rate: float = 0.0,
        fault_retry_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_records: int | None = None,
    ) -> None:
        """Configure the simulator.

        `api_keys` are the Bearer keys accepted. `seed` varies replies at temperatures above
        zero and drives `fault_rate`, the fraction of requests (0 to 1) answered with a
        retryable fault (a 429, 500 or 503, the 429 and 503 with `Retry-After` set to
        `fault_retry_after`). `clock` (monotonic seconds) drives the rate limiter, so tests
        can advance time instead of waiting.

        Delays are in seconds. A stream waits `time_to_first_token` before its first content
        delta and `token_delay` before each later event; a non-streaming reply waits as long
        as its stream would have taken, then answers at once.

        `max_records` keeps only that many of the latest `requests` (`None`: all of them), so
        that a simulator serving a long batch job or a benchmark does not grow without bound.
        """
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate!r}")
        for name, value in (
            ("time_to_first_token", time_to_first_token),
            ("token_delay", token_delay),
            ("fault_retry_after", fault_retry_after),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        # A lone string is one key, not a set of one-character keys.
        self._keys_in_order = [api_keys] if isinstance(api_keys, str) else list(api_keys)
        self.api_keys = frozenset(self._keys_in_order)
        self.seed = seed
        self.time_to_first_token = time_to_first_token
        self.token_delay = token_delay
        self.fault_rate = fault_rate
        self.fault_retry_after = fault_retry_after
        self._clock = clock
        if max_records is not None and (isinstance(max_records, bool) or max_records < 1):
            raise ValueError(f"max_records must be >= 1 or None, got {max_records!r}")
        # A long-running simulator (a batch job, a benchmark) keeps only the latest records.
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._status_faults: deque[StatusFault] = deque()
        self._stream_faults: deque[StreamFault] = deque()
        self._limiter: RateLimiter | None = None
        self._idle_waiters: list[anyio.Event] = []
        self._in_flight = 0
        self.reset()

    # --- scripting ----------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: float | None = 0.0,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` authenticated requests with `status` instead of a reply.

        Queued faults are used in order, after any queued earlier.

        Args:
            count: How many requests fail.
            status: The HTTP status to answer with (400 to 599).
            retry_after: Seconds for the `Retry-After` header; `None` sends no header.
            message: The `error.message` of the body; a stock message by default.
        """
        _check_count(count)
        fault = StatusFault(status=status, retry_after=retry_after, message=message)
        self._status_faults.extend([fault] * count)

    def break_next_stream(self, fault: StreamFault, *, count: int = 1) -> None:
        """Break the next `count` streams that get as far as streaming.

        Args:
            fault: What goes wrong: `DropConnection`, `MalformedChunk`, `ErrorEvent` or `Stall`.
            count: How many streams it breaks.
        """
        _check_count(count)
        if not isinstance(fault, _STREAM_FAULTS):
            raise TypeError(f"expected a stream fault, got {fault!r}")
        self._stream_faults.extend([fault] * count)

    def rate_limit(self, requests_per_minute: int | None) -> None:
        """Limit each API key to a number of requests per sliding minute.

        A request over the limit gets a 429 whose `Retry-After` says when the oldest request
        leaves the window. Setting a limit starts with an empty window.

        Args:
            requests_per_minute: The limit, at least 1; `None` removes it.
        """
        if requests_per_minute is None:
            self._limiter = None
            return
        if isinstance(requests_per_minute, bool) or requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute!r}")
        self._limiter = RateLimiter(requests_per_minute, self._clock)

    def reset(self) -> None:
        """Forget recorded requests, queued faults and the rate limit; restart the fault RNG.

        The constructor's settings are kept: after `reset()` the simulator behaves as it did
        when new.
        """
        self._records.clear()
        self._status_faults.clear()
        self._stream_faults.clear()
        self._limiter = None
        self._fault_rng = random.Random(self.seed)

    # --- inspection ---------------------------------------------------------------------

    @property
    def requests(self) -> Sequence[RecordedRequest]:
        """Every request received so far, oldest first (records keep updating while live)."""
        return tuple(self._records)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request; `LookupError` if there was none."""
        if not self._records:
            raise LookupError("the simulator has not received any request")
        return self._records[-1]

    async def wait_idle(self) -> None:
        """Wait until no request is being handled.

        Over a socket the server learns about a client leaving a little after the client
        does; this lets a test wait for that instead of sleeping.
        """
        if self._in_flight:
            waiter = anyio.Event()
            self._idle_waiters.append(waiter)
            try:
                await waiter.wait()
            finally:
                if waiter in self._idle_waiters:
                    self._idle_waiters.remove(waiter)

    def client(self, *, api_key: str | None = None, **options: Any) -> AsyncCTGT:
        """An `AsyncCTGT` wired to this simulator in process, for demos and tests.

        Open it with `async with`, which starts the transport's background work.

        Args:
            api_key: The key to send; the first of the simulator's `api_keys` by default.
            **options: Any other `AsyncCTGT` option (`max_retries`, `timeout`, ...).
        """
        from .._client import AsyncCTGT
        from ._transport import SimulatorTransport

        if api_key is None:
            if not self._keys_in_order:
                raise ValueError("the simulator accepts no API key; pass api_key=")
            api_key = self._keys_in_order[0]
        options.setdefault("base_url", "http://simulator/v1")
        return AsyncCTGT(api_key=api_key, transport=SimulatorTransport(self), **options)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[str]:
        """Serve on a real socket with uvicorn (asyncio only); yields the base URL.

        Needs `pip install 'ctgt-async[server]'`.

        Args:
            host: The address to listen on.
            port: The port; 0 picks a free one.
        """
        from ._server import serve

        return serve(self, host=host, port=port)

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            raise RuntimeError(f"the simulator only speaks HTTP, not {scope['type']!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        content, left_early = await read_body(receive)
        headers = decode_headers(scope["headers"])
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k: (REDACTED if k == "authorization" else v) for k, v in headers.items()},
            content=content,
            body=json_or_none(content),
            request_id=f"req_{secrets.token_hex(12)}",
            disconnected=left_early,
            client=_peer(scope.get("client")),
        )
        self._records.append(record)
        if left_early:
            return
        self._in_flight += 1
        try:
            await self._respond(Responder(receive, send, record), headers, content)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.set()

    async def _respond(self, out: Responder, headers: dict[str, str], content: bytes) -> None:
        admitted, header_stream_fault = await self._admit(out, headers)
        if not admitted:
            return
        try:
            request = parse_chat_request(content)
        except InvalidRequest as exc:
            payload = error_payload(exc.message, "invalid_request_error", exc.code, exc.param)
            await out.json(400, payload)
            return
        reply = generate_reply(
            model=request.model,
            persona=request.persona,
            messages=request.messages,
            temperature=request.temperature,
            seed=self.seed,
            max_tokens=request.max_tokens,
        )
        timing = Timing(self.time_to_first_token, self.token_delay)
        if request.stream:
            fault = header_stream_fault or self._next_stream_fault()
            await send_stream(out, request, reply, fault, timing)
        else:
            await send_completion(out, request, reply, timing)

    async def _admit(
        self, out: Responder, headers: dict[str, str]
    ) -> tuple[bool, StreamFault | None]:
        """Routing, key, rate limit and status faults; false when the request was answered.

        Also returns the stream fault the request's `X-CTGT-Simulate` header asked for.
        """
        record = out.record
        if record.path != ENDPOINT:
            message = f"Unknown request URL: {record.method} {record.path}."
            await out.json(404, error_payload(message, "invalid_request_error", "unknown_url"))
            return False, None
        if record.method != "POST":
            message = f"Method {record.method} is not allowed on {ENDPOINT}; use POST."
            payload = error_payload(message, "invalid_request_error", "method_not_allowed")
            await out.json(405, payload, [("allow", "POST")])
            return False, None

        key = _bearer_key(headers.get("authorization", ""))
        if key is None or key not in self.api_keys:
            message = "Invalid API key provided"
            await out.json(401, error_payload(message, "invalid_request_error", "invalid_api_key"))
            return False, None

        if self._limiter is not None:
            wait = self._limiter.acquire(key)
            if wait is not None:
                limit = self._limiter.requests_per_minute
                message = f"Rate limit reached: {limit} requests per minute. Retry later."
                await self._fail(out, StatusFault(status=429, retry_after=wait, message=message))
                return False, None

        try:
            header_fault = parse_simulate_header(headers.get(SIMULATE_HEADER.lower(), ""))
        except SimulateHeaderError as exc:
            message = f"Invalid {SIMULATE_HEADER} header: {exc}"
            code = "invalid_simulate_header"
            payload = error_payload(message, "invalid_request_error", code, SIMULATE_HEADER)
            await out.json(400, payload)
            return False, None
        if isinstance(header_fault, StatusFault):
            await self._fail(out, header_fault)
            return False, None
        status_fault = self._next_status_fault()
        if status_fault is not None:
            await self._fail(out, status_fault)
            return False, None
        return True, header_fault

    def _next_status_fault(self) -> StatusFault | None:
        if self._status_faults:
            return self._status_faults.popleft()
        if self.fault_rate and self._fault_rng.random() < self.fault_rate:
            status = self._fault_rng.choice((429, 500, 503))
            retry_after = None if status == 500 else self.fault_retry_after
            return StatusFault(status=status, retry_after=retry_after)
        return None

    def _next_stream_fault(self) -> StreamFault | None:
        return self._stream_faults.popleft() if self._stream_faults else None

    async def _fail(self, out: Responder, fault: StatusFault) -> None:
        out.record.fault = fault
        headers = retry_after_headers(fault.retry_after)
        await out.json(fault.status, status_fault_payload(fault), headers)


def _peer(client: object) -> tuple[str, int] | None:
    if isinstance(client, (tuple, list)) and len(client) == 2:
        return (str(client[0]), int(client[1]))
    return None


def _check_count(count: object) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")


def _bearer_key(authorization: str) -> str | None:
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None
