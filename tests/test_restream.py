"""Re-encoding a stream for a downstream client: framing, errors, and closing upstream."""

from __future__ import annotations

import json

import httpx
import pytest

from ctgt_async import AsyncStream, ChatCompletionChunk, InvalidArgumentError
from ctgt_async._sse import SSEDecoder

from streams import (
    KEY,
    MESSAGES,
    STALL,
    ScriptedBody,
    ScriptedServer,
    chunk,
    client_for,
    sse,
    stream_response,
    words_stream,
)

pytestmark = pytest.mark.anyio

WORDS = ["Roses", "are", "red,\nviolets", "are", "blue."]


async def open_stream(body: bytes | ScriptedBody) -> AsyncStream[ChatCompletionChunk]:
    client = client_for(ScriptedServer(stream_response(body)))
    return await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)


async def downstream(stream: AsyncStream[ChatCompletionChunk], format: str = "openai") -> bytes:
    return b"".join([piece async for piece in stream.to_sse(format)])  # type: ignore[arg-type]


def decode(raw: bytes) -> list[tuple[str, str]]:
    return [(event.event, event.data) for event in SSEDecoder().feed(raw)]


async def test_openai_format_sends_every_chunk_then_done() -> None:
    upstream = words_stream(WORDS)
    raw = await downstream(await open_stream(sse(*upstream)))
    events = decode(raw)
    assert events[-1] == ("message", "[DONE]")
    chunks = [ChatCompletionChunk.model_validate_json(data) for _, data in events[:-1]]
    assert [c.model_dump(exclude_unset=True) for c in chunks] == upstream


async def test_text_format_keeps_newlines_across_data_lines() -> None:
    raw = await downstream(await open_stream(sse(*words_stream(WORDS))), "text")
    assert b"data:  red,\ndata: violets" in raw  # "data: " then the text " red,"
    events = decode(raw)
    assert events[-1] == ("message", "[DONE]")
    assert "".join(data for _, data in events[:-1]) == " ".join(WORDS)


async def test_an_upstream_error_event_becomes_a_safe_error_event() -> None:
    error = {"error": {"message": f"overloaded, key {KEY}", "type": "server_error", "code": "busy"}}
    raw = await downstream(await open_stream(sse(chunk("Hi"), error, done=False)))
    events = decode(raw)
    assert events[0][0] == "message"
    name, data = events[-1]
    assert name == "error"
    assert json.loads(data) == {
        "error": {"message": "overloaded, key ***", "type": "server_error", "code": "busy"}
    }
    assert KEY.encode() not in raw
    assert b"[DONE]" not in raw


async def test_a_cut_upstream_becomes_a_fixed_error_message() -> None:
    body = ScriptedBody([sse(chunk("Hi"), done=False), httpx.RemoteProtocolError("10.0.0.7 reset")])
    raw = await downstream(await open_stream(body))
    name, data = decode(raw)[-1]
    assert name == "error"
    assert json.loads(data)["error"] == {
        "message": "The connection to the upstream model was lost.",
        "type": "connection_error",
        "code": None,
    }
    assert b"10.0.0.7" not in raw


async def test_invalid_upstream_data_becomes_an_invalid_response_error() -> None:
    raw = await downstream(await open_stream(sse("{oops", done=False)))
    assert json.loads(decode(raw)[-1][1])["error"]["type"] == "invalid_response"


async def test_closing_the_downstream_iterator_closes_upstream() -> None:
    body = ScriptedBody([sse(chunk("a"), chunk("b"), done=False), STALL])
    stream = await open_stream(body)
    sse_bytes = stream.to_sse()
    assert await sse_bytes.__anext__()
    await sse_bytes.aclose()  # type: ignore[attr-defined]
    assert body.closed
    assert stream.response.is_closed


async def test_an_unknown_format_is_refused_at_once() -> None:
    stream = await open_stream(sse(*words_stream(WORDS)))
    with pytest.raises(InvalidArgumentError, match="format"):
        stream.to_sse("html")  # type: ignore[arg-type]
    await stream.close()
