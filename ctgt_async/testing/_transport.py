"""`SimulatorTransport`: run an ASGI app in process, with real streaming and no sockets.

httpx's own `ASGITransport` collects the whole response before it returns, so a client that
uses it cannot observe time to first token, a stream that breaks halfway, a stall, or what
happens when it closes a stream early. This transport returns the `httpx.Response` as soon as
the app sends `http.response.start` and hands out each body piece when the app sends it.

How it works: the transport owns an anyio task group, entered by `async with` on the
`httpx.AsyncClient` (which enters its transport) and left when the client closes. Each request
runs the app as a task in that group and talks to it through a zero-buffer memory object
stream, so the app's `send()` returns only once the client has taken the piece, like a
socket with no buffer. Failure modes map to what a network client would see:

* the app raises before starting a response: the exception is re-raised from the request,
  since that is a bug in the app and a test should see its traceback;
* the app raises after starting (how the simulator drops a connection), or returns without
  finishing the body: reading the body raises `httpx.RemoteProtocolError`;
* the client closes the response early: the app's `receive()` returns `http.disconnect` and
  its `send()` raises `OSError`; the close waits for the app to finish (cancelling it after
  `disconnect_grace` seconds if it ignores both), so no task outlives its response;
* the request's read timeout (httpx's `timeout=`) is honoured while waiting for the response
  to start and for each body piece, raising `httpx.ReadTimeout` as over a network.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

import anyio
import httpx

from ._asgi import ASGIApp, Message

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["SimulatorTransport"]

_NOT_ENTERED = (
    "SimulatorTransport must be entered before use, because it runs the app in a task group "
    "it owns. Use the client as a context manager: "
    "`async with httpx.AsyncClient(transport=SimulatorTransport(app)) as client: ...`"
)


class _ClientDisconnectedError(OSError):
    """Raised by `send()` once the client has closed the response (ASGI 2.4 asks for OSError)."""


@dataclass
class _AppFailed:
    error: Exception


_Item: TypeAlias = Message | _AppFailed


def _read_timeout(request: httpx.Request) -> float | None:
    timeouts: dict[str, Any] = request.extensions.get("timeout", {})
    read = timeouts.get("read")
    return float(read) if read is not None else None


class _Exchange:
    """One request/response between the client and an app task."""

    def __init__(self, request: httpx.Request, body: bytes, grace: float) -> None:
        self.request = request
        self.grace = grace
        self.to_client: MemoryObjectSendStream[_Item]
        self.from_app: MemoryObjectReceiveStream[_Item]
        self.to_client, self.from_app = anyio.create_memory_object_stream[_Item](0)
        self.app_scope = anyio.CancelScope()
        self.finished = anyio.Event()
        self.disconnected = anyio.Event()
        self._body: bytes | None = body
        self._started = False
        self._complete = False

    async def run(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        try:
            with self.app_scope:
                try:
                    await app(scope, self.receive, self.send)
                except Exception as exc:
                    # If the client is gone it will never read this; nothing else to do.
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await self.to_client.send(_AppFailed(exc))
        finally:
            self.to_client.close()
            self.finished.set()

    async def receive(self) -> Message:
        if self._body is not None and not self.disconnected.is_set():
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected.is_set():
            raise _ClientDisconnectedError("the client closed the response")
        kind = message["type"]
        if not self._started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._started = True
        elif self._complete:
            raise RuntimeError(f"{kind!r} sent after the response was complete")
        elif kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        elif not message.get("more_body", False):
            self._complete = True
        try:
            await self.to_client.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise _ClientDisconnectedError("the client closed the response") from None

    async def next_item(self) -> _Item | None:
        """The app's next message, or `None` once it has stopped sending."""
        timeout = _read_timeout(self.request)
        try:
            with anyio.fail_after(timeout):
                return await self.from_app.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        except TimeoutError:
            message = "timed out reading the response"
            raise httpx.ReadTimeout(message, request=self.request) from None

    async def close(self) -> None:
        """Tell the app the client left, and wait (shielded, bounded) for it to finish."""
        self.disconnected.set()
        self.from_app.close()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.grace):
                await self.finished.wait()
            if not self.finished.is_set():
                self.app_scope.cancel()
                await self.finished.wait()


class _ResponseStream(httpx.AsyncByteStream):
    """The body as the app sends it, piece by piece.

    It is its own iterator rather than an async generator: a generator abandoned halfway
    (a client that stops reading) is left to the garbage collector, which trio reports.
    """

    def __init__(self, exchange: _Exchange, on_close: Callable[[_Exchange], None]) -> None:
        self._exchange = exchange
        self._on_close = on_close
        self._done = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        exchange = self._exchange
        while not self._done:
            item = await exchange.next_item()
            if item is None:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body",
                    request=exchange.request,
                )
            if isinstance(item, _AppFailed):
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body "
                    f"({type(item.error).__name__}: {item.error})",
                    request=exchange.request,
                ) from item.error
            self._done = not item.get("more_body", False)
            body = bytes(item.get("body", b""))
            if body:
                return body
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._exchange.close()
            self._on_close(self._exchange)


class SimulatorTransport(httpx.AsyncBaseTransport):
    """An httpx transport that streams responses from an ASGI app running in process.

    Use it through a client opened with `async with`, which enters the transport:

        async with httpx.AsyncClient(
            transport=SimulatorTransport(simulator), base_url="http://sim/v1"
        ) as client:
            ...

    Works under asyncio and trio. Enter and close it in the same task, as `async with` does.
    `disconnect_grace` bounds how long closing a response waits for the app to notice the
    client left before the app task is cancelled.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: tuple[str, int] = ("127.0.0.1", 123),
        disconnect_grace: float = 1.0,
    ) -> None:
        self.app = app
        self.client = client
        self.disconnect_grace = disconnect_grace
        self._group: TaskGroup | None = None
        self._closed = False
        self._exchanges: set[_Exchange] = set()

    async def __aenter__(self) -> SimulatorTransport:
        if self._group is not None or self._closed:
            raise RuntimeError("a SimulatorTransport can only be entered once")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every app task still running and close the task group."""
        if self._closed:
            return
        self._closed = True
        group, self._group = self._group, None
        for exchange in self._exchanges:
            exchange.disconnected.set()
            exchange.from_app.close()
            exchange.to_client.close()
        self._exchanges.clear()
        if group is not None:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("this SimulatorTransport has been closed")
        if self._group is None:
            raise RuntimeError(_NOT_ENTERED)
        body = await request.aread()
        exchange = _Exchange(request, body, self.disconnect_grace)
        self._exchanges.add(exchange)
        self._group.start_soon(exchange.run, self.app, self._scope(request))
        try:
            item = await exchange.next_item()
        except BaseException:
            await self._release(exchange)
            raise
        if isinstance(item, _AppFailed):
            await self._release(exchange)
            raise item.error
        if item is None:
            await self._release(exchange)
            raise RuntimeError("the ASGI app returned without starting a response")
        headers = [(bytes(name), bytes(value)) for name, value in item.get("headers", [])]
        return httpx.Response(
            status_code=int(item["status"]),
            headers=headers,
            stream=_ResponseStream(exchange, self._exchanges.discard),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _release(self, exchange: _Exchange) -> None:
        await exchange.close()
        self._exchanges.discard(exchange)

    def _scope(self, request: httpx.Request) -> dict[str, Any]:
        url = request.url
        port = url.port or {"http": 80, "https": 443}.get(url.scheme, 80)
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "client": self.client,
            "server": (url.host, port),
            "extensions": {},
        }
