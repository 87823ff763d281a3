"""Client-wide limits: the shared 429 cooldown, the concurrency cap, the per-minute budgets.

What matters is what the server sees, so the simulator runs behind `Watched`, a thin ASGI
wrapper that notes when each request arrives and how many are being answered at once. Tests
about time run under trio's ``MockClock(autojump_threshold=0)``: a wait of a minute takes no
real time, and arrival times are exact. Tests about counts run under asyncio and trio.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
import trio.testing

from ctgt_async import (
    AsyncCTGT,
    ClientStats,
    InternalServerError,
    InvalidArgumentError,
    MessageParam,
    RateLimitError,
)
from ctgt_async._limits import SlidingWindow, estimate_tokens, read_total_tokens
from ctgt_async.testing import Simulator, SimulatorTransport
from ctgt_async.testing._asgi import Receive, Scope, Send

pytestmark = pytest.mark.anyio

KEY = "sk-test"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]


def virtual_clock() -> pytest.MarkDecorator:
    """Run under trio with a fresh clock that jumps ahead whenever every task is waiting."""
    return pytest.mark.parametrize(
        "anyio_backend",
        [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})],
        ids=["trio-virtual-clock"],
    )


class Watched:
    """The simulator, watched: arrival times and how many requests it answers at once.

    With ``hold=True`` every request waits for `release` before the simulator sees it, so a
    test can look at the client while requests are in flight.
    """

    def __init__(self, simulator: Simulator, *, hold: bool = False) -> None:
        self.simulator = simulator
        self.arrivals: list[float] = []
        self.active = 0
        self.most_active = 0
        self._released = anyio.Event() if hold else None

    def release(self) -> None:
        assert self._released is not None
        self._released.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.simulator(scope, receive, send)
            return
        self.arrivals.append(anyio.current_time())
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self._released is not None:
                await self._released.wait()
            await self.simulator(scope, receive, send)
        finally:
            self.active -= 1


def client_for(app: Watched, **options: Any) -> AsyncCTGT:
    options.setdefault("initial_retry_delay", 0)
    return AsyncCTGT(
        api_key=KEY, base_url="http://simulator/v1", transport=SimulatorTransport(app), **options
    )


async def ask(client: AsyncCTGT, **options: Any) -> None:
    await client.chat.completions.create(model="m", messages=MESSAGES, **options)


@pytest.fixture
def watched() -> Watched:
    return Watched(Simulator())


@pytest.fixture
def held() -> Watched:
    return Watched(Simulator(), hold=True)


# --- the cooldown gate ----------------------------------------------------------------------


@virtual_clock()
async def test_a_429_holds_back_every_request_of_the_client_until_retry_after(
    watched: Watched,
) -> None:
    watched.simulator.fail_next(status=429, retry_after=5)
    async with client_for(watched) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as group:
            group.start_soon(ask, client)  # answered 429, Retry-After: 5
            await anyio.sleep(1)
            for _ in range(5):
                group.start_soon(ask, client)  # sent during the cooldown
            await anyio.wait_all_tasks_blocked()
            assert client.stats == ClientStats(
                in_flight=0, queued=5, cooldown_remaining=4.0, rate_limited=1
            )
    first, *others = watched.arrivals
    assert first == start
    # Nothing reached the server during the cooldown: not the 429's own retry, not the
    # five that were started while it ran. Without the gate those five arrive at start + 1.
    assert len(others) == 6
    assert all(arrival >= start + 5 for arrival in others), others
    assert client.stats.cooldown_remaining == 0.0


@virtual_clock()
async def test_copies_from_with_options_share_the_cooldown(watched: Watched) -> None:
    watched.simulator.fail_next(status=429, retry_after=3)
    async with client_for(watched) as client:
        start = anyio.current_time()
        with pytest.raises(RateLimitError):
            await ask(client.with_options(max_retries=0))
        assert client.stats.cooldown_remaining == 3.0
        await ask(client)
    assert watched.arrivals == [start, start + 3]


@virtual_clock()
async def test_a_retry_after_beyond_the_retry_ceiling_does_not_close_the_gate(
    watched: Watched,
) -> None:
    # Such a 429 is raised at once for the caller to decide; holding every other request
    # for minutes behind it would look like a hang.
    watched.simulator.fail_next(status=429, retry_after=600)
    async with client_for(watched) as client:
        with pytest.raises(RateLimitError) as caught:
            await ask(client)
        assert caught.value.retry_after == 600
        start = anyio.current_time()
        await ask(client)
    assert watched.arrivals[-1] == start
    assert client.stats.rate_limited == 1


async def test_a_429_without_retry_after_is_counted_but_closes_nothing(
    watched: Watched,
) -> None:
    watched.simulator.fail_next(status=429, retry_after=None)
    async with client_for(watched) as client:
        await ask(client)
        assert client.stats == ClientStats(
            in_flight=0, queued=0, cooldown_remaining=0.0, rate_limited=1
        )


# --- the concurrency cap --------------------------------------------------------------------


async def test_max_concurrency_queues_the_excess_in_the_client(held: Watched) -> None:
    async with client_for(held, max_concurrency=2) as client:
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(ask, client)
            await anyio.wait_all_tasks_blocked()
            assert held.active == 2
            assert client.stats == ClientStats(
                in_flight=2, queued=4, cooldown_remaining=0.0, rate_limited=0
            )
            held.release()
        assert held.most_active == 2
        assert len(held.arrivals) == 6
        assert client.stats == ClientStats(
            in_flight=0, queued=0, cooldown_remaining=0.0, rate_limited=0
        )


async def test_an_open_stream_keeps_its_slot_until_it_is_closed(watched: Watched) -> None:
    async with client_for(watched, max_concurrency=1) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        done = anyio.Event()

        async def second() -> None:
            await ask(client)
            done.set()

        async with anyio.create_task_group() as group:
            group.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            assert client.stats.in_flight == 1
            assert client.stats.queued == 1
            assert len(watched.arrivals) == 1
            assert not done.is_set()
            async with stream:
                async for _ in stream:
                    break
            # Leaving `async with` closed the stream: its slot went to the waiting request.
        assert done.is_set()
        assert client.stats.in_flight == 0


async def test_a_stream_read_to_its_end_gives_its_slot_back(watched: Watched) -> None:
    async with client_for(watched, max_concurrency=1) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert client.stats.in_flight == 1
        await stream.get_final_completion()
        assert client.stats.in_flight == 0
        with anyio.fail_after(5):
            await ask(client)


async def test_failed_attempts_give_their_slot_back(watched: Watched) -> None:
    watched.simulator.fail_next(6, status=500, retry_after=None)
    async with client_for(watched, max_concurrency=1, max_retries=2) as client:
        with pytest.raises(InternalServerError):
            await ask(client)
        with pytest.raises(InternalServerError):
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert client.stats.in_flight == 0
        with anyio.fail_after(5):
            await ask(client)


async def test_a_cancelled_waiter_leaves_no_slot_behind(held: Watched) -> None:
    async with client_for(held, max_concurrency=1) as client:
        waiter = anyio.CancelScope()

        async def queued() -> None:
            with waiter:
                await ask(client)

        async with anyio.create_task_group() as group:
            group.start_soon(ask, client)  # takes the slot; the server holds it
            await anyio.wait_all_tasks_blocked()
            group.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            assert (client.stats.in_flight, client.stats.queued) == (1, 1)
            waiter.cancel()
            await anyio.wait_all_tasks_blocked()
            assert (client.stats.in_flight, client.stats.queued) == (1, 0)
            held.release()
        assert client.stats.in_flight == 0
        with anyio.fail_after(5):
            await ask(client)
        assert len(held.arrivals) == 2


# --- the per-minute budgets -----------------------------------------------------------------


@virtual_clock()
async def test_requests_per_minute_spreads_requests_over_minutes(watched: Watched) -> None:
    async with client_for(watched, requests_per_minute=2) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(ask, client)
    arrivals = sorted(t - start for t in watched.arrivals)
    assert arrivals[:2] == [0.0, 0.0]
    # Any sixty seconds hold at most two; and no more waiting than that takes (the window
    # is kept in half-second slots, so a slot frees up to half a second late).
    assert all(
        later - earlier >= 60 for earlier, later in zip(arrivals, arrivals[2:], strict=False)
    )
    assert arrivals[4] <= 2 * 60.5


@virtual_clock()
async def test_a_request_cancelled_while_waiting_for_the_budget_gives_back_its_slot(
    watched: Watched,
) -> None:
    async with client_for(watched, max_concurrency=2, requests_per_minute=1) as client:
        await ask(client)
        with anyio.move_on_after(10):
            await ask(client)  # holds a slot while it waits for the minute to pass
        assert (client.stats.in_flight, client.stats.queued) == (0, 0)
        start = anyio.current_time()
        await ask(client)
    assert len(watched.arrivals) == 2
    assert 50 <= watched.arrivals[1] - start <= 50.5


@virtual_clock()
async def test_tokens_per_minute_counts_what_the_response_says_it_cost(watched: Watched) -> None:
    # The estimate of one "hi" is 5 tokens; the simulator's answer to it costs 31. The second
    # request fits after the first's real cost; the third does not: it waits until the first
    # leaves the window. Counting estimates only, all three would go at once.
    async with client_for(watched, tokens_per_minute=65) as client:
        start = anyio.current_time()
        costs = []
        for _ in range(3):
            completion = await client.chat.completions.create(model="m", messages=MESSAGES)
            assert completion.usage is not None
            costs.append(completion.usage.total_tokens)
    assert costs[0] + costs[1] + 5 > 65 > costs[0] + 5, costs  # the premise of this test
    first, second, third = (t - start for t in watched.arrivals)
    assert first == second == 0.0
    assert 60 <= third <= 60.5


@virtual_clock()
async def test_a_stream_is_charged_the_usage_it_reports(watched: Watched) -> None:
    include_usage = {"stream_options": {"include_usage": True}}
    async with client_for(watched, tokens_per_minute=65) as client:
        start = anyio.current_time()
        for _ in range(3):
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, extra_body=include_usage
            )
            completion = await stream.get_final_completion()
            assert completion.usage is not None
    assert [t - start for t in watched.arrivals][:2] == [0.0, 0.0]
    assert watched.arrivals[2] - start >= 60


# --- the pure parts -------------------------------------------------------------------------


def test_a_sliding_window_admits_up_to_its_limit_per_period() -> None:
    window = SlidingWindow(3, period=60, slots=120)
    assert window.delay(0.0, 1) == 0.0
    window.add(0.0, 2)
    window.add(10.2, 1)
    assert window.total == 3
    # The first two leave at the end of their half-second slot plus a minute.
    assert window.delay(11.0, 1) == pytest.approx(49.5)
    assert window.delay(11.0, 3) == pytest.approx(60.5 - 11.0 + 10.0)
    assert window.delay(60.5, 2) == 0.0
    assert window.total == 1


def test_an_amount_larger_than_the_limit_goes_alone_once_the_window_is_empty() -> None:
    window = SlidingWindow(10, period=60, slots=60)
    window.add(0.0, 4)
    assert window.delay(5.0, 25) == pytest.approx(56.0)
    assert window.delay(61.0, 25) == 0.0


def test_a_charge_is_corrected_while_in_the_window_and_ignored_after() -> None:
    window = SlidingWindow(100, period=60, slots=60)
    charge = window.add(0.0, 5)
    window.adjust(charge, 40)
    assert window.total == 45
    assert window.delay(30.0, 60) == pytest.approx(31.0)
    window.delay(61.0, 1)  # the slot has expired
    window.adjust(charge, 1000)
    assert window.total == 0


def test_a_window_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlidingWindow(0)


def test_the_token_estimate_is_documented_arithmetic() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 10},  # 4 + 3
            {"role": "user", "content": "y" * 8},  # 4 + 2
        ],
        "max_tokens": 100,
    }
    assert estimate_tokens(body) == 113
    assert estimate_tokens({"messages": []}) == 1
    assert read_total_tokens(b'{"usage":{"total_tokens": 12}} ... "total_tokens":34}') == 34
    assert read_total_tokens(b"data: [DONE]") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrency", 0),
        ("max_concurrency", -1),
        ("requests_per_minute", 1.5),
        ("tokens_per_minute", True),
    ],
)
def test_limits_are_checked_at_construction(name: str, value: object) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(InvalidArgumentError) as caught:
        AsyncCTGT(api_key=KEY, **options)
    assert caught.value.field == name


def test_the_limits_are_visible_and_the_stats_are_read_only() -> None:
    client = AsyncCTGT(
        api_key=KEY, max_concurrency=4, requests_per_minute=60, tokens_per_minute=10_000
    )
    assert (client.max_concurrency, client.requests_per_minute, client.tokens_per_minute) == (
        4,
        60,
        10_000,
    )
    copy = client.with_options(max_retries=0)
    assert copy.max_concurrency == 4
    stats = client.stats
    with pytest.raises(AttributeError):
        stats.queued = 1  # type: ignore[misc]
    assert KEY not in repr(stats)
    assert math.isclose(stats.cooldown_remaining, 0.0)
