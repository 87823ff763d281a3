"""Building blocks for stream tests: chunks, SSE bytes, and a scripted response body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from ctgt_async import AsyncCTGT, MessageParam

KEY = "sk-test-stream-secret"
BASE = "https://api.test/v1"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish_reason: str | None = None,
    index: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gemini-2.5-flash-lite",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def words_stream(words: Sequence[str], *, usage: bool = False) -> list[dict[str, Any]]:
    """The chunks a server sends for a reply made of ``words``: role, deltas, finish."""
    chunks = [chunk("", role="assistant")]
    chunks += [chunk(word if i == 0 else " " + word) for i, word in enumerate(words)]
    last = chunk(finish_reason="stop")
    if usage:
        last["usage"] = {
            "prompt_tokens": 3,
            "completion_tokens": len(words),
            "total_tokens": 3 + len(words),
        }
    chunks.append(last)
    return chunks


def sse(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    """Encode chunks (dicts) or raw data strings as ``data:`` events, then ``[DONE]``."""
    out = b"".join(
        b"data: " + (json.dumps(e) if isinstance(e, dict) else e).encode() + b"\n\n" for e in events
    )
    return out + (b"data: [DONE]\n\n" if done else b"")


STALL = object()
"""In a scripted body: wait forever at this point (until cancelled or closed)."""


class ScriptedBody(httpx.AsyncByteStream):
    """A response body that yields given pieces, raises given errors, and records closing."""

    def __init__(self, script: Iterable[bytes | BaseException | object]) -> None:
        self.script = list(script)
        self.pieces_sent = 0
        self.exhausted = False
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for step in self.script:
            if isinstance(step, BaseException):
                raise step
            if step is STALL:
                await anyio.sleep_forever()
            assert isinstance(step, bytes)
            if self.closed:  # like a socket: nothing more to read once closed
                raise httpx.ReadError("read from a closed connection")
            self.pieces_sent += 1
            yield step
        self.exhausted = True

    async def aclose(self) -> None:
        # A checkpoint first: a close that is not shielded from a cancellation stops here.
        await anyio.lowlevel.checkpoint()
        self.closed = True


class ScriptedServer:
    """A `MockTransport` handler answering each request with the next scripted response."""

    def __init__(self, *responses: Callable[[], httpx.Response] | httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return response() if callable(response) else response


def stream_response(
    body: bytes | ScriptedBody, *, content_type: str = "text/event-stream", **headers: str
) -> httpx.Response:
    stream = body if isinstance(body, ScriptedBody) else ScriptedBody([body])
    return httpx.Response(200, headers={"content-type": content_type, **headers}, stream=stream)


def client_for(server: ScriptedServer, **options: Any) -> AsyncCTGT:
    options.setdefault("initial_retry_delay", 0)
    return AsyncCTGT(api_key=KEY, base_url=BASE, transport=httpx.MockTransport(server), **options)
