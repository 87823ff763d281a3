"""What a stream does to connections, seen from the server: reuse after the end, and a
prompt disconnect when the caller stops early.

The simulator runs in process (asyncio and trio) and on a real loopback socket (uvicorn,
asyncio only), where keep-alive reuse is visible as the same client port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from ctgt_async import AsyncCTGT, MessageParam
from ctgt_async.testing import Simulator, Stall

MESSAGES: list[MessageParam] = [{"role": "user", "content": "Tell me about the sea."}]
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])

pytestmark = pytest.mark.anyio


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, AsyncCTGT]]:
    simulator = Simulator()
    async with (
        simulator.serve() as base_url,
        AsyncCTGT(api_key="sk-test", base_url=base_url) as client,
    ):
        yield simulator, client


@pytest.fixture
async def in_process() -> AsyncIterator[tuple[Simulator, AsyncCTGT]]:
    simulator = Simulator()
    async with simulator.client() as client:
        yield simulator, client


async def stream_to_end(client: AsyncCTGT) -> str:
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        return "".join([text async for text in stream.text_stream])


@ASYNCIO_ONLY
async def test_streams_in_a_row_reuse_one_keep_alive_connection(
    served: tuple[Simulator, AsyncCTGT],
) -> None:
    simulator, client = served
    texts = [await stream_to_end(client) for _ in range(4)]
    assert all(texts)
    ports = {record.client for record in simulator.requests}
    assert len(ports) == 1, f"each stream opened a new connection: {ports}"
    assert all(record.completed and not record.disconnected for record in simulator.requests)


@ASYNCIO_ONLY
async def test_breaking_out_closes_the_connection_and_the_server_sees_it(
    served: tuple[Simulator, AsyncCTGT],
) -> None:
    simulator, client = served
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        async for _ in stream:
            break
    with anyio.fail_after(5):
        await simulator.wait_idle()
    assert simulator.last_request.disconnected
    assert not simulator.last_request.completed
    # The pool did not keep the broken connection: the next stream works on a new one.
    assert await stream_to_end(client)
    assert simulator.requests[0].client != simulator.requests[1].client


async def test_cancelling_a_stream_disconnects_upstream(
    in_process: tuple[Simulator, AsyncCTGT],
) -> None:
    simulator, client = in_process
    simulator.break_next_stream(Stall(after=2))
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received = 0
    with anyio.CancelScope() as scope:
        async with stream:
            async for _ in stream:
                received += 1
                if received == 2:
                    scope.cancel()
    with anyio.fail_after(5):
        await simulator.wait_idle()
    assert simulator.last_request.disconnected
    assert received == 2


@ASYNCIO_ONLY
async def test_cancelling_a_stalled_socket_stream_disconnects_upstream(
    served: tuple[Simulator, AsyncCTGT],
) -> None:
    simulator, client = served
    simulator.break_next_stream(Stall(after=1))
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    arrived = anyio.Event()

    async def consume() -> None:
        async with stream:
            async for _ in stream:
                arrived.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await arrived.wait()
        group.cancel_scope.cancel()
    with anyio.fail_after(5):
        await simulator.wait_idle()
    assert simulator.last_request.disconnected
    assert stream.response.is_closed
