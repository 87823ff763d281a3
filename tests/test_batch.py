"""`client.batch`: every request ends in one result, lazily, in order if asked, adaptively.

Requests go to the simulator in process. Tests about time (adaptive concurrency, ordering by
reply length) run under trio's ``MockClock(autojump_threshold=0)``, so nothing sleeps for
real; the others run under asyncio and trio.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import trio.testing

from ctgt_async import (
    APIError,
    AsyncCTGT,
    BatchInput,
    BatchProgress,
    BatchRequest,
    BatchResult,
    ChatCompletionParams,
    InvalidArgumentError,
    RateLimitError,
    StreamInterruptedError,
)
from ctgt_async.testing import DropConnection, Simulator

pytestmark = pytest.mark.anyio


def virtual_clock() -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "anyio_backend",
        [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})],
        ids=["trio-virtual-clock"],
    )


def params(index: int, **extra: Any) -> ChatCompletionParams:
    request: ChatCompletionParams = {
        "model": "m",
        "messages": [{"role": "user", "content": f"question number {index}" + " more" * index}],
    }
    request.update(extra)  # type: ignore[typeddict-item]
    return request


def client_for(simulator: Simulator, **options: Any) -> AsyncCTGT:
    options.setdefault("initial_retry_delay", 0)
    return simulator.client(**options)


async def collect(client: AsyncCTGT, requests: Any, **options: Any) -> list[BatchResult]:
    async with client.batch(requests, **options) as results:
        return [result async for result in results]


# --- nothing lost, nothing twice ------------------------------------------------------------


async def test_every_request_ends_in_exactly_one_result_through_faults() -> None:
    # 429s, 500s and 503s at random, and streams whose connection drops mid-way.
    simulator = Simulator(fault_rate=0.3, seed=7)
    simulator.break_next_stream(DropConnection(after=2), count=10)
    requests = [params(i, stream=i % 2 == 0) for i in range(200)]
    async with client_for(simulator, max_retries=1) as client:
        results = await collect(client, requests, concurrency=16)
    assert sorted(result.index for result in results) == list(range(200))
    failures = [result.error for result in results if result.error is not None]
    successes = [result.completion for result in results if result.completion is not None]
    assert len(failures) + len(successes) == 200
    assert all(isinstance(error, APIError) for error in failures)
    assert any(isinstance(error, StreamInterruptedError) for error in failures)
    assert len(successes) > 100
    assert client.stats.in_flight == 0


async def test_a_failure_is_a_result_and_unwrap_raises_it() -> None:
    simulator = Simulator()
    simulator.fail_next(status=400)
    async with client_for(simulator) as client:
        results = await collect(client, [params(0), params(1)], concurrency=1)
    failed, succeeded = results
    assert not failed.ok
    assert failed.completion is None
    with pytest.raises(APIError):
        failed.unwrap()
    assert succeeded.ok
    assert succeeded.unwrap() is succeeded.completion


async def test_bad_requests_become_invalid_argument_results() -> None:
    requests: list[Any] = [
        params(0),
        "not a request",
        {"model": "m", "messages": [], "temprature": 1},
        {"model": "m", "messages": []},
        params(4, stream="yes"),
    ]
    async with client_for(Simulator()) as client:
        results = await collect(client, requests, ordered=True)
    assert results[0].ok
    fields = [
        result.error.field
        for result in results[1:]
        if isinstance(result.error, InvalidArgumentError)
    ]
    assert fields == ["requests[1]", "requests[2].temprature", "messages", "requests[4].stream"]


async def test_request_ids_and_streamed_requests() -> None:
    requests = [BatchRequest(id=f"job-{i}", params=params(i, stream=i == 1)) for i in range(3)]
    async with client_for(Simulator()) as client:
        results = await collect(client, requests, ordered=True)
    assert [result.id for result in results] == ["job-0", "job-1", "job-2"]
    streamed = results[1].unwrap()
    assert streamed.choices[0].message.content
    plain: list[BatchInput] = [params(0)]
    async with client_for(Simulator()) as client:
        (result,) = await collect(client, plain)
    assert result.id is None


# --- lazily, and stopping early -------------------------------------------------------------


async def test_the_input_is_read_only_when_there_is_room() -> None:
    delivered = 0
    taken: list[int] = []

    def requests() -> Iterator[ChatCompletionParams]:
        for index in range(100):
            # Taking request `index` needs room: at most 4 taken and not yet delivered.
            assert index - delivered <= 4
            taken.append(index)
            yield params(index)

    async with (
        client_for(Simulator()) as client,
        client.batch(requests(), concurrency=4) as results,
    ):
        async for _ in results:
            delivered += 1
    assert delivered == len(taken) == 100


async def test_leaving_early_closes_an_endless_async_input_and_cancels_what_runs() -> None:
    closed = anyio.Event()

    async def endless() -> AsyncIterator[ChatCompletionParams]:
        try:
            for index in itertools.count():
                yield params(index)
        finally:
            closed.set()

    simulator = Simulator()
    async with client_for(simulator) as client:
        async with client.batch(endless(), concurrency=8) as results:
            delivered = 0
            async for _ in results:
                delivered += 1
                if delivered == 20:
                    break
        assert closed.is_set()
        assert client.stats.in_flight == 0
        # Taken from the input: the twenty delivered and at most eight more.
        assert len(simulator.requests) == results.progress.started <= 20 + 8


async def test_leaving_without_reading_cancels_requests_in_flight() -> None:
    simulator = Simulator(time_to_first_token=3600)  # answers that would take an hour
    async with client_for(simulator) as client:
        with anyio.fail_after(10):
            async with client.batch([params(i) for i in range(50)], concurrency=5) as results:
                await anyio.wait_all_tasks_blocked()
                assert results.progress.in_flight == 5
        assert client.stats.in_flight == 0
        await simulator.wait_idle()
    assert len(simulator.requests) == 5
    assert all(record.disconnected for record in simulator.requests)


async def test_an_error_in_the_loop_propagates_as_it_is_and_stops_the_batch() -> None:
    simulator = Simulator(time_to_first_token=3600)
    async with client_for(simulator) as client:
        with anyio.fail_after(10), pytest.raises(KeyError):
            async with client.batch([params(i) for i in range(10)], concurrency=3):
                await anyio.wait_all_tasks_blocked()
                raise KeyError("the caller's own error, not an exception group")
        assert client.stats.in_flight == 0


async def test_an_error_of_the_input_comes_after_the_results_already_started() -> None:
    def failing() -> Iterator[ChatCompletionParams]:
        yield params(0)
        yield params(1)
        raise LookupError("the input broke")

    seen: list[int] = []
    async with client_for(Simulator()) as client:
        with pytest.raises(LookupError, match="the input broke"):
            async with client.batch(failing(), concurrency=4) as results:
                async for result in results:
                    seen.append(result.index)
    assert sorted(seen) == [0, 1]


async def test_a_batch_is_iterated_inside_its_block_only() -> None:
    async with client_for(Simulator()) as client:
        batch = client.batch([params(0)])
        with pytest.raises(RuntimeError, match=r"async with client\.batch"):
            await batch.__anext__()
        async with batch:
            pass
        with pytest.raises(RuntimeError, match="only be entered once"):
            await batch.__aenter__()
        with pytest.raises(RuntimeError, match="inside its block"):
            await batch.__anext__()


@pytest.mark.parametrize("ordered", [False, True])
async def test_an_empty_input_ends_at_once(ordered: bool) -> None:
    async with client_for(Simulator()) as client:
        assert await collect(client, [], ordered=ordered) == []


async def test_a_closed_client_refuses_a_batch_at_once() -> None:
    client = client_for(Simulator())
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.batch([params(0)])


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"reorder_window": 0}, "reorder_window"),
        ({"total": -1}, "total"),
    ],
)
def test_batch_arguments_are_checked(options: dict[str, Any], field: str) -> None:
    client = AsyncCTGT(api_key="sk-test")
    with pytest.raises(InvalidArgumentError) as caught:
        client.batch([params(0)], **options)
    assert caught.value.field == field
    with pytest.raises(InvalidArgumentError, match="iterable"):
        client.batch(42)  # type: ignore[arg-type]


# --- order and progress ---------------------------------------------------------------------


@virtual_clock()
async def test_ordered_results_come_in_input_order_within_the_reorder_window() -> None:
    # Longer prompts get longer answers, which take longer at 0.1 s a word, so requests
    # finish out of input order.
    requests = [params((i * 7) % 13) for i in range(60)]
    progress: list[BatchProgress] = []
    async with client_for(Simulator(token_delay=0.1)) as client:
        unordered = await collect(client, requests, concurrency=4)
        ordered = await collect(
            client,
            requests,
            concurrency=4,
            ordered=True,
            reorder_window=6,
            on_progress=progress.append,
        )
    assert [r.index for r in unordered] != list(range(60))  # the premise of this test
    assert [r.index for r in ordered] == list(range(60))
    assert max(p.started - p.done for p in progress) <= 6


async def test_progress_counts_results_and_estimates_the_rest() -> None:
    simulator = Simulator()
    simulator.fail_next(status=400)
    progress: list[BatchProgress] = []
    async with client_for(simulator) as client:
        await collect(client, [params(i) for i in range(10)], on_progress=progress.append)
    last = progress[-1]
    assert (last.total, last.started, last.done, last.failed, last.in_flight) == (10, 10, 10, 1, 0)
    assert [p.done for p in progress] == list(range(1, 11))
    assert last.eta == 0.0 or last.rate == 0.0


# --- adaptive concurrency -------------------------------------------------------------------


@virtual_clock()
async def test_concurrency_halves_on_a_429_burst_and_recovers_when_they_stop() -> None:
    simulator = Simulator(token_delay=0.01)
    simulator.fail_next(8, status=429, retry_after=1)
    limits: list[int] = []
    async with client_for(simulator) as client:
        results = await collect(
            client,
            [params(i) for i in range(400)],
            concurrency=16,
            on_progress=lambda p: limits.append(p.concurrency),
        )
    assert all(result.ok for result in results)
    # Eight 429s at once halve the limit once, not eight times: they report one congestion.
    assert min(limits) == 8
    assert limits[-1] == 16
    assert client.stats.rate_limited == 8


@virtual_clock()
async def test_without_adaptation_the_concurrency_stays_put() -> None:
    simulator = Simulator(token_delay=0.01)
    simulator.fail_next(8, status=429, retry_after=1)
    limits: list[int] = []
    async with client_for(simulator) as client:
        await collect(
            client,
            [params(i) for i in range(50)],
            concurrency=16,
            adaptive=False,
            on_progress=lambda p: limits.append(p.concurrency),
        )
    assert set(limits) == {16}


@virtual_clock()
async def test_other_calls_of_the_client_slow_the_batch_down_too() -> None:
    # The client's 429s are shared: one outside the batch halves the batch's concurrency.
    simulator = Simulator(token_delay=0.01)
    rate_limited = {"X-CTGT-Simulate": "status=429, retry-after=0.5"}
    async with (
        client_for(simulator, max_retries=0) as client,
        client.batch([params(i) for i in range(40)], concurrency=8) as results,
    ):
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], extra_headers=rate_limited
            )
        assert results.concurrency == 4
        assert all([result.ok async for result in results])
