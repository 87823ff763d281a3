"""A connection pool whose cost per request does not grow with the number of connections.

httpx 0.28 sends requests through httpcore's ``AsyncConnectionPool``, which on every request
and every response close walks all of its connections, checking each one's state and polling
each idle socket. At 64 concurrent requests that walk costs about 3 ms of CPU per request,
most of a batch job's client time (encode/httpcore#1035 describes the quadratic cost).

`PooledTransport` keeps the same httpcore connection objects but books them in O(1): idle
connections wait in a last-in-first-out list per origin, a request takes the most recently
used one (checking only that one for expiry), and a released connection goes back on the list
or is closed. A request that finds every connection busy and the limit reached waits for the
next release, up to the pool timeout.

It speaks HTTP/1.1, like httpx's own default transport. It is used by `AsyncCTGT` only when
the client creates its own pool and no proxy is configured in the environment; pass
``http_client=`` to use anything else. Because it drives ``httpcore.AsyncHTTPConnection``,
respx's default mocks intercept its requests as they do httpx's.
"""

from __future__ import annotations

import functools
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import httpx

from ._config import DEFAULT_LIMITS

if TYPE_CHECKING:
    # Imported when the first transport is made, as httpx does: importing httpcore also
    # imports trio when it is installed, which would add 50 ms to `import ctgt_async`.
    import httpcore

__all__ = ["PooledTransport"]

Origin = tuple[bytes, bytes, int]


@functools.cache
def _exception_map() -> dict[type[Exception], type[httpx.TransportError]]:
    """httpcore's exceptions and their httpx twins (httpcore and httpx name them alike)."""
    import httpcore

    return {
        httpcore.ConnectTimeout: httpx.ConnectTimeout,
        httpcore.ReadTimeout: httpx.ReadTimeout,
        httpcore.WriteTimeout: httpx.WriteTimeout,
        httpcore.PoolTimeout: httpx.PoolTimeout,
        httpcore.TimeoutException: httpx.TimeoutException,
        httpcore.ConnectError: httpx.ConnectError,
        httpcore.ReadError: httpx.ReadError,
        httpcore.WriteError: httpx.WriteError,
        httpcore.NetworkError: httpx.NetworkError,
        httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
        httpcore.LocalProtocolError: httpx.LocalProtocolError,
        httpcore.ProtocolError: httpx.ProtocolError,
        httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
        httpcore.ProxyError: httpx.ProxyError,
    }


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Requests only ever see httpx's exceptions, as with httpx's own transport."""
    exceptions = _exception_map()
    try:
        yield
    except tuple(exceptions) as exc:
        mapped = next(exceptions[cls] for cls in type(exc).__mro__ if cls in exceptions)
        raise mapped(str(exc), request=request) from exc


class _Body(httpx.AsyncByteStream):
    """The response body; closing it gives the connection back to the pool."""

    def __init__(
        self,
        pool: PooledTransport,
        connection: httpcore.AsyncHTTPConnection,
        origin: Origin,
        response: httpcore.Response,
        request: httpx.Request,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._origin = origin
        self._response = response
        self._request = request
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        with anyio.CancelScope(shield=True):
            try:
                with _httpx_errors(self._request):
                    await self._response.aclose()
            finally:
                await self._pool._release(self._origin, self._connection)


class PooledTransport(httpx.AsyncBaseTransport):
    """An httpx transport over httpcore connections with constant-time pooling.

    Args:
        limits: ``max_connections`` bounds open connections (busy and idle) across origins;
            ``max_keepalive_connections`` bounds the idle ones kept; ``keepalive_expiry``
            closes an idle connection that waited longer than that.
        verify: TLS verification, as for `httpx.AsyncClient` (``True``, ``False`` or an
            `ssl.SSLContext`).
    """

    def __init__(
        self, *, limits: httpx.Limits = DEFAULT_LIMITS, verify: ssl.SSLContext | bool = True
    ) -> None:
        import httpcore  # noqa: F401 - loaded with the first transport, not with the package

        self._limits = limits
        self._ssl_context = verify if isinstance(verify, ssl.SSLContext) else None
        self._verify = verify
        self._idle: dict[Origin, list[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: deque[anyio.Event] = deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections, busy or idle."""
        return self._open

    @property
    def idle_connections(self) -> int:
        """Open connections waiting for a request."""
        return self._idle_count

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context(verify=self._verify)
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import httpcore  # already loaded by __init__: a dictionary lookup

        if self._closed:
            raise RuntimeError("This transport is closed.")
        url = request.url
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or _default_port(url))
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        timeouts = request.extensions.get("timeout", {})
        while True:
            connection = await self._acquire(origin, timeouts.get("pool"), request)
            try:
                with _httpx_errors(request):
                    response = await connection.handle_async_request(core_request)
            except httpcore.ConnectionNotAvailable:
                # Lost a race for a connection that was closing: try another one.
                await self._release(origin, connection)
                continue
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._release(origin, connection)
                raise
            break
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, connection, origin, response, request),
            extensions=response.extensions,
        )

    async def _acquire(
        self, origin: Origin, pool_timeout: float | None, request: httpx.Request
    ) -> httpcore.AsyncHTTPConnection:
        try:
            with anyio.fail_after(pool_timeout):
                return await self._checkout(origin)
        except TimeoutError:
            raise httpx.PoolTimeout(
                "Timed out waiting for a free connection.", request=request
            ) from None

    async def _checkout(self, origin: Origin) -> httpcore.AsyncHTTPConnection:
        """An idle connection to ``origin``, a new one, or the next one released."""
        import httpcore

        while True:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                self._idle_count -= 1
                if connection.is_available() and not connection.has_expired():
                    return connection
                await self._discard(connection)
            limit = self._limits.max_connections
            if limit is None or self._open < limit:
                self._open += 1
                return httpcore.AsyncHTTPConnection(
                    origin=httpcore.Origin(*origin),
                    ssl_context=self._context() if origin[0] == b"https" else None,
                    keepalive_expiry=self._limits.keepalive_expiry,
                )
            if self._idle_count:
                # Every slot is taken, some by idle connections to other origins: close one
                # of those to make room.
                await self._discard(self._evict_oldest_idle())
                continue
            waiter = anyio.Event()
            self._waiters.append(waiter)
            try:
                await waiter.wait()
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.is_set():
                    self._wake_one()  # pass on the wake-up this request cannot use
                raise

    def _evict_oldest_idle(self) -> httpcore.AsyncHTTPConnection:
        for connections in self._idle.values():
            if connections:
                self._idle_count -= 1
                return connections.pop(0)
        raise AssertionError("no idle connection to evict")  # pragma: no cover

    async def _release(self, origin: Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        """Take back a connection after its response: keep it if reusable, else close it."""
        keep = self._limits.max_keepalive_connections
        if (
            not self._closed
            and connection.is_idle()
            and not connection.is_closed()
            and (keep is None or self._idle_count < keep)
        ):
            self._idle.setdefault(origin, []).append(connection)
            self._idle_count += 1
            self._wake_one()
            return
        await self._discard(connection)

    async def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        self._open -= 1
        self._wake_one()
        with anyio.CancelScope(shield=True):
            await connection.aclose()

    def _wake_one(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()

    async def aclose(self) -> None:
        """Close every idle connection; busy ones close when their responses do."""
        self._closed = True
        idle = [c for connections in self._idle.values() for c in connections]
        self._idle.clear()
        self._idle_count = 0
        for connection in idle:
            await self._discard(connection)

    async def __aenter__(self) -> PooledTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
