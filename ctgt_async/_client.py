"""`AsyncCTGT`: configuration, the connection pool, and sending one request with retries.

The client is a thin async shell. Building the body (`_request`), mapping errors
(`_errors`), deciding on retries (`_retry`) and decoding streams (`_sse`, `_streaming`) live
in their own modules and are tested without a network.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

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
    make_status_error,
)
from ._retry import RetryPolicy, call_with_retries, parse_retry_after
from ._streaming import StreamOptions
from ._types import TimeoutTypes
from ._version import __version__

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
        http_client: Your own `httpx.AsyncClient`, for proxies, custom TLS or a mock
            transport. You keep ownership: `close` leaves it open.
        transport: An httpx transport for the pool this client creates and owns (for
            example the simulator's); ignored when ``http_client`` is given.
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
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise InvalidArgumentError(
                "http_client", f"must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        owns = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                timeout=options.timeout, limits=DEFAULT_LIMITS, transport=transport
            )
        self._setup(options, http_client, owns_http_client=owns)

    def _setup(
        self, options: _Options, http_client: httpx.AsyncClient, *, owns_http_client: bool
    ) -> None:
        # Imported here: `_chat` imports the streaming machinery, which the client module does
        # not need at import time.
        from ._chat import Chat

        self._options = options
        self._http = http_client
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
    def _stream_options(self) -> StreamOptions:
        return dataclasses.replace(self._options.stream, secrets=(self._options.api_key,))

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
        the original is closed. Typical use is one call with other settings::

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
        copy._setup(options, self._http, owns_http_client=False)
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
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
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
        return await call_with_retries(
            lambda: self._send_once(request, stream=stream),
            policy=self._options.retry,
            request=request,
            total_timeout=total_timeout,
        )


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
