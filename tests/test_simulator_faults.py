"""Faults the simulator injects on demand, so that retries and stream handling can be tested.

Status faults (`fail_next`, the rate limit, `fault_rate`) fail a request before any reply;
stream faults (`break_next_stream`) break a stream that has started. Every fault can also
be chosen per request with the `X-CTGT-Simulate` header. No test here waits: retry delays are
zero and the rate limiter runs on a fake clock; a stall is ended by the client leaving.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, cast

import anyio
import httpx
import pytest

from ctgt_async.testing import (
    SIMULATE_HEADER,
    DropConnection,
    ErrorEvent,
    MalformedChunk,
    Simulator,
    SimulatorTransport,
    Stall,
    StatusFault,
)

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk-test"}
URL = "/chat/completions"
CHAT: dict[str, Any] = {
    "model": "gemini-2.5-flash-lite",
    "messages": [{"role": "user", "content": "Why is the sky blue?"}],
}
STREAM = {**CHAT, "stream": True}


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def open_client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = SimulatorTransport(sim)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1") as client:
        yield client


async def post(
    sim: Simulator, body: dict[str, Any] = CHAT, headers: dict[str, str] = AUTH
) -> httpx.Response:
    async with open_client(sim) as client:
        return await client.post(URL, json=body, headers=headers)


async def statuses(sim: Simulator, count: int) -> list[int]:
    async with open_client(sim) as client:
        return [(await client.post(URL, json=CHAT, headers=AUTH)).status_code for _ in range(count)]


async def read_pieces(
    sim: Simulator, headers: dict[str, str] = AUTH
) -> tuple[list[bytes], Exception | None]:
    """Read a stream piece by piece (one event per piece in process); also return any error."""
    pieces: list[bytes] = []
    async with (
        open_client(sim) as client,
        client.stream("POST", URL, json=STREAM, headers=headers) as r,
    ):
        try:
            async for piece in r.aiter_raw():
                pieces.append(piece)
        except httpx.TransportError as exc:
            return pieces, exc
    return pieces, None


async def first_pieces(response: httpx.Response, count: int) -> list[bytes]:
    """Read `count` raw body pieces of a response, then stop reading.

    Leaving httpx's `aiter_raw()` early leaves the async generators nested inside it to the
    garbage collector, which trio reports as a ResourceWarning (an httpx trait). Reading the
    response's stream in one explicitly closed generator avoids that.
    """
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    pieces: list[bytes] = []
    async with aclosing(cast("AsyncGenerator[bytes, None]", stream.__aiter__())) as body:
        for _ in range(count):
            pieces.append(await body.__anext__())
    return pieces


async def read_then_leave(sim: Simulator, pieces: int, headers: dict[str, str] = AUTH) -> None:
    """Read `pieces` pieces of a stream, then close it, as a client that gives up does."""
    with anyio.fail_after(5):  # a safety net against a hang, not a timing assertion
        async with (
            open_client(sim) as client,
            client.stream("POST", URL, json=STREAM, headers=headers) as response,
        ):
            assert len(await first_pieces(response, pieces)) == pieces


def deltas(pieces: list[bytes]) -> str:
    text = ""
    for piece in pieces:
        data = piece.decode().removeprefix("data: ").strip()
        if data != "[DONE]":
            chunk = json.loads(data)
            text += chunk["choices"][0]["delta"].get("content", "") if chunk["choices"] else ""
    return text


async def reply_of(sim: Simulator) -> str:
    return str((await post(sim)).json()["choices"][0]["message"]["content"])


# --- fail_next ------------------------------------------------------------------------------


async def test_fail_next_answers_one_request_with_a_429_that_says_retry_now() -> None:
    sim = Simulator()
    sim.fail_next()

    failed, healthy = await post(sim), await post(sim)

    assert failed.status_code == 429
    assert failed.headers["retry-after"] == "0"
    assert failed.headers["retry-after-ms"] == "0"
    assert failed.json()["error"]["type"] == "rate_limit_error"
    assert failed.json()["error"]["code"] == "rate_limit_exceeded"
    assert healthy.status_code == 200


async def test_fail_next_can_fail_several_requests_with_any_status() -> None:
    sim = Simulator()
    sim.fail_next(2, status=503, retry_after=1.5)

    responses = [await post(sim) for _ in range(3)]

    assert [r.status_code for r in responses] == [503, 503, 200]
    assert responses[0].headers["retry-after"] == "2"  # whole seconds, rounded up
    assert responses[0].headers["retry-after-ms"] == "1500"
    assert responses[0].json()["error"]["type"] == "server_error"


async def test_a_fault_without_retry_after_sends_no_header() -> None:
    sim = Simulator()
    sim.fail_next(status=500, retry_after=None, message="Boom.")

    response = await post(sim)

    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert response.json()["error"] == {
        "message": "Boom.",
        "type": "server_error",
        "code": "internal_error",
    }


async def test_queued_faults_are_used_in_order() -> None:
    sim = Simulator()
    sim.fail_next(status=500, retry_after=None)
    sim.fail_next(status=503)

    assert await statuses(sim, 3) == [500, 503, 200]


async def test_a_fault_is_recorded_with_its_request() -> None:
    sim = Simulator()
    sim.fail_next(status=503, retry_after=None)
    await post(sim)

    assert sim.last_request.fault == StatusFault(status=503, retry_after=None)
    assert sim.last_request.status == 503


async def test_a_request_with_a_bad_key_does_not_use_up_a_fault() -> None:
    sim = Simulator()
    sim.fail_next()

    assert (await post(sim, headers={})).status_code == 401
    assert (await post(sim)).status_code == 429


async def test_a_fault_comes_before_validation() -> None:
    sim = Simulator()
    sim.fail_next(status=503)
    assert (await post(sim, {"not": "valid"})).status_code == 503


async def test_reset_forgets_queued_faults() -> None:
    sim = Simulator()
    sim.fail_next(3)
    sim.break_next_stream(DropConnection())
    sim.reset()

    assert (await post(sim)).status_code == 200
    assert (await read_pieces(sim))[1] is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: StatusFault(status=200),
        lambda: StatusFault(status=429, retry_after=-1),
        lambda: DropConnection(after=-1),
        lambda: Stall(seconds=float("inf")),
        lambda: Simulator().fail_next(-1),
        lambda: Simulator(fault_rate=1.5),
        lambda: Simulator(token_delay=-1),
        lambda: Simulator().rate_limit(0),
    ],
)
def test_nonsense_fault_settings_are_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_only_stream_faults_can_break_a_stream() -> None:
    with pytest.raises(TypeError):
        Simulator().break_next_stream(StatusFault())  # type: ignore[arg-type]


# --- rate limit -----------------------------------------------------------------------------


async def test_the_rate_limit_says_when_the_oldest_request_leaves_the_window() -> None:
    clock = FakeClock()
    sim = Simulator(clock=clock)
    sim.rate_limit(2)

    assert await statuses(sim, 2) == [200, 200]
    clock.now += 20
    limited = await post(sim)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "40"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert sim.last_request.fault == StatusFault(
        status=429,
        retry_after=40.0,
        message="Rate limit reached: 2 requests per minute. Retry later.",
    )


async def test_the_rate_limit_frees_a_slot_after_a_minute() -> None:
    clock = FakeClock()
    sim = Simulator(clock=clock)
    sim.rate_limit(1)

    assert await statuses(sim, 2) == [200, 429]
    clock.now += 60
    assert await statuses(sim, 2) == [200, 429]


async def test_the_rate_limit_is_per_key() -> None:
    sim = Simulator(api_keys=["sk-a", "sk-b"], clock=FakeClock())
    sim.rate_limit(1)

    assert (await post(sim, headers={"Authorization": "Bearer sk-a"})).status_code == 200
    assert (await post(sim, headers={"Authorization": "Bearer sk-b"})).status_code == 200
    assert (await post(sim, headers={"Authorization": "Bearer sk-a"})).status_code == 429


async def test_limited_requests_do_not_take_a_slot() -> None:
    clock = FakeClock()
    sim = Simulator(clock=clock)
    sim.rate_limit(1)

    assert await statuses(sim, 3) == [200, 429, 429]
    clock.now += 60
    assert await statuses(sim, 1) == [200]


async def test_the_rate_limit_can_be_lifted() -> None:
    sim = Simulator(clock=FakeClock())
    sim.rate_limit(1)
    sim.rate_limit(None)
    assert await statuses(sim, 3) == [200, 200, 200]


# --- random faults --------------------------------------------------------------------------


async def test_random_faults_are_reproducible_with_a_seed() -> None:
    first = await statuses(Simulator(fault_rate=0.5, seed=7), 30)
    second = await statuses(Simulator(fault_rate=0.5, seed=7), 30)

    assert first == second
    assert 200 in first
    assert set(first) - {200}
    assert set(first) <= {200, 429, 500, 503}


async def test_reset_replays_the_same_random_faults() -> None:
    sim = Simulator(fault_rate=0.5, seed=7)
    first = await statuses(sim, 20)
    sim.reset()
    assert await statuses(sim, 20) == first


async def test_another_seed_gives_other_random_faults() -> None:
    first = await statuses(Simulator(fault_rate=0.5, seed=7), 30)
    assert first != await statuses(Simulator(fault_rate=0.5, seed=8), 30)


async def test_random_faults_are_retryable_and_say_when_to_retry() -> None:
    sim = Simulator(fault_rate=1.0, fault_retry_after=0.25)
    async with open_client(sim) as client:
        responses = [await client.post(URL, json=CHAT, headers=AUTH) for _ in range(30)]

    assert {r.status_code for r in responses} == {429, 500, 503}
    for response in responses:
        if response.status_code == 500:
            assert "retry-after" not in response.headers
        else:
            assert response.headers["retry-after"] == "1"
            assert response.headers["retry-after-ms"] == "250"


async def test_scripted_faults_come_before_random_ones() -> None:
    sim = Simulator(fault_rate=1.0)
    sim.fail_next(status=418, retry_after=None)
    assert (await post(sim)).status_code == 418


# --- stream faults --------------------------------------------------------------------------


async def test_a_dropped_stream_is_a_remote_protocol_error() -> None:
    sim = Simulator()
    sim.break_next_stream(DropConnection(after=3))

    pieces, error = await read_pieces(sim)

    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(pieces) == 3
    record = sim.last_request
    assert (record.status, record.chunks_sent, record.completed) == (200, 3, False)
    assert record.fault == DropConnection(after=3)
    assert not record.disconnected


async def test_a_drop_after_every_event_still_leaves_the_body_unfinished() -> None:
    sim = Simulator()
    sim.break_next_stream(DropConnection(after=10_000))

    pieces, error = await read_pieces(sim)

    assert isinstance(error, httpx.RemoteProtocolError)
    assert pieces[-1] == b"data: [DONE]\n\n"


async def test_stream_faults_wait_for_a_streaming_request() -> None:
    sim = Simulator()
    sim.break_next_stream(DropConnection(after=1), count=2)

    assert (await post(sim)).status_code == 200
    assert isinstance((await read_pieces(sim))[1], httpx.RemoteProtocolError)
    assert isinstance((await read_pieces(sim))[1], httpx.RemoteProtocolError)
    assert (await read_pieces(sim))[1] is None


async def test_a_malformed_chunk_is_not_json_and_the_stream_goes_on() -> None:
    sim = Simulator()
    sim.break_next_stream(MalformedChunk(after=2))

    pieces, error = await read_pieces(sim)

    assert error is None
    bad = pieces.pop(2)
    assert bad.startswith(b"data: ")
    assert bad.endswith(b"\n\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.removeprefix(b"data: "))
    assert pieces[-1] == b"data: [DONE]\n\n"
    assert deltas(pieces) == await reply_of(sim)


async def test_an_error_event_ends_the_stream_without_done() -> None:
    sim = Simulator()
    sim.break_next_stream(ErrorEvent(after=2, message="Overloaded.", code="overloaded"))

    pieces, error = await read_pieces(sim)

    assert error is None
    assert len(pieces) == 3
    assert json.loads(pieces[-1].removeprefix(b"data: ")) == {
        "error": {"message": "Overloaded.", "type": "server_error", "code": "overloaded"}
    }
    assert sim.last_request.completed


async def test_a_stall_lasts_until_the_client_gives_up() -> None:
    sim = Simulator()
    sim.break_next_stream(Stall(after=2))

    await read_then_leave(sim, pieces=2)

    record = sim.last_request
    assert record.disconnected
    assert not record.completed
    assert record.chunks_sent == 2


async def test_a_finite_stall_resumes_the_stream() -> None:
    sim = Simulator()
    sim.break_next_stream(Stall(after=2, seconds=0))

    pieces, error = await read_pieces(sim)

    assert error is None
    assert deltas(pieces) == await reply_of(sim)


async def test_a_client_leaving_a_healthy_stream_is_recorded() -> None:
    sim = Simulator()
    await read_then_leave(sim, pieces=1)
    assert sim.last_request.disconnected


# --- the X-CTGT-Simulate header -------------------------------------------------------------


def simulate(value: str) -> dict[str, str]:
    return {**AUTH, SIMULATE_HEADER: value}


@pytest.mark.parametrize(
    ("value", "status", "retry_after"),
    [
        ("status=503", 503, None),
        ("status=500", 500, None),
        ("status=429", 429, "0"),
        ("status=503, retry-after=2", 503, "2"),
        ("STATUS=429; Retry-After=0.5", 429, "1"),
    ],
)
async def test_the_header_can_choose_a_status(
    value: str, status: int, retry_after: str | None
) -> None:
    response = await post(Simulator(), headers=simulate(value))

    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after


async def test_the_header_can_drop_a_stream() -> None:
    sim = Simulator()
    pieces, error = await read_pieces(sim, simulate("drop-after=3"))

    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(pieces) == 3
    assert sim.last_request.fault == DropConnection(after=3)


async def test_the_header_can_send_a_malformed_chunk() -> None:
    sim = Simulator()
    pieces, _ = await read_pieces(sim, simulate("malformed-after=1"))
    with pytest.raises(json.JSONDecodeError):
        json.loads(pieces[1].removeprefix(b"data: "))


async def test_the_header_can_end_a_stream_with_an_error_event() -> None:
    pieces, _ = await read_pieces(Simulator(), simulate("error-after=2"))
    assert json.loads(pieces[-1].removeprefix(b"data: "))["error"]["type"] == "server_error"


async def test_the_header_can_stall_a_stream() -> None:
    sim = Simulator()
    await read_then_leave(sim, pieces=1, headers=simulate("stall-after=1"))

    assert sim.last_request.disconnected
    assert sim.last_request.fault == Stall(after=1)


async def test_the_header_can_stall_a_stream_for_a_while() -> None:
    sim = Simulator()
    pieces, error = await read_pieces(sim, simulate("stall-after=1; stall-for=0"))

    assert error is None
    assert sim.last_request.fault == Stall(after=1, seconds=0)
    assert pieces[-1] == b"data: [DONE]\n\n"


async def test_a_stream_fault_in_the_header_does_nothing_to_a_plain_request() -> None:
    assert (await post(Simulator(), headers=simulate("drop-after=0"))).status_code == 200


async def test_the_header_wins_over_queued_faults_and_leaves_them_queued() -> None:
    sim = Simulator()
    sim.fail_next(status=500, retry_after=None)

    assert (await post(sim, headers=simulate("status=503"))).status_code == 503
    assert (await post(sim)).status_code == 500


@pytest.mark.parametrize(
    "value",
    [
        "status=200",
        "status=abc",
        "status",
        "bogus=1",
        "drop-after=-1",
        "drop-after=1.5",
        "retry-after=1",
        "stall-for=1",
        "status=503, retry-after=soon",
        "drop-after=1, error-after=2",
        "status=503, drop-after=1",
        "status=500; status=503",
    ],
)
async def test_a_header_that_makes_no_sense_is_a_400(value: str) -> None:
    response = await post(Simulator(), headers=simulate(value))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_simulate_header"
    assert error["param"] == SIMULATE_HEADER
