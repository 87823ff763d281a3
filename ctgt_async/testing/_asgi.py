"""The small slice of ASGI 3 the simulator speaks, without a web framework.

The simulator is a plain ASGI callable so the same object can run in process (through
`SimulatorTransport`) and behind uvicorn on a real socket. The `Responder` below keeps the
bookkeeping of one response in one place: the status and chunk count go into the request's
record, a client that went away is noticed both ways ASGI reports it (an `http.disconnect`
from `receive()`, or an `OSError` from `send()`), and sends after that become no-ops.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._recording import RecordedRequest

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Responder",
    "Scope",
    "Send",
    "decode_headers",
    "dump_json",
    "json_or_none",
    "lifespan",
    "read_body",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HeaderList = list[tuple[bytes, bytes]]


def dump_json(payload: object) -> bytes:
    """Encode compactly and as UTF-8, the way API servers usually put JSON on the wire."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """Collect the whole request body; the flag is true when the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict with lower-case names; repeated headers joined with `", "`."""
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name, value = name_bytes.decode("latin-1").lower(), value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def json_or_none(content: bytes) -> object:
    """Parse a body for the record; anything that is not JSON is recorded as `None`."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: the simulator has nothing to set up or tear down."""
    while True:
        message: Message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Responder:
    """Send one HTTP response and keep its `RecordedRequest` up to date.

    A disconnected client is never an error here: the simulator just stops talking, as a real
    server would, and the record says `disconnected=True`.
    """

    def __init__(self, receive: Receive, send: Send, record: RecordedRequest) -> None:
        self._receive = receive
        self._send = send
        self.record = record
        self.gone = False
        self._finishing = False
        self._race_scope: anyio.CancelScope | None = None

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Send the status line and headers; the request id header goes on every response."""
        raw: HeaderList = [(b"x-request-id", self.record.request_id.encode("ascii"))]
        for name, value in headers:
            raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.record.status = status
        await self._emit({"type": "http.response.start", "status": status, "headers": raw})

    async def chunk(self, data: bytes) -> None:
        """Send one piece of a streamed body and count it as a stream chunk."""
        if await self._emit({"type": "http.response.body", "body": data, "more_body": True}):
            self.record.chunks_sent += 1

    async def end(self, data: bytes = b"") -> None:
        """Send the last piece of the body, which completes the response."""
        # Some servers answer `receive()` with `http.disconnect` as soon as the response is
        # complete; flag it first so that this is not mistaken for a client leaving.
        self._finishing = True
        if await self._emit({"type": "http.response.body", "body": data, "more_body": False}):
            self.record.completed = True

    async def json(
        self, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send a complete JSON response."""
        body = dump_json(payload)
        framing = [("content-type", "application/json"), ("content-length", str(len(body)))]
        await self.start(status, [*framing, *headers])
        await self.end(body)

    async def race_disconnect(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` while listening for the client leaving; whichever ends first wins.

        This is how a server notices a client that gave up on a slow or stalled response: it
        has to keep reading `receive()` while it writes, or it would only find out at the next
        write, which during a stall never comes.
        """
        if self.gone:
            return
        async with anyio.create_task_group() as group:
            self._race_scope = group.cancel_scope
            group.start_soon(self._watch_disconnect)
            await work()
            group.cancel_scope.cancel()
        self._race_scope = None

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._client_left()
                return

    async def _emit(self, message: Message) -> bool:
        """Send unless the client is known to be gone; true when the message went out."""
        if self.gone:
            return False
        try:
            await self._send(message)
        except OSError:
            # ASGI 2.4: servers may raise an OSError subclass for a send on a closed connection.
            self._client_left()
            return False
        return True

    def _client_left(self) -> None:
        if self._finishing:
            # The last piece is on its way; let it land instead of cancelling its send.
            return
        self.record.disconnected = True
        self.gone = True
        if self._race_scope is not None:
            self._race_scope.cancel()
