"""Retries over the wire: what is retried, how often, how long it waits, and how it ends.

No test waits for real: retries use ``initial_retry_delay=0`` or ``Retry-After: 0``, and the
waits chosen are read from the retry log lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import respx

from ctgt_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCTGT,
    BadRequestError,
    InternalServerError,
    MessageParam,
    RateLimitError,
)

KEY = "sk-test-retry-secret"
BASE = "https://api.test/v1"
URL = f"{BASE}/chat/completions"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
OK = httpx.Response(200, json=COMPLETION)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[AsyncCTGT]:
    async with AsyncCTGT(api_key=KEY, base_url=BASE, initial_retry_delay=0) as client:
        yield client


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="ctgt_async")
    return caplog


def waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The backoff waits the client chose, read from its retry log lines."""
    return [
        float(match.group(1))
        for record in caplog.records
        if record.name == "ctgt_async"
        and (match := re.match(r"Retrying in ([\d.]+) s", record.getMessage()))
    ]


async def create(client: AsyncCTGT) -> object:
    return await client.chat.completions.create(model="m", messages=MESSAGES)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_a_transient_status_is_retried_until_success(
    client: AsyncCTGT, api: respx.MockRouter, status: int
) -> None:
    route = api.post(URL).mock(side_effect=[httpx.Response(status), OK])
    await create(client)
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_status_that_blames_the_request_is_not_retried(
    client: AsyncCTGT, api: respx.MockRouter, status: int
) -> None:
    route = api.post(URL).respond(status, json={"error": {"message": "no"}})
    with pytest.raises(Exception) as caught:
        await create(client)
    assert route.call_count == 1
    assert getattr(caught.value, "attempts", None) == 1


async def test_after_the_last_retry_the_typed_error_of_the_last_response_is_raised(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    route = api.post(URL).mock(
        side_effect=[
            httpx.Response(503, json={"error": {"message": "first"}}),
            httpx.Response(502, json={"error": {"message": "second"}}),
            httpx.Response(500, json={"error": {"message": "third"}}),
        ]
    )
    with pytest.raises(InternalServerError) as caught:
        await create(client)
    assert route.call_count == 3
    assert caught.value.status_code == 500
    assert caught.value.attempts == 3
    assert "third" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)


async def test_max_retries_zero_disables_retrying(api: respx.MockRouter) -> None:
    route = api.post(URL).respond(503)
    async with AsyncCTGT(api_key=KEY, base_url=BASE, max_retries=0) as client:
        with pytest.raises(InternalServerError) as caught:
            await create(client)
    assert route.call_count == 1
    assert caught.value.attempts == 1


async def test_max_retries_can_be_raised_per_call(client: AsyncCTGT, api: respx.MockRouter) -> None:
    route = api.post(URL).mock(side_effect=[httpx.Response(500)] * 4 + [OK])
    await create(client.with_options(max_retries=4))
    assert route.call_count == 5


async def test_the_server_can_veto_a_retry(client: AsyncCTGT, api: respx.MockRouter) -> None:
    route = api.post(URL).respond(503, headers={"x-should-retry": "false"})
    with pytest.raises(InternalServerError):
        await create(client)
    assert route.call_count == 1


async def test_the_server_can_demand_a_retry(client: AsyncCTGT, api: respx.MockRouter) -> None:
    route = api.post(URL).mock(
        side_effect=[httpx.Response(400, headers={"x-should-retry": "true"}), OK]
    )
    await create(client)
    assert route.call_count == 2


async def test_connection_errors_are_retried_then_raised_as_typed_errors(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    route = api.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError) as caught:
        await create(client)
    assert not isinstance(caught.value, APITimeoutError)
    assert route.call_count == 3
    assert "refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_connection_error_then_success(client: AsyncCTGT, api: respx.MockRouter) -> None:
    route = api.post(URL).mock(side_effect=[httpx.RemoteProtocolError("reset"), OK])
    await create(client)
    assert route.call_count == 2


async def test_timeouts_are_retried_then_raised_as_api_timeout_errors(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    route = api.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError) as caught:
        await create(client)
    assert route.call_count == 3
    assert caught.value.attempts == 3


async def test_the_idempotency_key_is_the_same_on_every_retry(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    api.post(URL).mock(side_effect=[httpx.Response(500), httpx.Response(429), OK])
    await create(client)
    keys = {call.request.headers["idempotency-key"] for call in api.calls}
    assert len(keys) == 1


async def test_retry_after_zero_means_retry_at_once(
    api: respx.MockRouter, retry_log: pytest.LogCaptureFixture
) -> None:
    api.post(URL).mock(side_effect=[httpx.Response(429, headers={"retry-after": "0"}), OK])
    async with AsyncCTGT(api_key=KEY, base_url=BASE, initial_retry_delay=30) as client:
        await create(client)
    assert waits(retry_log) == [0.0]


async def test_retry_after_ms_is_honoured_over_the_backoff(
    api: respx.MockRouter, retry_log: pytest.LogCaptureFixture
) -> None:
    api.post(URL).mock(side_effect=[httpx.Response(503, headers={"retry-after-ms": "10"}), OK])
    async with AsyncCTGT(api_key=KEY, base_url=BASE, initial_retry_delay=30) as client:
        await create(client)
    assert waits(retry_log) == [0.01]


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    route = api.post(URL).respond(429, headers={"retry-after": "3600"})
    with pytest.raises(RateLimitError) as caught:
        await create(client)
    assert route.call_count == 1
    assert caught.value.retry_after == 3600


async def test_each_retry_is_logged_without_the_key(
    client: AsyncCTGT, api: respx.MockRouter, retry_log: pytest.LogCaptureFixture
) -> None:
    api.post(URL).mock(
        side_effect=[httpx.Response(500, json={"error": {"message": f"bad {KEY}"}}), OK]
    )
    await create(client)
    lines = [r.getMessage() for r in retry_log.records if r.name == "ctgt_async"]
    assert lines == ["Retrying in 0.000 s (attempt 1 failed): 500 Internal Server Error: bad ***"]
    assert KEY not in retry_log.text


async def test_total_timeout_skips_a_wait_that_would_overrun_it(
    api: respx.MockRouter,
) -> None:
    route = api.post(URL).respond(503, headers={"retry-after": "30"})
    async with AsyncCTGT(api_key=KEY, base_url=BASE, total_timeout=5) as client:
        with anyio.fail_after(5):
            with pytest.raises(InternalServerError) as caught:
                await create(client)
    assert route.call_count == 1
    assert caught.value.attempts == 1


async def test_total_timeout_cancels_a_slow_attempt(api: respx.MockRouter) -> None:
    started = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    api.post(URL).mock(side_effect=hang)
    async with AsyncCTGT(api_key=KEY, base_url=BASE) as client:
        with pytest.raises(APITimeoutError, match=r"total_timeout=0\.05") as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES, total_timeout=0.05)
    assert started.is_set()
    assert caught.value.attempts == 1


async def test_cancellation_during_a_backoff_wait_takes_effect_at_once(
    api: respx.MockRouter, retry_log: pytest.LogCaptureFixture
) -> None:
    route = api.post(URL).respond(503, headers={"retry-after": "59"})
    backing_off = anyio.Event()

    class SetOnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            backing_off.set()

    handler = SetOnRetry()
    logging.getLogger("ctgt_async").addHandler(handler)
    try:
        async with AsyncCTGT(api_key=KEY, base_url=BASE) as client:
            with anyio.fail_after(10):  # a guard: the wait asked for is 59 s
                async with anyio.create_task_group() as group:
                    group.start_soon(create, client)
                    await backing_off.wait()
                    group.cancel_scope.cancel()
    finally:
        logging.getLogger("ctgt_async").removeHandler(handler)
    assert route.call_count == 1
    assert waits(retry_log) == [59.0]


async def test_a_non_retryable_error_after_retries_keeps_the_attempt_count(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    api.post(URL).mock(side_effect=[httpx.Response(500), httpx.Response(400)])
    with pytest.raises(BadRequestError) as caught:
        await create(client)
    assert caught.value.attempts == 2
