"""`SimulatorTransport` streams an in-process ASGI app the way a network would deliver it.

Unlike httpx's `ASGITransport`, which buffers the whole response, it hands the response over
at `http.response.start` and each body piece as it is sent. Orderings here are proved with
anyio events, never with timing: the app waits on an event that only the test sets after it
has seen the piece it expects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, cast

import anyio
import httpx
import pytest

from ctgt_async.testing import Simulator, SimulatorTransport, Stall

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
AUTH = {"Authorization": "Bearer sk-test"}
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}


def start(status: int = 200) -> Message:
    return {"type": "http.response.start", "status": status, "headers": [(b"x-app", b"yes")]}


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


@asynccontextmanager
async def open_client(
    app: Any, *, read_timeout: float = 5.0, grace: float = 1.0
) -> AsyncIterator[httpx.AsyncClient]:
    transport = SimulatorTransport(app, disconnect_grace=grace)
    timeout = httpx.Timeout(5.0, read=read_timeout)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/v1", timeout=timeout
    ) as client:
        yield client


async def first_pieces(response: httpx.Response, count: int) -> list[bytes]:
    """Read `count` raw body pieces, then stop (see test_simulator_faults.py for why so)."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    pieces: list[bytes] = []
    async with aclosing(cast("AsyncGenerator[bytes, None]", stream.__aiter__())) as pieces_in:
        for _ in range(count):
            pieces.append(await pieces_in.__anext__())
    return pieces


# --- streaming ------------------------------------------------------------------------------


async def test_the_response_and_its_first_piece_arrive_before_the_app_finishes() -> None:
    release = anyio.Event()
    finished = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send(body(b"first", more=True))
        await release.wait()
        await send(body(b"rest"))
        finished.set()

    async with open_client(app) as client, client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        assert response.headers["x-app"] == "yes"
        pieces = response.aiter_raw()
        assert await pieces.__anext__() == b"first"
        assert not finished.is_set()
        release.set()
        assert [piece async for piece in pieces] == [b"rest"]
        assert finished.is_set()


async def test_the_request_reaches_the_app_as_asgi() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["request"] = await receive()
        await send(start(201))
        await send(body(b"ok"))

    async with open_client(app) as client:
        response = await client.post("/things?a=1", content=b"payload", headers={"X-Test": "Yes"})

    assert response.status_code == 201
    scope = seen["scope"]
    assert (scope["type"], scope["method"], scope["path"]) == ("http", "POST", "/v1/things")
    assert scope["query_string"] == b"a=1"
    assert scope["asgi"]["version"] == "3.0"
    assert (b"x-test", b"Yes") in scope["headers"]
    assert seen["request"] == {"type": "http.request", "body": b"payload", "more_body": False}


async def test_concurrent_streams_each_get_their_own_reply() -> None:
    sim = Simulator()
    replies: dict[str, bytes] = {}

    async with open_client(sim) as client:

        async def ask(question: str) -> None:
            messages = [{"role": "user", "content": question}]
            request = {**CHAT, "messages": messages, "stream": True}
            async with client.stream("POST", "/chat/completions", json=request, headers=AUTH) as r:
                replies[question] = await r.aread()

        async with anyio.create_task_group() as group:
            for question in ("one", "two", "three"):
                group.start_soon(ask, question)

    assert len(set(replies.values())) == 3
    assert all(r.completed and not r.disconnected for r in sim.requests)


async def test_delays_do_not_change_the_reply() -> None:
    request = {**CHAT, "stream": True}

    async def reply(sim: Simulator) -> str:
        async with open_client(sim) as client:
            response = await client.post("/chat/completions", json=request, headers=AUTH)
        events = [event.removeprefix("data: ") for event in response.text.split("\n\n")]
        chunks = [json.loads(event) for event in events if event.startswith("{")]
        return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)

    slow = Simulator(time_to_first_token=0.001, token_delay=0.0001)
    assert await reply(slow) == await reply(Simulator())


# --- the client leaving ---------------------------------------------------------------------


async def test_closing_early_tells_the_app_the_client_left() -> None:
    saw: list[str] = []
    finished = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()  # the request body
            await send(start())
            await send(body(b"piece", more=True))
            saw.append((await receive())["type"])
            try:
                await send(body(b"too late", more=True))
            except OSError:
                saw.append("send failed")
        finally:
            finished.set()

    async with open_client(app) as client:
        async with client.stream("GET", "/") as response:
            assert await first_pieces(response, 1) == [b"piece"]
        # Leaving the block closed the response, which waited for the app to finish.
        assert finished.is_set()

    assert saw == ["http.disconnect", "send failed"]


async def test_an_app_that_ignores_the_client_leaving_is_cancelled() -> None:
    cancelled = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with open_client(app, grace=0) as client:
        async with client.stream("GET", "/"):
            pass
        assert cancelled.is_set()


async def test_closing_the_client_stops_apps_whose_responses_were_never_closed() -> None:
    cancelled = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with open_client(app) as client:
        request = client.build_request("GET", "/")
        response = await client.send(request, stream=True)
        assert response.status_code == 200

    assert cancelled.is_set()


async def test_the_simulator_records_a_client_that_left_a_stall() -> None:
    sim = Simulator()
    sim.break_next_stream(Stall(after=1))

    with anyio.fail_after(5):  # a safety net against a hang, not a timing assertion
        async with open_client(sim) as client:
            request = {**CHAT, "stream": True}
            async with client.stream("POST", "/chat/completions", json=request, headers=AUTH) as r:
                await first_pieces(r, 1)
            assert sim.last_request.disconnected

    assert not sim.last_request.completed


async def test_the_read_timeout_applies_while_the_app_is_silent() -> None:
    sim = Simulator()
    sim.break_next_stream(Stall(after=1))
    request = {**CHAT, "stream": True}

    async with (
        open_client(sim, read_timeout=0.01) as client,
        client.stream("POST", "/chat/completions", json=request, headers=AUTH) as response,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()

    assert sim.last_request.disconnected


# --- apps that fail -------------------------------------------------------------------------


async def test_an_app_error_before_the_response_is_raised_as_is() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("bug in the app")

    async with open_client(app) as client:
        with pytest.raises(ValueError, match="bug in the app"):
            await client.get("/")


async def test_an_app_error_after_the_response_started_looks_like_a_dropped_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send(body(b"partial", more=True))
        raise ConnectionResetError("gone")

    async with open_client(app) as client, client.stream("GET", "/") as response:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await response.aread()

    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_an_app_that_stops_halfway_through_the_body_is_a_protocol_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send(body(b"partial", more=True))

    async with open_client(app) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/")


async def test_an_app_that_never_responds_is_an_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    async with open_client(app) as client:
        with pytest.raises(RuntimeError, match="without starting a response"):
            await client.get("/")


async def test_messages_out_of_order_are_app_errors() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(body(b"no start"))

    async with open_client(app) as client:
        with pytest.raises(RuntimeError, match=r"http\.response\.start"):
            await client.get("/")


# --- lifecycle ------------------------------------------------------------------------------


async def test_the_transport_must_be_entered_and_says_how() -> None:
    client = httpx.AsyncClient(transport=SimulatorTransport(Simulator()), base_url="http://t/v1")
    try:
        with pytest.raises(RuntimeError, match="async with"):
            await client.post("/chat/completions", json=CHAT, headers=AUTH)
    finally:
        await client.aclose()


async def test_a_closed_transport_refuses_requests() -> None:
    transport = SimulatorTransport(Simulator())
    async with transport:
        pass
    request = httpx.Request("POST", "http://t/v1/chat/completions", json=CHAT)

    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(request)


async def test_a_transport_is_entered_once() -> None:
    transport = SimulatorTransport(Simulator())
    async with transport:
        with pytest.raises(RuntimeError, match="once"):
            await transport.__aenter__()


# --- the SDK client convenience -------------------------------------------------------------


async def test_client_builds_an_sdk_client_with_the_first_key() -> None:
    from ctgt_async import AsyncCTGT

    client = Simulator(api_keys=["sk-first", "sk-second"]).client()
    try:
        assert isinstance(client, AsyncCTGT)
    finally:
        await client.close()


def test_client_needs_a_key_when_the_simulator_accepts_none() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Simulator(api_keys=[]).client()
