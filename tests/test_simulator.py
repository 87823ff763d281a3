"""The simulator answers like the CTGT chat completions reference page says it should.

This is the contract the SDK is tested against, so it is spelled out here request by request:
authentication, validation, routing, the reply and its usage, determinism, personas, the
stream format and what the simulator records. Fault injection has its own file.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctgt_async.testing
from ctgt_async.testing import Simulator, SimulatorTransport

pytestmark = pytest.mark.anyio

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
URL = "/chat/completions"
QUESTION = "Why is the sky blue?"


def chat(**fields: Any) -> dict[str, Any]:
    """The reference page's example request, with `fields` changed."""
    body: dict[str, Any] = {
        "model": "gemini-2.5-flash-lite",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    body.update(fields)
    return body


@asynccontextmanager
async def open_client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = SimulatorTransport(sim)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1") as client:
        yield client


async def post(
    sim: Simulator, body: object = None, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with open_client(sim) as client:
        return await client.post(
            URL, json=chat() if body is None else body, headers=AUTH if headers is None else headers
        )


async def content_of(sim: Simulator, **fields: Any) -> str:
    response = await post(sim, chat(**fields))
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def sse_data(raw: str) -> list[str]:
    """Split a stream into the data of its events, checking every event is `data: ...\\n\\n`."""
    assert raw.endswith("\n\n")
    events = raw[:-2].split("\n\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events), raw
    return [event.removeprefix("data: ") for event in events]


async def stream(sim: Simulator, **fields: Any) -> tuple[httpx.Response, list[str]]:
    async with open_client(sim) as client:
        response = await client.post(URL, json=chat(stream=True, **fields), headers=AUTH)
    return response, sse_data(response.text)


def chunks(data: list[str]) -> list[dict[str, Any]]:
    """The JSON chunks of a stream, checking that it ends with `[DONE]`."""
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


# --- authentication -------------------------------------------------------------------------

INVALID_KEY_BODY = {
    "error": {
        "message": "Invalid API key provided",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


async def test_a_valid_bearer_key_is_accepted() -> None:
    assert (await post(Simulator())).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer sk-wrong-secret"}, id="wrong-key"),
        pytest.param({"Authorization": f"Basic {KEY}"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer "}, id="empty-key"),
    ],
)
async def test_a_missing_or_wrong_key_gets_the_reference_401(headers: dict[str, str]) -> None:
    response = await post(Simulator(), headers=headers)

    assert response.status_code == 401
    assert response.json() == INVALID_KEY_BODY
    assert "sk-wrong-secret" not in response.text


async def test_the_accepted_keys_are_configurable() -> None:
    sim = Simulator(api_keys=["sk-one", "sk-two"])

    assert (await post(sim, headers={"Authorization": "Bearer sk-two"})).status_code == 200
    assert (await post(sim, headers=AUTH)).status_code == 401


async def test_a_single_key_can_be_given_as_a_string() -> None:
    sim = Simulator(api_keys="sk-solo")
    assert (await post(sim, headers={"Authorization": "Bearer sk-solo"})).status_code == 200


async def test_the_bearer_scheme_is_case_insensitive() -> None:
    response = await post(Simulator(), headers={"Authorization": f"bearer {KEY}"})
    assert response.status_code == 200


# --- validation -----------------------------------------------------------------------------

MESSAGE = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        pytest.param(b"{not json", None, "invalid_json", id="not-json"),
        pytest.param(b"", None, "invalid_json", id="empty-body"),
        pytest.param(b'{"temperature": NaN}', None, "invalid_json", id="nan-is-not-json"),
        pytest.param([chat()], None, "invalid_json", id="not-an-object"),
        pytest.param({"messages": [MESSAGE]}, "model", "missing_required_parameter", id="no-model"),
        pytest.param(chat(model=""), "model", "invalid_parameter", id="empty-model"),
        pytest.param(chat(model=7), "model", "invalid_parameter", id="model-not-string"),
        pytest.param({"model": "m"}, "messages", "missing_required_parameter", id="no-messages"),
        pytest.param(chat(messages=[]), "messages", "invalid_parameter", id="empty-messages"),
        pytest.param(chat(messages="hi"), "messages", "invalid_parameter", id="messages-string"),
        pytest.param(chat(messages=["hi"]), "messages[0]", "invalid_parameter", id="message-str"),
        pytest.param(
            chat(messages=[MESSAGE, {"content": "x"}]),
            "messages[1].role",
            "missing_required_parameter",
            id="no-role",
        ),
        pytest.param(
            chat(messages=[{"role": "user"}]),
            "messages[0].content",
            "missing_required_parameter",
            id="no-content",
        ),
        pytest.param(
            chat(messages=[{"role": 1, "content": "x"}]),
            "messages[0].role",
            "invalid_parameter",
            id="role-not-string",
        ),
        pytest.param(
            chat(messages=[{"role": "", "content": "x"}]),
            "messages[0].role",
            "invalid_parameter",
            id="empty-role",
        ),
        pytest.param(
            chat(messages=[{"role": "user", "content": ["parts"]}]),
            "messages[0].content",
            "invalid_parameter",
            id="content-not-string",
        ),
        pytest.param(chat(temperature="hot"), "temperature", "invalid_parameter", id="temp-str"),
        pytest.param(chat(temperature=True), "temperature", "invalid_parameter", id="temp-bool"),
        pytest.param(chat(temperature=2.01), "temperature", "invalid_parameter", id="temp-high"),
        pytest.param(chat(temperature=-0.5), "temperature", "invalid_parameter", id="temp-low"),
        pytest.param(chat(stream="yes"), "stream", "invalid_parameter", id="stream-not-bool"),
        pytest.param(chat(stream=1), "stream", "invalid_parameter", id="stream-int"),
        pytest.param(chat(persona=3), "persona", "invalid_parameter", id="persona-not-string"),
        pytest.param(chat(user=42), "user", "invalid_parameter", id="user-not-string"),
        pytest.param(chat(max_tokens=0), "max_tokens", "invalid_parameter", id="max-tokens-0"),
        pytest.param(chat(max_tokens=2.5), "max_tokens", "invalid_parameter", id="max-tokens-f"),
        pytest.param(
            chat(stream_options=True), "stream_options", "invalid_parameter", id="options-bool"
        ),
    ],
)
async def test_an_invalid_body_gets_a_400_naming_the_field(
    body: object, param: str | None, code: str
) -> None:
    async with open_client(Simulator()) as client:
        if isinstance(body, bytes):
            response = await client.post(URL, content=body, headers=AUTH)
        else:
            response = await client.post(URL, json=body, headers=AUTH)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    if param is not None:
        assert f"'{param}'" in error["message"]


@pytest.mark.parametrize("temperature", [0, 0.7, 2])
async def test_temperature_may_be_anything_from_0_to_2(temperature: float) -> None:
    assert (await post(Simulator(), chat(temperature=temperature))).status_code == 200


async def test_unknown_fields_are_accepted() -> None:
    response = await post(Simulator(), chat(top_p=0.5, n=1, metadata={"trace": "x"}))
    assert response.status_code == 200


async def test_optional_fields_may_be_null() -> None:
    body = chat(persona=None, temperature=None, stream=None, user=None, max_tokens=None)
    assert (await post(Simulator(), body)).status_code == 200


async def test_an_unknown_persona_is_answered_in_the_default_voice() -> None:
    sim = Simulator()
    assert await content_of(sim, persona="pirate") != ""


# --- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions/", "/completions", "/../chat/completions"])
async def test_an_unknown_path_is_a_json_404(path: str) -> None:
    async with open_client(Simulator()) as client:
        response = await client.post(path, json=chat(), headers=AUTH)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_the_endpoint_get_405_with_allow(method: str) -> None:
    async with open_client(Simulator()) as client:
        response = await client.request(method, URL, headers=AUTH)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", URL, AUTH, 200),
        ("POST", URL, {}, 401),
        ("GET", URL, AUTH, 405),
        ("POST", "/models", AUTH, 404),
    ],
)
async def test_every_response_has_a_request_id_and_json(
    method: str, path: str, headers: dict[str, str], status: int
) -> None:
    async with open_client(Simulator()) as client:
        first = await client.request(method, path, json=chat(), headers=headers)
        second = await client.request(method, path, json=chat(), headers=headers)

    assert first.status_code == status
    assert first.headers["content-type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{24}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# --- the reply ------------------------------------------------------------------------------


async def test_a_reply_has_the_reference_shape() -> None:
    response = await post(Simulator(), chat(model="gemini-2.5-flash-lite"))
    completion = response.json()

    assert set(completion) == {"id", "object", "created", "model", "choices", "usage"}
    assert re.fullmatch(r"chatcmpl-[0-9a-f]+", completion["id"])
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["created"], int)
    assert completion["model"] == "gemini-2.5-flash-lite"
    [choice] = completion["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "stop"
    assert set(completion["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


async def test_usage_counts_words_and_a_framing_of_4_tokens_per_message() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    completion = (await post(Simulator(), chat(messages=messages))).json()
    usage = completion["usage"]
    content = completion["choices"][0]["message"]["content"]

    assert usage["prompt_tokens"] == (3 + 4) + (5 + 4)
    assert usage["completion_tokens"] == len(content.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_a_reply_is_20_to_60_words_by_default() -> None:
    sim = Simulator()
    for number in range(25):
        content = await content_of(
            sim, messages=[{"role": "user", "content": f"Question {number}"}]
        )
        assert 20 <= len(content.split()) <= 60


async def test_max_tokens_cuts_the_reply_and_says_length() -> None:
    sim = Simulator()
    full = await content_of(sim)
    completion = (await post(sim, chat(max_tokens=5))).json()
    choice = completion["choices"][0]

    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"].split() == full.split()[:5]
    assert completion["usage"]["completion_tokens"] == 5


async def test_max_tokens_above_the_reply_length_changes_nothing() -> None:
    sim = Simulator()
    completion = (await post(sim, chat(max_tokens=1000))).json()

    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["choices"][0]["message"]["content"] == await content_of(sim)


# --- determinism ----------------------------------------------------------------------------


async def test_the_same_request_gets_the_same_reply() -> None:
    assert await content_of(Simulator(seed=3)) == await content_of(Simulator(seed=3))


async def test_at_temperature_0_the_seed_does_not_matter() -> None:
    first = await content_of(Simulator(seed=1), temperature=0)
    assert first == await content_of(Simulator(seed=2), temperature=0)


async def test_above_temperature_0_the_seed_changes_the_reply() -> None:
    first = await content_of(Simulator(seed=1), temperature=1)
    assert first != await content_of(Simulator(seed=2), temperature=1)


async def test_the_default_temperature_is_1() -> None:
    sim = Simulator()
    assert await content_of(sim) == await content_of(sim, temperature=1)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "another-model"},
        {"temperature": 0.5},
        {"messages": [{"role": "user", "content": "Why is grass green?"}]},
    ],
)
async def test_a_different_request_gets_a_different_reply(change: dict[str, Any]) -> None:
    sim = Simulator()
    assert await content_of(sim) != await content_of(sim, **change)


# --- personas -------------------------------------------------------------------------------

PERSONAS = ["technical_expert", "creative_writer", "educator", "safety_first"]


@pytest.mark.parametrize("persona", PERSONAS)
async def test_each_persona_changes_the_reply(persona: str) -> None:
    sim = Simulator()
    assert await content_of(sim, persona=persona) != await content_of(sim, persona="default")


async def test_the_educator_opens_with_a_teaching_phrase() -> None:
    content = await content_of(Simulator(), persona="educator")
    assert content.startswith(("Let's break this down", "Here is a simple way"))


async def test_safety_first_adds_a_caution() -> None:
    content = await content_of(Simulator(), persona="safety_first")
    assert "caution" in content.lower() or "safety first" in content.lower()


async def test_the_technical_expert_speaks_technically() -> None:
    words = set((await content_of(Simulator(), persona="technical_expert")).lower().split())
    technical = {"latency", "buffer", "protocol", "cache", "thread", "scheduler", "algorithm"}
    technical |= {"interface", "payload", "socket", "kernel", "throughput", "parser", "index"}
    technical |= {"checksum", "handshake", "pipeline", "allocator", "invariant", "wavelength"}
    assert words & {f"{word}{end}" for word in technical for end in ("", ".")}


# --- streams --------------------------------------------------------------------------------


async def test_a_stream_is_server_sent_events_with_a_request_id() -> None:
    response, data = await stream(Simulator())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["x-request-id"])
    assert data[-1] == "[DONE]"


async def test_the_first_chunk_carries_the_assistant_role() -> None:
    _, data = await stream(Simulator(), model="m-1")
    first = chunks(data)[0]

    assert re.fullmatch(r"chatcmpl-[0-9a-f]+", first["id"])
    assert first["object"] == "chat.completion.chunk"
    assert isinstance(first["created"], int)
    assert first["model"] == "m-1"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]


async def test_every_chunk_shares_the_id_created_and_model() -> None:
    _, data = await stream(Simulator())
    parsed = chunks(data)
    assert len({(c["id"], c["created"], c["model"], c["object"]) for c in parsed}) == 1


async def test_the_deltas_are_words_that_add_up_to_the_non_streamed_reply() -> None:
    sim = Simulator()
    _, data = await stream(sim)
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks(data)[1:-1]]

    assert "".join(deltas) == await content_of(sim)
    assert not deltas[0].startswith(" ")
    assert all(delta.startswith(" ") and " " not in delta[1:] for delta in deltas[1:])


async def test_the_last_chunk_has_an_empty_delta_and_the_finish_reason() -> None:
    _, data = await stream(Simulator())
    assert chunks(data)[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]


async def test_a_capped_stream_finishes_with_length() -> None:
    _, data = await stream(Simulator(), max_tokens=3)
    parsed = chunks(data)

    assert len(parsed) == 1 + 3 + 1
    assert parsed[-1]["choices"][0]["finish_reason"] == "length"


async def test_include_usage_adds_a_usage_chunk_before_done() -> None:
    sim = Simulator()
    _, data = await stream(sim, stream_options={"include_usage": True})
    parsed = chunks(data)
    expected = (await post(sim)).json()["usage"]

    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"] == expected
    assert all(c["usage"] is None for c in parsed[:-1])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.text(max_size=60),
    persona=st.sampled_from(["default", *PERSONAS]),
    temperature=st.floats(min_value=0, max_value=2),
    max_tokens=st.none() | st.integers(min_value=1, max_value=80),
)
async def test_any_stream_adds_up_to_the_same_reply_and_usage(
    content: str, persona: str, temperature: float, max_tokens: int | None
) -> None:
    sim = Simulator()
    fields = {
        "messages": [{"role": "user", "content": content}],
        "persona": persona,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    completion = (await post(sim, chat(**fields))).json()
    _, data = await stream(sim, stream_options={"include_usage": True}, **fields)
    parsed = chunks(data)
    deltas = [c["choices"][0]["delta"]["content"] for c in parsed[1:-2]]
    reply = completion["choices"][0]

    assert "".join(deltas) == reply["message"]["content"]
    assert parsed[-2]["choices"][0]["finish_reason"] == reply["finish_reason"]
    assert parsed[-1]["usage"] == completion["usage"]
    assert completion["usage"]["completion_tokens"] == len(deltas)
    if max_tokens is not None:
        assert len(deltas) <= max_tokens


async def test_without_include_usage_no_chunk_has_usage() -> None:
    _, data = await stream(Simulator())
    assert all("usage" not in c for c in chunks(data))


# --- recording ------------------------------------------------------------------------------


async def test_requests_are_recorded_without_the_key() -> None:
    sim = Simulator()
    response = await post(sim, chat(user="user-123"))
    record = sim.last_request

    assert sim.requests == (record,)
    assert (record.method, record.path, record.status) == ("POST", "/v1/chat/completions", 200)
    assert record.body == chat(user="user-123")
    assert record.request_id == response.headers["x-request-id"]
    assert record.headers["authorization"] == "[redacted]"
    assert record.completed
    assert not record.disconnected
    assert record.fault is None
    assert KEY not in repr(record)


async def test_a_stream_records_how_many_events_it_sent() -> None:
    sim = Simulator()
    _, data = await stream(sim)

    assert sim.last_request.stream
    assert sim.last_request.chunks_sent == len(data)
    assert sim.last_request.completed


async def test_a_body_that_is_not_json_is_recorded_raw() -> None:
    sim = Simulator()
    async with open_client(sim) as client:
        await client.post(URL, content=b"hello", headers=AUTH)

    assert sim.last_request.body is None
    assert sim.last_request.content == b"hello"
    assert sim.last_request.status == 400


async def test_rejected_requests_are_recorded_too() -> None:
    sim = Simulator()
    await post(sim, headers={})
    async with open_client(sim) as client:
        await client.get("/nowhere")

    assert [(r.method, r.path, r.status) for r in sim.requests] == [
        ("POST", "/v1/chat/completions", 401),
        ("GET", "/v1/nowhere", 404),
    ]


async def test_reset_forgets_the_requests() -> None:
    sim = Simulator()
    await post(sim)
    sim.reset()

    assert sim.requests == ()
    with pytest.raises(LookupError):
        _ = sim.last_request


async def test_wait_idle_returns_at_once_when_nothing_is_running() -> None:
    await Simulator().wait_idle()


# --- ASGI -----------------------------------------------------------------------------------


async def test_the_lifespan_protocol_is_acknowledged() -> None:
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Any] = []

    async def receive() -> Any:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    await Simulator()({"type": "lifespan"}, receive, send)

    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_other_protocols_are_refused() -> None:
    async def receive() -> Any:
        raise AssertionError("not reached")

    async def send(message: Any) -> None:
        raise AssertionError("not reached")

    with pytest.raises(RuntimeError, match="websocket"):
        await Simulator()({"type": "websocket"}, receive, send)


# --- public surface -------------------------------------------------------------------------


def test_the_public_names_are_exactly_all() -> None:
    module = ctgt_async.testing
    # pytest's assertion rewriting adds non-identifier names ("@py_builtins") to modules
    # of a package that registers a pytest plugin, as this one does.
    public = {name for name in vars(module) if name.isidentifier() and not name.startswith("_")} - {
        "annotations"
    }

    assert module.__all__ == sorted(module.__all__)
    assert public == set(module.__all__)
    for name in module.__all__:
        member = getattr(module, name)
        if isinstance(member, type):
            assert member.__module__ == "ctgt_async.testing", name
