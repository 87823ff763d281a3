"""`AsyncCTGT`: configuration, the connection pool, and sending one request with retries.

The client is a thin async shell. Building the body (`_request`), mapping errors
(`_errors`), deciding on retries (`_retry`), pacing requests (`_limits`), running batches
(`_batch`) and decoding streams (`_sse`, `_streaming`) live in their own modules and are
tested without a network.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.request
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ._batch import DEFAULT_CONCURRENCY, Batch
from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_INITIAL_RETRY_DELAY,
    DEFAULT_LIMITS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_MAX_STREAM_EVENT_SIZE,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    NotGiven,
)
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidArgumentError,
    MissingAPIKeyError,
    RateLimitError,
    make_status_error,
)
from ._limits import ClientStats, Limiter, estimate_tokens, read_total_tokens
from ._pool import PooledTransport
from ._request import encode_body
from ._retry import RetryPolicy, call_with_retries, parse_retry_after
from ._streaming import StreamOptions
from ._types import TimeoutTypes
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Iterable

    from ._batch import BatchInput, BatchProgress, ChatCompletionParams
    from ._models import ChatCompletion, ChatCompletionChunk
    from ._streaming import AsyncStream

__all__ = ["AsyncCTGT"]

USER_AGENT = f"ctgt-async/{__version__}"

_Client = TypeVar("_Client", bound="AsyncCTGT")


@dataclasses.dataclass(frozen=True)
class _Options:
    """Everything `with_options` may change; the pool is not part of it."""

    api_key: str = dataclasses.field(repr=False)
    base_url: str
    timeout: TimeoutTypes
    total_timeout: float | None
    retry: RetryPolicy
    default_headers: Mapping[str, str]
    stream: StreamOptions


def _check_non_negative(name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise InvalidArgumentError(name, f"must be {kind}, got {type(value).__name__}")
    if value < 0:  # type: ignore[operator]  # checked to be a number just above
        raise InvalidArgumentError(name, f"must not be negative, got {value!r}")


def _check_timeout(name: str, value: object) -> TimeoutTypes:
    if value is None or isinstance(value, httpx.Timeout):
        return value
    _check_non_negative(name, value)
    return float(value)  # type: ignore[arg-type]


def _resolve_base_url(base_url: object) -> str:
    url: object = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidArgumentError("base_url", f"must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _resolve_api_key(api_key: object) -> str:
    key: object = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key:
        raise MissingAPIKeyError(
            f"No API key given. Pass api_key=... to AsyncCTGT() or set the {API_KEY_ENV} "
            "environment variable."
        )
    if not isinstance(key, str) or key != key.strip():
        raise InvalidArgumentError("api_key", "must be a string without surrounding white space")
    return key


class AsyncCTGT:
    """The asynchronous CTGT client: one per application, shared by all its tasks.

    It owns a connection pool sized for hundreds of concurrent requests. Use it as
    ``async with AsyncCTGT() as client:`` or call ``await client.close()`` when done.
    Works under asyncio and trio.

    Args:
        api_key: Your key. Defaults to the ``CTGT_API_KEY`` environment variable; without
            either, `MissingAPIKeyError` is raised here rather than at the first call.
        base_url: The API root. Defaults to ``CTGT_BASE_URL``, then ``https://api.ctgt.ai/v1``.
        timeout: Per-attempt limit: seconds, an `httpx.Timeout` per phase, or ``None`` for
            none. Defaults to 600 s to read (a long answer is silent until done) and 5 s to
            connect.
        total_timeout: Optional limit in seconds on one call including every retry and
            backoff wait; `APITimeoutError` when it runs out. ``None`` (default): no limit.
        max_retries: Retries after the first attempt for 408, 409, 429, 5xx and connection
            failures. ``0`` disables retrying.
        initial_retry_delay: First backoff wait in seconds; it doubles per retry.
        max_retry_delay: Ceiling of the backoff wait in seconds.
        default_headers: Headers sent with every request (per-call ``extra_headers`` win).
        stream_idle_timeout: Optional limit in seconds on the wait for the next event of a
            stream; the server's keep-alive comments do not reset it. ``None``: only the
            read ``timeout`` applies.
        max_stream_event_size: Largest stream event accepted, in bytes (default 1 MiB), so
            that a broken server cannot make the client buffer without bound.
        max_concurrency: Optional cap on requests in flight at once; more wait their turn
            instead of failing. A stream keeps its place until it is closed.
        requests_per_minute: Optional budget of requests sent in any sixty seconds (each
            retry counts); requests beyond it wait.
        tokens_per_minute: Optional budget of tokens in any sixty seconds. A request is
            charged an estimate before it is sent (see the batch guide), corrected with the
            ``usage`` of its response.
        http_client: Your own `httpx.AsyncClient`, for proxies, custom TLS or a mock
            transport. You keep ownership: `close` leaves it open.
        transport: An httpx transport for the pool this client creates and owns (for
            example the simulator's); ignored when ``http_client`` is given.

    Rate limits are coordinated across the whole client: when any request gets a 429 with
    ``Retry-After``, every request of the client (and of its `with_options` copies) waits out
    that cooldown before it is sent. `stats` shows what is in flight, queued or cooling down.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        initial_retry_delay: float = DEFAULT_INITIAL_RETRY_DELAY,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        default_headers: Mapping[str, str] | None = None,
        stream_idle_timeout: float | None = None,
        max_stream_event_size: int = DEFAULT_MAX_STREAM_EVENT_SIZE,
        max_concurrency: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = _Options(
            api_key=_resolve_api_key(api_key),
            base_url=_resolve_base_url(base_url),
            timeout=DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else timeout,
            total_timeout=total_timeout,
            retry=RetryPolicy(
                max_retries=max_retries,
                initial_delay=initial_retry_delay,
                max_delay=max_retry_delay,
            ),
            default_headers=dict(default_headers or {}),
            stream=StreamOptions(
                idle_timeout=stream_idle_timeout, max_event_size=max_stream_event_size
            ),
        )
        _check_options(options)
        for name, limit in (
            ("max_concurrency", max_concurrency),
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if limit is not None:
                _check_non_negative(name, limit, integer=True)
                if limit == 0:
                    raise InvalidArgumentError(name, "must be at least 1, or None for no limit")
        limiter = Limiter(
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise InvalidArgumentError(
                "http_client", f"must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        owns = http_client is None
        if http_client is None:
            if transport is None and not urllib.request.getproxies():
                # httpx's own pool costs milliseconds of CPU per request at high concurrency
                # (see _pool.py). It stays in charge when a proxy is configured in the
                # environment, which only it honours.
                transport = PooledTransport(limits=DEFAULT_LIMITS)
            http_client = httpx.AsyncClient(
                timeout=options.timeout, limits=DEFAULT_LIMITS, transport=transport
            )
        self._setup(options, http_client, limiter, owns_http_client=owns)

    def _setup(
        self,
        options: _Options,
        http_client: httpx.AsyncClient,
        limiter: Limiter,
        *,
        owns_http_client: bool,
    ) -> None:
        # Imported here: `_chat` imports the streaming machinery, which the client module does
        # not need at import time.
        from ._chat import Chat

        self._options = options
        # What every stream of this client needs, computed once rather than per stream.
        self._stream_options = dataclasses.replace(options.stream, secrets=(options.api_key,))
        self._http = http_client
        self._limiter = limiter
        self._owns_http_client = owns_http_client
        self._closed = False
        self.chat = Chat(self)

    # -- configuration -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root every path is joined to."""
        return self._options.base_url

    @property
    def timeout(self) -> TimeoutTypes:
        """The per-attempt timeout."""
        return self._options.timeout

    @property
    def total_timeout(self) -> float | None:
        """The limit on one call including its retries, if any."""
        return self._options.total_timeout

    @property
    def max_retries(self) -> int:
        """How many times a failed attempt is retried."""
        return self._options.retry.max_retries

    @property
    def max_concurrency(self) -> int | None:
        """The cap on requests in flight at once, if any."""
        return self._limiter.max_concurrency

    @property
    def requests_per_minute(self) -> int | None:
        """The budget of requests in any sixty seconds, if any."""
        return self._limiter.requests_per_minute

    @property
    def tokens_per_minute(self) -> int | None:
        """The budget of tokens in any sixty seconds, if any."""
        return self._limiter.tokens_per_minute

    @property
    def stats(self) -> ClientStats:
        """A snapshot of requests in flight, queued and cooling down (shared with copies)."""
        return self._limiter.stats()

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The underlying `httpx.AsyncClient` (shared with copies from `with_options`)."""
        return self._http

    def with_options(
        self: _Client,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        initial_retry_delay: float | NotGiven = NOT_GIVEN,
        max_retry_delay: float | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> _Client:
        """A copy with some options changed, sharing this client's connection pool.

        The copy does not own the pool: closing it does nothing, and it stops working once
        the original is closed. It shares the original's limits and cooldown too, since
        they protect the same pool and the same account. Typical use is one call with other
        settings::

            await client.with_options(max_retries=5, timeout=10).chat.completions.create(...)
        """
        retry_changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("max_retries", max_retries),
                ("initial_delay", initial_retry_delay),
                ("max_delay", max_retry_delay),
            )
            if not isinstance(value, NotGiven)
        }
        changes: dict[str, Any] = {
            "retry": dataclasses.replace(self._options.retry, **retry_changes)
        }
        if not isinstance(api_key, NotGiven):
            changes["api_key"] = _resolve_api_key(api_key)
        if not isinstance(base_url, NotGiven):
            changes["base_url"] = _resolve_base_url(base_url)
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = timeout
        if not isinstance(total_timeout, NotGiven):
            changes["total_timeout"] = total_timeout
        if not isinstance(default_headers, NotGiven):
            changes["default_headers"] = dict(default_headers)
        options = dataclasses.replace(self._options, **changes)
        _check_options(options)
        copy = object.__new__(type(self))
        copy._setup(options, self._http, self._limiter, owns_http_client=False)
        return copy

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries}, "
            f"timeout={self.timeout!r})"
        )

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether `close` has been called on this client."""
        return self._closed

    async def close(self) -> None:
        """Close the connection pool, if this client created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http_client:
            await self._http.aclose()

    async def __aenter__(self: _Client) -> _Client:
        if self._owns_http_client:
            # Entering the pool also enters its transport, which some transports (the
            # simulator's) need to run background work.
            await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- batches -------------------------------------------------------------------------

    def batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        reorder_window: int | None = None,
        adaptive: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        total: int | None = None,
    ) -> Batch:
        """Run many chat completions concurrently; iterate the results as they complete.

        ::

            async with client.batch(requests, concurrency=32) as results:
                async for result in results:
                    print(result.index, result.completion or result.error)

        The input is read lazily, one request when there is room to start it, so it may be
        a generator over a huge file. Each request ends in exactly one `BatchResult`,
        carrying its completion or its typed error; a failure never stops the batch. Leaving
        the block early cancels the requests still running. An error raised by the input
        itself is raised from the ``async for``, after the results of the requests already
        started. Rate limits are shared with the rest of the client (see `stats`).

        Args:
            requests: `ChatCompletionParams` dictionaries (the arguments of
                ``chat.completions.create``) or `BatchRequest` objects with your id on them,
                as an iterable or an async iterable. A plain iterable is read inside the
                event loop, so producing each request should be quick (a list, the lines of
                a local file); a source that waits (a database, a queue) is an async one.
            concurrency: The most requests in flight at once (default 32).
            ordered: Deliver results in input order instead of as they complete.
            reorder_window: With ``ordered``, how far ahead of the earliest undelivered
                request others may start; it bounds the results held back (default four
                times ``concurrency``).
            adaptive: Halve the concurrency when the client gets a 429 and raise it again
                step by step once they stop. ``False`` keeps it at ``concurrency``.
            on_progress: Called with a `BatchProgress` after each result is delivered, in
                the task that iterates; keep it quick.
            total: The number of requests, for `BatchProgress.eta`, when the input has no
                ``len()``.

        Raises:
            InvalidArgumentError: An argument of the batch itself is invalid. (A bad request
                in the input becomes that request's result instead.)
            RuntimeError: The client is closed.
        """
        if self._closed:
            raise RuntimeError("This AsyncCTGT client is closed; create a new one.")
        return Batch(
            requests,
            call=self._batch_call,
            limiter=self._limiter,
            concurrency=concurrency,
            ordered=ordered,
            reorder_window=reorder_window,
            adaptive=adaptive,
            on_progress=on_progress,
            total=total,
        )

    async def _batch_call(self, params: ChatCompletionParams) -> ChatCompletion:
        arguments: dict[str, Any] = dict(params)
        create = self.chat.completions.create
        if arguments.pop("stream", False):
            stream: AsyncStream[ChatCompletionChunk] = await create(**arguments, stream=True)
            async with stream:
                return await stream.get_final_completion()
        completion: ChatCompletion = await create(**arguments)
        return completion

    # -- sending -------------------------------------------------------------------------

    def _build_request(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        stream: bool,
        extra_headers: Mapping[str, str | None] | None,
        timeout: TimeoutTypes | NotGiven,
    ) -> httpx.Request:
        headers: dict[str, str] = {
            "Authorization": f"Bearer {self._options.api_key}",
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            # The same key on every retry of this call lets the server drop duplicates.
            "Idempotency-Key": f"ctgt-{uuid.uuid4().hex}",
        }
        merged = _merge_headers(headers, self._options.default_headers, extra_headers)
        content = encode_body(body)
        effective_timeout = self._options.timeout if isinstance(timeout, NotGiven) else timeout
        return self._http.build_request(
            "POST",
            f"{self._options.base_url}/{path}",
            content=content,
            headers=merged,
            timeout=effective_timeout,
        )

    async def _send_once(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """One attempt: send, and turn any failure into the SDK's typed error.

        A successful streaming response is returned unread; any other response is read in
        full (inside the attempt, so a connection dropped while reading is retried too).
        """
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"Request timed out: {_describe(exc)}.", request=request) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"Connection error: {_describe(exc)}.", request=request
            ) from exc
        if stream and response.is_success:
            return response
        try:
            await response.aread()
        except httpx.TimeoutException as exc:
            raise APITimeoutError("Timed out reading the response body.", request=request) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"Connection lost while reading the response body: {_describe(exc)}.",
                request=request,
            ) from exc
        finally:
            await response.aclose()
        if not response.is_success:
            raise make_status_error(
                response,
                retry_after=parse_retry_after(response.headers),
                secrets=(self._options.api_key,),
            )
        return response

    async def _post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        stream: bool,
        extra_headers: Mapping[str, str | None] | None,
        timeout: TimeoutTypes | NotGiven,
        total_timeout: float | NotGiven | None,
    ) -> httpx.Response:
        """Send with retries; return the (read, or for a stream, open) successful response."""
        if self._closed:
            raise RuntimeError("This AsyncCTGT client is closed; create a new one.")
        request = self._build_request(
            path, body, stream=stream, extra_headers=extra_headers, timeout=timeout
        )
        if isinstance(total_timeout, NotGiven):
            total_timeout = self._options.total_timeout
        cost = estimate_tokens(body) if self._limiter.counts_tokens else 1
        return await call_with_retries(
            lambda: self._attempt(request, stream=stream, cost=cost),
            policy=self._options.retry,
            request=request,
            total_timeout=total_timeout,
        )

    async def _attempt(self, request: httpx.Request, *, stream: bool, cost: int) -> httpx.Response:
        """One attempt through the limiter: wait for admission, send, report any 429.

        Every retry comes back through here, so a retry waits at the shared cooldown gate and
        in the budgets like any other request. A 429 closes the gate before this attempt's
        slot is given up, so the request admitted next already finds it closed. A stream's
        slot goes with its response and is given up when the stream is closed.
        """
        limiter = self._limiter
        permit = await limiter.acquire(cost)
        try:
            response = await self._send_once(request, stream=stream)
        except RateLimitError as error:
            retry_after = error.retry_after
            if retry_after is not None and retry_after > self._options.retry.max_retry_after:
                # So long a wait is not waited inside a call: the error goes to the caller at
                # once, to decide. Holding every other call at the gate for it would be the
                # hang that ceiling exists to prevent.
                retry_after = None
            limiter.rate_limited(retry_after)
            permit.release()
            raise
        except BaseException:
            permit.release()
            raise
        if stream:
            permit.attach(response)
        else:
            if limiter.counts_tokens:
                permit.settle(read_total_tokens(response.content))
            permit.release()
        return response


def _describe(exc: Exception) -> str:
    """httpx errors sometimes carry no message; fall back to the class name."""
    return str(exc) or type(exc).__name__


def _merge_headers(
    base: dict[str, str], *overrides: Mapping[str, str | None] | None
) -> dict[str, str]:
    """Layer header mappings case-insensitively; a ``None`` value removes the header."""
    merged = {name.lower(): (name, value) for name, value in base.items()}
    for layer in overrides:
        for name, value in (layer or {}).items():
            if value is None:
                merged.pop(name.lower(), None)
            else:
                merged[name.lower()] = (name, value)
    return dict(merged.values())


def _check_options(options: _Options) -> None:
    _check_timeout("timeout", options.timeout)
    if options.total_timeout is not None:
        _check_non_negative("total_timeout", options.total_timeout)
    _check_non_negative("max_retries", options.retry.max_retries, integer=True)
    _check_non_negative("initial_retry_delay", options.retry.initial_delay)
    _check_non_negative("max_retry_delay", options.retry.max_delay)
    if options.stream.idle_timeout is not None:
        _check_non_negative("stream_idle_timeout", options.stream.idle_timeout)
    _check_non_negative("max_stream_event_size", options.stream.max_event_size, integer=True)
    if options.stream.max_event_size == 0:
        raise InvalidArgumentError("max_stream_event_size", "must be at least 1")
    headers: Mapping[Any, object] = options.default_headers
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgumentError("default_headers", "names and values must be strings")
