"""Serve an ASGI app (the simulator) on a loopback socket with uvicorn, inside the caller's loop.

Socket mode exists for what the in-process transport cannot show: real HTTP framing, a TCP
connection closed halfway through a chunked body, clients in other languages. uvicorn is an
optional extra (`pip install 'ctgt-async[server]'`) and is imported only here, only when
`serve()` is called.

uvicorn runs on asyncio only, so `serve()` refuses to start under trio. The server is embedded:
it runs as a task in the current event loop, leaves signal handlers and the logging
configuration alone (only uvicorn's own loggers are set to warnings), and is shut down when
the `async with` block ends, cutting any response still in progress (a client still reading
sees a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import anyio

from ._faults import ConnectionDropped

if TYPE_CHECKING:
    import uvicorn

    from ._asgi import ASGIApp, Receive, Scope, Send

__all__ = ["serve"]

SHUTDOWN_GRACE = 3.0
"""Seconds a clean shutdown may take before open connections are cut."""

_INSTALL_HINT = (
    "Simulator.serve() needs uvicorn. Install the server extra: pip install 'ctgt-async[server]'"
)


class _HideSimulatedDrops(logging.Filter):
    """uvicorn logs an app exception after the response started as an error; a simulated
    drop is not one, so keep it out of the logs while leaving real errors visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _import_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "Simulator.serve() runs uvicorn, which needs asyncio; under trio use "
            "SimulatorTransport in process, or run the server in an asyncio process."
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so the port is known before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Interruptible:
    """Wraps the app so that leaving `serve()` cuts the responses still in progress.

    Without this a stalled stream would hold shutdown for uvicorn's whole grace period. A cut
    response ends like a dropped connection (`ConnectionDropped`, kept out of the logs).
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._live: set[anyio.CancelScope] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan must run its own shutdown
            await self._app(scope, receive, send)
            return
        with anyio.CancelScope() as cancel_scope:
            self._live.add(cancel_scope)
            try:
                await self._app(scope, receive, send)
                return
            finally:
                self._live.discard(cancel_scope)
        raise ConnectionDropped("the simulator's server is shutting down")

    def interrupt(self) -> None:
        for cancel_scope in self._live:
            cancel_scope.cancel()


def _make_server(app: ASGIApp, ready: anyio.Event, *, lifespan: bool) -> uvicorn.Server:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """A uvicorn server that says when it listens and leaves signal handling to the host."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            ready.set()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app,
        interface="asgi3",
        http="h11",
        ws="none",
        lifespan="on" if lifespan else "off",
        log_level="warning",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
    )
    return EmbeddedServer(config)


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, lifespan: bool = False
) -> AsyncIterator[str]:
    """Serve `app` on `host:port` while the block runs; yields the API base URL (`.../v1`).

    `lifespan=True` runs the app's startup and shutdown (a web app under test needs them; the
    simulator has none).
    """
    _import_uvicorn()
    _require_asyncio()
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    ready, stopped = anyio.Event(), anyio.Event()
    interruptible = _Interruptible(app)
    drops_filter = _HideSimulatedDrops()
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addFilter(drops_filter)
    failure: Exception | None = None
    try:
        server = _make_server(interruptible, ready, lifespan=lifespan)

        async def run_server() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                stopped.set()
                ready.set()  # never leave the caller waiting on a server that failed to start

        async with anyio.create_task_group() as group:
            group.start_soon(run_server)
            await ready.wait()
            if server.started:
                try:
                    yield f"http://{url_host}:{bound_port}/v1"
                except Exception as exc:
                    # Re-raised below, outside the task group, so that a failing test shows
                    # its own exception rather than one wrapped in an ExceptionGroup.
                    failure = exc
                finally:
                    server.should_exit = True
                    interruptible.interrupt()
                    with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE + 1):
                        await stopped.wait()
                    if not stopped.is_set():
                        server.force_exit = True
                        group.cancel_scope.cancel()
    finally:
        uvicorn_logger.removeFilter(drops_filter)
        sock.close()
    if failure is not None:
        raise failure
    if not server.started:
        raise RuntimeError(f"uvicorn did not start on {host}:{bound_port}")
