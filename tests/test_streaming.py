"""Streaming: chunks out of server-sent events, the helpers, and every way a stream can fail.

Bodies are scripted (see ``streams.py``) so that each test controls exactly which bytes
arrive, how they are cut, and where the connection breaks.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctgt_async import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncStream,
    ChatCompletionChunk,
    RateLimitError,
    StreamDecodeError,
    StreamInterruptedError,
)

from streams import (
    KEY,
    MESSAGES,
    ScriptedBody,
    ScriptedServer,
    chunk,
    client_for,
    sse,
    stream_response,
    words_stream,
)

pytestmark = pytest.mark.anyio

WORDS = ["The", "sky", "is", "blue", "because", "of", "Rayleigh", "scattering."]
TEXT = " ".join(WORDS)


async def open_stream(
    server: ScriptedServer, **options: object
) -> AsyncStream[ChatCompletionChunk]:
    client = client_for(server, **options)
    return await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)


async def collect(stream: AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    async with stream:
        return [c async for c in stream]


def joined(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- the happy path ------------------------------------------------------------------------


async def test_chunks_arrive_typed_and_in_order() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS))))
    chunks = await collect(await open_stream(server))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert joined(chunks) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) == len(WORDS) + 2


async def test_the_request_asks_for_an_event_stream() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS))))
    await collect(await open_stream(server))
    request = server.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.content)["stream"] is True


async def test_stream_exposes_response_and_request_id() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS)), **{"x-request-id": "req_7"}))
    stream = await open_stream(server)
    async with stream:
        assert stream.response.status_code == 200
        assert stream.request_id == "req_7"
        assert "open" in repr(stream)
    assert "closed" in repr(stream)


async def test_text_stream_yields_only_non_empty_content() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS))))
    stream = await open_stream(server)
    async with stream.text_stream as texts:
        pieces = [text async for text in texts]
    assert pieces == [WORDS[0]] + [" " + w for w in WORDS[1:]]


async def test_get_final_completion_assembles_the_deltas() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS, usage=True))))
    completion = await (await open_stream(server)).get_final_completion()
    assert completion.id == "chatcmpl-s1"
    assert completion.model == "gemini-2.5-flash-lite"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(WORDS)


async def test_get_final_completion_after_partly_iterating() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS))))
    stream = await open_stream(server)
    seen = [await stream.__anext__() for _ in range(3)]
    completion = await stream.get_final_completion()
    assert joined(seen) == "The sky"
    assert completion.choices[0].message.content == TEXT
    assert completion.usage is None


async def test_get_final_completion_joins_each_choice_separately() -> None:
    events = [
        chunk("", role="assistant", index=0),
        chunk("", role="assistant", index=1),
        chunk("A", index=0),
        chunk("B", index=1),
        chunk("a", index=0, finish_reason="stop"),
        chunk("b", index=1, finish_reason="length"),
    ]
    server = ScriptedServer(stream_response(sse(*events)))
    completion = await (await open_stream(server)).get_final_completion()
    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "Aa", "stop"),
        (1, "Bb", "length"),
    ]


async def test_unknown_fields_in_chunks_are_kept() -> None:
    server = ScriptedServer(
        stream_response(sse(chunk("x", system_fingerprint="fp"), chunk(finish_reason="stop")))
    )
    chunks = await collect(await open_stream(server))
    assert chunks[0].model_extra == {"system_fingerprint": "fp"}


async def test_keep_alive_comments_and_named_events_are_not_chunks() -> None:
    body = b": keep-alive\n\nevent: ping\ndata: {}\n\n" + sse(*words_stream(WORDS))
    chunks = await collect(await open_stream(ScriptedServer(stream_response(body))))
    assert joined(chunks) == TEXT


async def test_a_stream_without_done_ends_cleanly_after_a_finish_reason() -> None:
    body = sse(*words_stream(WORDS), done=False)
    chunks = await collect(await open_stream(ScriptedServer(stream_response(body))))
    assert joined(chunks) == TEXT


@pytest.mark.parametrize("cut", range(1, 120))
async def test_every_cut_of_the_body_gives_the_same_chunks(cut: int) -> None:
    body = sse(*words_stream(["naïve", "café", "日本"]))
    assert cut < len(body)
    server = ScriptedServer(stream_response(ScriptedBody([body[:cut], body[cut:]])))
    chunks = await collect(await open_stream(server))
    assert joined(chunks) == "naïve café 日本"


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=60))
async def test_random_cuts_of_a_long_body_give_the_same_chunks(cuts: list[int]) -> None:
    words = [f"w{i}é" for i in range(200)]
    body = sse(*words_stream(words))
    points = sorted({c % len(body) for c in cuts} - {0})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    server = ScriptedServer(stream_response(ScriptedBody(pieces)))
    chunks = await collect(await open_stream(server))
    assert joined(chunks) == " ".join(words)


# -- errors before the first chunk ----------------------------------------------------------


async def test_http_errors_raise_at_create_and_are_retried_there() -> None:
    server = ScriptedServer(
        httpx.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow"}}),
        stream_response(sse(*words_stream(WORDS))),
    )
    chunks = await collect(await open_stream(server))
    assert joined(chunks) == TEXT
    assert len(server.requests) == 2


async def test_http_errors_raise_typed_from_create_after_retries() -> None:
    server = ScriptedServer(httpx.Response(429, json={"error": {"message": "slow"}}))
    with pytest.raises(RateLimitError, match="slow") as caught:
        await open_stream(server)
    assert caught.value.attempts == 3


async def test_a_json_answer_to_a_stream_request_is_a_typed_error() -> None:
    server = ScriptedServer(
        stream_response(b'{"id": "x", "note": "streaming off"}', content_type="application/json")
    )
    with pytest.raises(APIResponseValidationError, match="application/json") as caught:
        await open_stream(server)
    assert "streaming off" in caught.value.body


# -- errors mid-stream -----------------------------------------------------------------------


async def expect_mid_stream(
    body: bytes | ScriptedBody, error: type[APIError], **options: object
) -> tuple[APIError, list[ChatCompletionChunk]]:
    server = ScriptedServer(stream_response(body))
    stream = await open_stream(server, **options)
    received: list[ChatCompletionChunk] = []
    with pytest.raises(error) as caught:
        async with stream:
            async for c in stream:
                received.append(c)
    assert len(server.requests) == 1, "a stream is never retried once it has started"
    return caught.value, received


async def test_an_error_payload_mid_stream_raises_a_status_error_with_the_partial_text() -> None:
    body = sse(
        chunk("", role="assistant"),
        chunk("Half"),
        {"error": {"message": "model overloaded", "type": "server_error", "code": "overloaded"}},
        done=False,
    )
    error, received = await expect_mid_stream(body, APIStatusError)
    assert isinstance(error, APIStatusError)
    assert "model overloaded" in str(error)
    assert error.type == "server_error"
    assert error.code == "overloaded"
    assert error.partial_text == {0: "Half"}
    assert error.chunks_received == 2
    assert len(received) == 2


async def test_an_error_event_mid_stream_raises_a_status_error() -> None:
    body = sse(chunk("Hi"), done=False) + b'event: error\ndata: {"error": {"message": "boom"}}\n\n'
    error, _ = await expect_mid_stream(body, APIStatusError)
    assert "boom" in str(error)
    assert error.partial_text == {0: "Hi"}


async def test_an_error_event_with_plain_text() -> None:
    error, _ = await expect_mid_stream(b"event: error\ndata: upstream died\n\n", APIStatusError)
    assert "upstream died" in str(error)


async def test_an_error_event_never_shows_the_key() -> None:
    body = b'event: error\ndata: {"error": {"message": "bad key ' + KEY.encode() + b'"}}\n\n'
    error, _ = await expect_mid_stream(body, APIStatusError)
    assert KEY not in str(error)


async def test_invalid_json_raises_a_decode_error_quoting_what_arrived() -> None:
    body = sse(chunk("ok"), "{not json" + "x" * 1000, done=False)
    error, received = await expect_mid_stream(body, StreamDecodeError)
    assert "not valid JSON" in str(error)
    assert "{not json" in str(error)
    assert len(str(error)) < 400
    assert error.chunks_received == 1
    assert joined(received) == "ok"


async def test_json_that_is_not_a_chunk_raises_a_decode_error_naming_the_field() -> None:
    error, _ = await expect_mid_stream(sse({"id": "x", "choices": []}), StreamDecodeError)
    assert "not a valid chunk" in str(error)
    assert "created" in str(error)


async def test_an_oversize_event_is_a_decode_error() -> None:
    body = b"data: " + b"x" * 5000
    error, _ = await expect_mid_stream(body, StreamDecodeError, max_stream_event_size=1024)
    assert "1024" in str(error)


async def test_a_drop_before_any_finish_reason_is_an_interruption_with_partial_text() -> None:
    script = ScriptedBody(
        [
            sse(chunk("", role="assistant"), chunk("Hel"), chunk("lo"), done=False),
            httpx.RemoteProtocolError("peer closed"),
        ]
    )
    error, received = await expect_mid_stream(script, StreamInterruptedError)
    assert isinstance(error, APIConnectionError)
    assert "cut off after 3 chunk(s)" in str(error)
    assert "peer closed" in str(error)
    assert error.partial_text == {0: "Hello"}
    assert error.chunks_received == 3
    assert len(received) == 3


async def test_a_body_that_ends_before_any_finish_reason_is_an_interruption() -> None:
    body = sse(chunk("", role="assistant"), chunk("Hel"), done=False)
    error, _ = await expect_mid_stream(body, StreamInterruptedError)
    assert "the body ended" in str(error)


async def test_a_body_that_ends_inside_an_event_is_an_interruption() -> None:
    body = sse(chunk("Hel"), done=False) + b'data: {"id": "chatcmpl-s1", "obj'
    error, _ = await expect_mid_stream(body, StreamInterruptedError)
    assert error.partial_text == {0: "Hel"}


async def test_a_drop_after_the_finish_reason_is_tolerated() -> None:
    script = ScriptedBody([sse(*words_stream(WORDS), done=False), httpx.ReadError("reset")])
    chunks = await collect(await open_stream(ScriptedServer(stream_response(script))))
    assert joined(chunks) == TEXT


async def test_a_read_timeout_between_chunks_is_an_api_timeout_error() -> None:
    script = ScriptedBody([sse(chunk("Hel"), done=False), httpx.ReadTimeout("slow")])
    error, _ = await expect_mid_stream(script, APITimeoutError)
    assert error.partial_text == {0: "Hel"}
    assert error.request.url.path == "/v1/chat/completions"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadError("r"),
        httpx.RemoteProtocolError("p"),
        httpx.ReadTimeout("t"),
        httpx.WriteError("w"),
    ],
)
async def test_no_raw_httpx_exception_escapes_the_iterator(failure: Exception) -> None:
    script = ScriptedBody([sse(chunk("a"), done=False), failure])
    error, _ = await expect_mid_stream(script, APIConnectionError)
    assert isinstance(error.__cause__, httpx.HTTPError)


async def test_get_final_completion_after_close_is_an_interruption() -> None:
    server = ScriptedServer(stream_response(sse(*words_stream(WORDS))))
    stream = await open_stream(server)
    await stream.__anext__()
    await stream.close()
    with pytest.raises(StreamInterruptedError, match="closed before it ended"):
        await stream.get_final_completion()


async def test_get_final_completion_of_an_empty_stream_is_an_error() -> None:
    stream = await open_stream(ScriptedServer(stream_response(b"data: [DONE]\n\n")))
    with pytest.raises(APIResponseValidationError, match="without a single chunk"):
        await stream.get_final_completion()
