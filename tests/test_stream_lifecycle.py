"""A stream always releases its connection: at the end, on break, on error, on cancellation.

Each test watches the scripted response body: ``closed`` says whether the connection was
given up, ``exhausted`` whether the body was read to its end (what lets a real keep-alive
connection go back to the pool).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
import trio.testing

from ctgt_async import APITimeoutError, AsyncStream, ChatCompletionChunk, StreamInterruptedError

from streams import (
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

WORDS = ["one", "two", "three", "four", "five"]
FAKE_CLOCK_TRIO = pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
)


def chunk_pieces(count: int) -> list[bytes]:
    """A reply of ``count`` content chunks, each arriving as its own piece."""
    return [sse(c, done=False) for c in words_stream([f"w{i}" for i in range(count)])]


async def open_scripted(
    script: Sequence[bytes | object], **options: object
) -> tuple[AsyncStream[ChatCompletionChunk], ScriptedBody]:
    body = ScriptedBody(script)
    client = client_for(ScriptedServer(stream_response(body)), **options)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    return stream, body


async def test_a_stream_read_to_the_end_reads_the_whole_body_and_closes() -> None:
    stream, body = await open_scripted([sse(*words_stream(WORDS))])
    async for _ in stream:
        pass
    assert body.exhausted
    assert body.closed
    assert stream.response.is_closed


async def test_after_done_the_rest_of_the_body_is_drained_for_reuse() -> None:
    stream, body = await open_scripted([sse(*words_stream(WORDS)), b"", b": trailing\n\n"])
    async for _ in stream:
        pass
    assert body.exhausted
    assert body.pieces_sent == 3


async def test_the_drain_after_done_is_bounded() -> None:
    endless = [b":" + b"x" * 1023 + b"\n"] * 10_000
    stream, body = await open_scripted([sse(*words_stream(WORDS)), *endless])
    async for _ in stream:
        pass
    assert body.closed
    assert not body.exhausted
    assert body.pieces_sent < 100


async def test_break_inside_async_with_closes_at_once() -> None:
    stream, body = await open_scripted([*chunk_pieces(5), STALL])
    async with stream:
        async for _ in stream:
            break
    assert body.closed
    assert stream.response.is_closed


async def test_an_exception_in_the_loop_body_closes_and_propagates() -> None:
    stream, body = await open_scripted(chunk_pieces(5))
    with pytest.raises(LookupError, match="caller's bug"):
        async with stream:
            async for _ in stream:
                raise LookupError("caller's bug")
    assert body.closed


async def test_close_and_aclose_are_idempotent() -> None:
    stream, body = await open_scripted(chunk_pieces(5))
    await stream.close()
    await stream.aclose()
    await stream.close()
    assert body.closed
    assert [c async for c in stream] == []


async def test_text_stream_closes_the_stream_when_left() -> None:
    stream, body = await open_scripted([*chunk_pieces(3), STALL])
    async with stream.text_stream as texts:
        async for _ in texts:
            break
    assert body.closed


@pytest.mark.parametrize("at", range(7))
async def test_task_group_cancellation_at_any_chunk_releases_the_connection(at: int) -> None:
    """Cancelled while waiting for chunk ``at + 1``, whatever ``at`` is."""
    stream, body = await open_scripted([*chunk_pieces(5)[: at + 1], STALL])
    received = 0
    reached = anyio.Event()

    async def consume() -> None:
        nonlocal received
        async with stream:
            async for _ in stream:
                received += 1
                if received == at + 1:
                    reached.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await reached.wait()
        group.cancel_scope.cancel()
    assert received == at + 1
    assert body.closed
    assert stream.response.is_closed


@pytest.mark.parametrize("at", range(7))
async def test_cancellation_without_async_with_still_releases_the_connection(at: int) -> None:
    """The iterator closes its response itself when a cancellation passes through it."""
    stream, body = await open_scripted([*chunk_pieces(5)[: at + 1], STALL])
    with anyio.CancelScope() as scope:
        received = 0
        async for _ in stream:
            received += 1
            if received == at + 1:
                scope.cancel()
    assert scope.cancelled_caught
    assert body.closed


@FAKE_CLOCK_TRIO
async def test_move_on_after_mid_stream_releases_the_connection() -> None:
    stream, body = await open_scripted([*chunk_pieces(2), STALL])
    received = 0
    with anyio.move_on_after(30) as scope:
        async with stream:
            async for _ in stream:
                received += 1
    assert scope.cancelled_caught
    assert received == 4
    assert body.closed


@FAKE_CLOCK_TRIO
async def test_the_idle_timeout_catches_a_stalled_stream() -> None:
    stream, body = await open_scripted([*chunk_pieces(2), STALL], stream_idle_timeout=5)
    with pytest.raises(APITimeoutError, match="No stream event for 5 s") as caught:
        async for _ in stream:
            pass
    assert caught.value.chunks_received == 4
    assert caught.value.partial_text == {0: "w0 w1"}
    assert body.closed


@FAKE_CLOCK_TRIO
async def test_keep_alive_comments_do_not_reset_the_idle_timeout() -> None:
    keep_alives: list[bytes | object] = [b": ping\n\n"] * 3
    stream, body = await open_scripted(
        [chunk_pieces(1)[0], *keep_alives, STALL], stream_idle_timeout=5
    )
    start = anyio.current_time()
    with pytest.raises(APITimeoutError):
        async for _ in stream:
            pass
    assert anyio.current_time() - start == pytest.approx(5)
    assert body.closed


@FAKE_CLOCK_TRIO
async def test_events_do_reset_the_idle_timeout() -> None:
    class SlowBody(ScriptedBody):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for piece in chunk_pieces(4):
                await anyio.sleep(4)  # each event comes just inside the 5 s idle limit
                yield piece

    body = SlowBody([])
    client = client_for(ScriptedServer(stream_response(body)), stream_idle_timeout=5)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    completion = await stream.get_final_completion()
    assert completion.choices[0].message.content == "w0 w1 w2 w3"


async def test_a_closed_stream_cannot_produce_a_final_completion() -> None:
    stream, _ = await open_scripted(chunk_pieces(3))
    await stream.close()
    with pytest.raises(StreamInterruptedError):
        await stream.get_final_completion()


async def test_the_stream_is_not_retried_once_a_chunk_was_yielded() -> None:
    server = ScriptedServer(
        stream_response(ScriptedBody([sse(chunk("a"), done=False), b"data: {broken"]))
    )
    client = client_for(server)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(StreamInterruptedError):
        async for _ in stream:
            pass
    assert len(server.requests) == 1


async def test_a_cancel_is_noticed_within_32_buffered_chunks() -> None:
    """All chunks arrive in one piece, so only the stream's own check can notice."""
    body = sse(*words_stream([f"w{i}" for i in range(200)]))
    stream, scripted = await open_scripted([body])
    received = 0
    with anyio.CancelScope() as scope:
        async for _ in stream:
            received += 1
            if received == 10:
                scope.cancel()
    assert scope.cancelled_caught
    assert received <= 10 + 32
    assert scripted.closed


@FAKE_CLOCK_TRIO
async def test_a_cancellation_during_the_drain_after_done_still_closes() -> None:
    stream, body = await open_scripted([sse(*words_stream(WORDS)), STALL])
    received = 0
    with anyio.move_on_after(0.5) as scope:  # fires while the drain waits (up to 1 s)
        async for _ in stream:
            received += 1
    assert scope.cancelled_caught
    assert received == len(WORDS) + 2
    assert body.closed
    assert stream.response.is_closed
