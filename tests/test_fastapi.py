"""Re-streaming from FastAPI under a real uvicorn, with the simulator as the upstream API.

The app under test is ``examples/fastapi_chat.py``, the one the docs show. The browser is
an httpx client on loopback; the simulator serves the upstream API on its own socket, so
what the app does to its upstream connection is seen by the simulator.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest

from ctgt_async import AsyncCTGT, ChatCompletionChunk
from ctgt_async._pool import PooledTransport
from ctgt_async._sse import SSEDecoder
from ctgt_async.testing import DropConnection, ErrorEvent, Simulator
from ctgt_async.testing._server import serve

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

EXAMPLE = Path(__file__).parent.parent / "examples" / "fastapi_chat.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_chat", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_chat"] = module
    spec.loader.exec_module(module)
    return module


fastapi_chat = load_example()


@dataclass
class Setup:
    simulator: Simulator
    browser: httpx.AsyncClient
    upstream: list[AsyncCTGT]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    simulator = Simulator()
    upstream: list[AsyncCTGT] = []
    async with simulator.serve() as api_url:

        def make_client() -> AsyncCTGT:
            client = AsyncCTGT(api_key="sk-test", base_url=api_url, initial_retry_delay=0)
            upstream.append(client)
            return client

        app = fastapi_chat.create_app(make_client)
        async with serve(app, lifespan=True) as app_url:
            base = app_url.removesuffix("/v1")
            limits = httpx.Limits(max_connections=300)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as browser:
                yield Setup(simulator, browser, upstream)


def events(raw: bytes) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in SSEDecoder().feed(raw)]


def text_of(raw: bytes) -> str:
    return "".join(
        ChatCompletionChunk.model_validate_json(data).choices[0].delta.content or ""
        for name, data in events(raw)
        if name == "message" and data != "[DONE]" and '"choices":[]' not in data
    )


async def test_the_page_is_served(setup: Setup) -> None:
    page = await setup.browser.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'fetch("/chat"' in page.text


async def test_a_full_stream_reaches_the_browser_intact(setup: Setup) -> None:
    response = await setup.browser.post("/chat", json={"message": "Why is the sky blue?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events(response.content)[-1] == ("message", "[DONE]")
    # The same text as a direct, non-streamed call with the same request.
    async with AsyncCTGT(api_key="sk-test", base_url=str(setup.upstream[0].base_url)) as direct:
        completion = await direct.chat.completions.create(
            model=fastapi_chat.MODEL,
            messages=[{"role": "user", "content": "Why is the sky blue?"}],
        )
    assert text_of(response.content) == completion.choices[0].message.content


async def test_a_browser_that_leaves_closes_the_upstream_within_a_second(setup: Setup) -> None:
    setup.simulator.token_delay = 0.05  # a long answer still arriving when the browser leaves
    request = {"message": "Tell me everything."}
    async with setup.browser.stream("POST", "/chat", json=request) as response:
        received = b""
        async for piece in response.aiter_bytes():
            received += piece
            if received.count(b"\n\n") >= 3:
                break
    upstream = setup.simulator.last_request
    assert not upstream.completed
    with anyio.fail_after(1):
        await setup.simulator.wait_idle()
    assert upstream.disconnected
    assert not upstream.completed


async def test_a_rate_limit_before_the_first_token_is_an_http_429(setup: Setup) -> None:
    setup.simulator.fail_next(3, status=429, retry_after=0)
    response = await setup.browser.post("/chat", json={"message": "hi"})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"]
    assert "sk-test" not in response.text


async def test_a_bad_key_upstream_is_a_502_not_the_browsers_fault(setup: Setup) -> None:
    setup.simulator.api_keys = frozenset({"sk-other"})
    response = await setup.browser.post("/chat", json={"message": "hi"})
    assert response.status_code == 502
    assert "Invalid API key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (ErrorEvent(after=3, message="model overloaded"), "model overloaded"),
        (DropConnection(after=3), "The connection to the upstream model was lost."),
    ],
)
async def test_an_upstream_failure_mid_stream_ends_with_an_error_event(
    setup: Setup, fault: ErrorEvent | DropConnection, message: str
) -> None:
    setup.simulator.break_next_stream(fault)
    response = await setup.browser.post("/chat", json={"message": "hi"})
    assert response.status_code == 200
    received = events(response.content)
    assert received[-1][0] == "error"
    assert message in received[-1][1]
    assert ("message", "[DONE]") not in received
    assert text_of(response.content), "the text before the failure reached the browser"


async def test_200_concurrent_streams_complete_without_leaks(setup: Setup) -> None:
    results: list[bytes] = []

    async def one(index: int) -> None:
        response = await setup.browser.post("/chat", json={"message": f"question {index}"})
        assert response.status_code == 200
        results.append(response.content)

    async with anyio.create_task_group() as group:
        for index in range(200):
            group.start_soon(one, index)
    assert len(results) == 200
    assert all(events(raw)[-1] == ("message", "[DONE]") for raw in results)
    await setup.simulator.wait_idle()
    records = setup.simulator.requests
    assert len(records) == 200
    assert all(r.completed and not r.disconnected for r in records)
    pool = setup.upstream[0].http_client._transport
    assert isinstance(pool, PooledTransport)
    assert pool.connections == pool.idle_connections
