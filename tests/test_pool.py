"""The constant-time connection pool: reuse, limits, waiting, timeouts and cancellation.

Over a real socket (the simulator under uvicorn, asyncio) connection reuse shows as the
client port the server saw. Under respx (asyncio and trio) the pool's bookkeeping runs on
mocked connections, which lets the limits be exercised without a network.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import respx

from ctgt_async._pool import PooledTransport
from ctgt_async.testing import Simulator

pytestmark = pytest.mark.anyio
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"Authorization": "Bearer sk-test"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, str]]:
    simulator = Simulator()
    async with simulator.serve() as base_url:
        yield simulator, f"{base_url}/chat/completions"


@pytest.fixture
def mocked() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url="http://api.test") as router:
        yield router


def pool(**limits: int | float | None) -> PooledTransport:
    return PooledTransport(limits=httpx.Limits(**limits))  # type: ignore[arg-type]


@ASYNCIO_ONLY
async def test_requests_in_a_row_reuse_one_connection(served: tuple[Simulator, str]) -> None:
    simulator, url = served
    transport = pool()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(5):
            response = await client.post(url, json=BODY, headers=HEADERS)
            assert response.status_code == 200
        assert transport.connections == 1
        assert transport.idle_connections == 1
    assert len({record.client for record in simulator.requests}) == 1
    assert transport.connections == 0


@ASYNCIO_ONLY
async def test_concurrency_beyond_the_limit_waits_for_a_free_connection(
    served: tuple[Simulator, str],
) -> None:
    simulator, url = served
    transport = pool(max_connections=3)
    async with httpx.AsyncClient(transport=transport) as client:

        async def one() -> None:
            response = await client.post(url, json=BODY, headers=HEADERS)
            assert response.status_code == 200

        async with anyio.create_task_group() as group:
            for _ in range(30):
                group.start_soon(one)
    assert len(simulator.requests) == 30
    assert len({record.client for record in simulator.requests}) <= 3


@ASYNCIO_ONLY
async def test_expired_idle_connections_are_replaced(served: tuple[Simulator, str]) -> None:
    simulator, url = served
    async with httpx.AsyncClient(transport=pool(keepalive_expiry=0)) as client:
        for _ in range(3):
            await client.post(url, json=BODY, headers=HEADERS)
    assert len({record.client for record in simulator.requests}) == 3


@ASYNCIO_ONLY
async def test_idle_connections_beyond_the_keepalive_limit_are_closed(
    served: tuple[Simulator, str],
) -> None:
    _, url = served
    transport = pool(max_keepalive_connections=2)
    async with httpx.AsyncClient(transport=transport) as client:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(client.post, url)
        assert transport.idle_connections <= 2
        assert transport.connections == transport.idle_connections


@ASYNCIO_ONLY
async def test_a_body_left_unread_does_not_return_its_connection(
    served: tuple[Simulator, str],
) -> None:
    simulator, url = served
    transport = pool()
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("POST", url, json={**BODY, "stream": True}, headers=HEADERS):
            pass  # closed before the body was read: the connection cannot be reused
        assert transport.connections == 0
        await client.post(url, json=BODY, headers=HEADERS)
    first, second = simulator.requests
    assert first.client != second.client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    transport = pool()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")
    assert transport.connections == 0


async def test_respx_intercepts_requests_through_the_pool(mocked: respx.MockRouter) -> None:
    mocked.get("/hello").respond(200, text="hi")
    transport = pool()
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert (await client.get("/hello")).text == "hi"
        assert (await client.get("/hello")).text == "hi"
    assert mocked.calls.call_count == 2
    assert transport.connections == 0


async def test_a_full_pool_times_out_with_a_pool_timeout(mocked: respx.MockRouter) -> None:
    mocked.get("/slow").respond(200, text="x")
    transport = pool(max_connections=1)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        async with client.stream("GET", "/slow"):
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/slow", timeout=httpx.Timeout(5, pool=0))
        assert (await client.get("/slow")).text == "x"


async def test_a_cancelled_waiter_passes_its_turn_on(mocked: respx.MockRouter) -> None:
    mocked.get("/x").respond(200, text="x")
    transport = pool(max_connections=1)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        held = client.stream("GET", "/x")
        await held.__aenter__()
        results: list[str] = []
        doomed = anyio.CancelScope()

        async def cancelled_waiter() -> None:
            with doomed:
                await client.get("/x")

        async def patient_waiter() -> None:
            results.append((await client.get("/x")).text)

        async with anyio.create_task_group() as group:
            group.start_soon(cancelled_waiter)
            await anyio.wait_all_tasks_blocked()
            group.start_soon(patient_waiter)
            await anyio.wait_all_tasks_blocked()
            # Release the held connection and cancel the first waiter at the same time:
            # its wake-up must reach the second one.
            doomed.cancel()
            await held.__aexit__(None, None, None)
        assert results == ["x"]


async def test_idle_connections_of_another_origin_make_room(mocked: respx.MockRouter) -> None:
    mocked.get("http://one.test/").respond(200)
    mocked.get("http://two.test/").respond(200)
    transport = pool(max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://one.test/")
        await client.get("http://two.test/")
    assert transport.connections == 0


async def test_a_closed_transport_refuses_requests(mocked: respx.MockRouter) -> None:
    transport = pool()
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://api.test/"))
