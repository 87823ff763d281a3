"""`Simulator.serve()` puts the simulator on a real loopback socket behind uvicorn.

Socket mode is what other languages' clients and the README demo use, and the only place a
dropped stream is a real TCP connection closed halfway through a chunked body. These tests use
plain httpx over the network. uvicorn needs asyncio, so they run under asyncio only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from ctgt_async.testing import SIMULATE_HEADER, DropConnection, Simulator, SimulatorTransport

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk-test"}
CHAT: dict[str, Any] = {
    "model": "gemini-2.5-flash-lite",
    "messages": [{"role": "user", "content": "Why is the sky blue?"}],
}
STREAM = {**CHAT, "stream": True}


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn runs on asyncio only, so socket mode is tested there."""
    return "asyncio"


@asynccontextmanager
async def served(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client talking to `sim` over loopback TCP."""
    # trust_env=False: a proxy configured in the environment must not capture loopback.
    async with (
        sim.serve() as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        yield client


def stream_text(raw: str) -> str:
    events = [event.removeprefix("data: ") for event in raw.split("\n\n") if event]
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def test_serve_yields_the_api_base_url_on_a_free_port() -> None:
    async with Simulator().serve() as base_url:
        url = httpx.URL(base_url)
        assert (url.scheme, url.host, url.path) == ("http", "127.0.0.1", "/v1")
        assert url.port


async def test_a_reply_over_the_socket_is_the_same_as_in_process() -> None:
    sim = Simulator()
    async with served(sim) as client:
        over_tcp = await client.post("/chat/completions", json=CHAT, headers=AUTH)
    transport = SimulatorTransport(sim)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1") as client:
        in_process = await client.post("/chat/completions", json=CHAT, headers=AUTH)

    assert over_tcp.status_code == 200
    assert over_tcp.headers["content-type"] == "application/json"
    assert over_tcp.headers["x-request-id"].startswith("req_")
    assert over_tcp.json()["choices"] == in_process.json()["choices"]


async def test_a_stream_over_the_socket_adds_up_to_the_reply() -> None:
    sim = Simulator()
    async with served(sim) as client:
        reply = await client.post("/chat/completions", json=CHAT, headers=AUTH)
        async with client.stream("POST", "/chat/completions", json=STREAM, headers=AUTH) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = (await r.aread()).decode()

    assert raw.endswith("data: [DONE]\n\n")
    assert stream_text(raw) == reply.json()["choices"][0]["message"]["content"]
    assert sim.last_request.completed


async def test_errors_over_the_socket_are_the_same_json() -> None:
    async with served(Simulator()) as client:
        response = await client.post("/chat/completions", json=CHAT)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_drop_closes_the_tcp_connection_mid_body() -> None:
    sim = Simulator()
    sim.break_next_stream(DropConnection(after=2))

    async with served(sim) as client:
        async with client.stream("POST", "/chat/completions", json=STREAM, headers=AUTH) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await r.aread()
        # The connection is gone, not the server: the next request is served normally.
        assert (await client.post("/chat/completions", json=CHAT, headers=AUTH)).status_code == 200

    assert sim.requests[0].chunks_sent == 2
    assert not sim.requests[0].completed


async def test_a_header_selected_fault_works_over_the_socket() -> None:
    headers = {**AUTH, SIMULATE_HEADER: "status=503, retry-after=0"}
    async with served(Simulator()) as client:
        response = await client.post("/chat/completions", json=CHAT, headers=headers)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "0"


async def test_a_client_leaving_a_stalled_stream_is_recorded() -> None:
    sim = Simulator()
    headers = {**AUTH, SIMULATE_HEADER: "stall-after=1"}

    with anyio.fail_after(10):  # a safety net against a hang, not a timing assertion
        async with served(sim) as client:
            async with client.stream("POST", "/chat/completions", json=STREAM, headers=headers):
                pass  # the headers arrived; leave without reading the rest
            # The server learns of the closed connection a moment later: wait for it.
            await sim.wait_idle()

    assert sim.last_request.disconnected
    assert not sim.last_request.completed


async def test_leaving_serve_cuts_a_stream_still_in_progress() -> None:
    sim = Simulator()
    headers = {**AUTH, SIMULATE_HEADER: "stall-after=1"}

    with anyio.fail_after(10):  # a safety net against a hang, not a timing assertion
        async with httpx.AsyncClient(trust_env=False) as client:
            async with sim.serve() as base_url:
                request = client.build_request(
                    "POST", f"{base_url}/chat/completions", json=STREAM, headers=headers
                )
                response = await client.send(request, stream=True)
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()
            await response.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_serve_refuses_to_run_under_trio() -> None:
    with pytest.raises(RuntimeError, match="asyncio"):
        async with Simulator().serve():
            pass


async def test_serve_names_the_extra_when_uvicorn_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    with pytest.raises(ImportError, match=r"ctgt-async\[server\]"):
        async with Simulator().serve():
            pass
