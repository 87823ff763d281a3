"""The client: configuration, what goes on the wire, what comes back, and closing."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx

import ctgt_async
from ctgt_async import (
    APIResponseValidationError,
    AsyncCTGT,
    ChatCompletion,
    ChatMessage,
    InvalidArgumentError,
    MessageParam,
    MissingAPIKeyError,
)
from ctgt_async._pool import PooledTransport

KEY = "sk-test-do-not-leak-0123456789"
BASE = "https://api.test/v1"
URL = f"{BASE}/chat/completions"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "Why is the sky blue?"}]
COMPLETION = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1677652288,
    "model": "gemini-2.5-flash-lite",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Rayleigh scattering."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
}

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[AsyncCTGT]:
    async with AsyncCTGT(api_key=KEY, base_url=BASE, initial_retry_delay=0) as client:
        yield client


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def sent_json(api: respx.MockRouter, index: int = -1) -> object:
    return json.loads(api.calls[index].request.content)


# -- configuration ---------------------------------------------------------------------------


def test_the_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTGT_API_KEY", KEY)
    monkeypatch.setenv("CTGT_BASE_URL", "http://localhost:8000/v1/")
    client = AsyncCTGT()
    assert client.base_url == "http://localhost:8000/v1"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTGT_BASE_URL", "http://localhost:8000/v1")
    assert AsyncCTGT(api_key=KEY, base_url=BASE).base_url == BASE


def test_the_default_base_url_is_the_documented_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTGT_BASE_URL", raising=False)
    assert AsyncCTGT(api_key=KEY).base_url == "https://api.ctgt.ai/v1"


def test_a_missing_key_fails_at_construction_saying_how_to_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CTGT_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="CTGT_API_KEY") as caught:
        AsyncCTGT()
    assert "api_key=" in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"base_url": "api.ctgt.ai/v1"}, "base_url"),
        ({"api_key": " sk-x "}, "api_key"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"total_timeout": -1}, "total_timeout"),
        ({"initial_retry_delay": -0.1}, "initial_retry_delay"),
        ({"max_retry_delay": "8"}, "max_retry_delay"),
        ({"stream_idle_timeout": -1}, "stream_idle_timeout"),
        ({"max_stream_event_size": 0}, "max_stream_event_size"),
        ({"default_headers": {"X-N": 1}}, "default_headers"),
        ({"http_client": object()}, "http_client"),
    ],
)
def test_bad_configuration_is_refused_naming_the_option(
    arguments: dict[str, object], field: str
) -> None:
    arguments.setdefault("api_key", KEY)
    with pytest.raises(InvalidArgumentError) as caught:
        AsyncCTGT(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_key_never_appears_in_repr() -> None:
    client = AsyncCTGT(api_key=KEY)
    assert KEY not in repr(client)
    assert KEY not in repr(client._options)
    assert "api.ctgt.ai" in repr(client)


def test_default_timeout_connects_faster_than_it_reads() -> None:
    timeout = AsyncCTGT(api_key=KEY).timeout
    assert isinstance(timeout, httpx.Timeout)
    assert timeout.connect is not None
    assert timeout.read is not None
    assert timeout.connect < timeout.read


def test_the_pool_is_sized_for_hundreds_of_concurrent_requests() -> None:
    transport = AsyncCTGT(api_key=KEY).http_client._transport
    assert isinstance(transport, PooledTransport)
    assert transport._limits.max_connections is not None
    assert transport._limits.max_connections >= 500


def test_a_proxy_in_the_environment_keeps_httpx_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    transport = AsyncCTGT(api_key=KEY).http_client._transport
    assert not isinstance(transport, PooledTransport)


# -- the request on the wire -----------------------------------------------------------------


async def test_the_issue_example_works_end_to_end(client: AsyncCTGT, api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    completion = await client.chat.completions.create(
        model="gemini-2.5-flash-lite",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        persona="educator",
        temperature=0.3,
        user="user-123",
    )
    assert completion.choices[0].message.content == "Rayleigh scattering."
    assert completion.usage is not None
    assert completion.usage.total_tokens == 21
    assert sent_json(api) == {
        "model": "gemini-2.5-flash-lite",
        "messages": MESSAGES,
        "persona": "educator",
        "temperature": 0.3,
        "user": "user-123",
    }


async def test_headers_on_the_wire(client: AsyncCTGT, api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    await client.chat.completions.create(model="m", messages=MESSAGES)
    headers = api.calls.last.request.headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["user-agent"] == f"ctgt-async/{ctgt_async.__version__}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["idempotency-key"].startswith("ctgt-")


async def test_parameters_not_given_are_not_sent(client: AsyncCTGT, api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    await client.chat.completions.create(model="m", messages=MESSAGES, persona=None)
    assert sent_json(api) == {"model": "m", "messages": MESSAGES}


async def test_each_call_gets_its_own_idempotency_key(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    await client.chat.completions.create(model="m", messages=MESSAGES)
    await client.chat.completions.create(model="m", messages=MESSAGES)
    first, second = (call.request.headers["idempotency-key"] for call in api.calls)
    assert first != second


async def test_extra_headers_and_body_and_default_headers(api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    async with AsyncCTGT(
        api_key=KEY, base_url=BASE, default_headers={"X-Team": "search", "X-Drop": "1"}
    ) as client:
        await client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_headers={"Idempotency-Key": "mine", "x-drop": None, "X-Trace": "t1"},
            extra_body={"max_tokens": 5},
        )
    headers = api.calls.last.request.headers
    assert headers["idempotency-key"] == "mine"
    assert headers["x-team"] == "search"
    assert headers["x-trace"] == "t1"
    assert "x-drop" not in headers
    assert sent_json(api) == {"model": "m", "messages": MESSAGES, "max_tokens": 5}


async def test_a_reply_message_can_be_sent_back_as_history(
    client: AsyncCTGT, api: respx.MockRouter
) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    history: list[MessageParam | ChatMessage] = [
        *MESSAGES,
        completion.choices[0].message,
        {"role": "user", "content": "Why?"},
    ]
    await client.chat.completions.create(model="m", messages=history)
    sent = sent_json(api)
    assert isinstance(sent, dict)
    assert sent["messages"][1] == {"role": "assistant", "content": "Rayleigh scattering."}


async def test_invalid_arguments_send_no_request(client: AsyncCTGT, api: respx.MockRouter) -> None:
    route = api.post(URL).respond(200, json=COMPLETION)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        await client.chat.completions.create(model="m", messages=MESSAGES, temperature=3)
    with pytest.raises(InvalidArgumentError, match="messages"):
        await client.chat.completions.create(model="m", messages=[])
    assert not route.called


async def test_a_per_call_timeout_reaches_httpx(client: AsyncCTGT, api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    await client.chat.completions.create(model="m", messages=MESSAGES, timeout=3.0)
    assert api.calls.last.request.extensions["timeout"]["read"] == 3.0


# -- the response ----------------------------------------------------------------------------


async def test_unknown_response_fields_are_kept(client: AsyncCTGT, api: respx.MockRouter) -> None:
    body = {**COMPLETION, "system_fingerprint": "fp_1"}
    body["choices"] = [{**COMPLETION["choices"][0], "logprobs": None}]  # type: ignore[index]
    api.post(URL).respond(200, json=body)
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.model_extra == {"system_fingerprint": "fp_1"}
    assert completion.choices[0].model_extra == {"logprobs": None}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"id": "x"}', "first at created: Field required"),
    ],
)
async def test_a_response_that_is_not_a_completion_is_a_typed_error(
    client: AsyncCTGT, api: respx.MockRouter, content: bytes, words: str
) -> None:
    api.post(URL).respond(200, content=content)
    with pytest.raises(APIResponseValidationError, match=words) as caught:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.response.status_code == 200
    assert caught.value.body == content.decode()


async def test_completion_model_round_trips() -> None:
    completion = ChatCompletion.model_validate(COMPLETION)
    assert completion.choices[0].message == ChatMessage(
        role="assistant", content="Rayleigh scattering."
    )


# -- lifecycle -------------------------------------------------------------------------------


async def test_close_is_idempotent_and_closes_the_pool() -> None:
    client = AsyncCTGT(api_key=KEY)
    await client.close()
    await client.close()
    assert client.is_closed
    assert client.http_client.is_closed


async def test_a_closed_client_refuses_to_send() -> None:
    client = AsyncCTGT(api_key=KEY)
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_a_client_passed_in_is_not_closed_by_us(api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    async with httpx.AsyncClient() as http_client:
        async with AsyncCTGT(api_key=KEY, base_url=BASE, http_client=http_client) as client:
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert client.is_closed
        assert not http_client.is_closed


async def test_with_options_copies_settings_and_shares_the_pool(api: respx.MockRouter) -> None:
    api.post(URL).respond(200, json=COMPLETION)
    async with AsyncCTGT(api_key=KEY, base_url=BASE) as client:
        copy = client.with_options(max_retries=5, timeout=10, total_timeout=30)
        assert copy.max_retries == 5
        assert copy.timeout == 10
        assert copy.total_timeout == 30
        assert client.max_retries == 2
        assert copy.http_client is client.http_client
        await copy.chat.completions.create(model="m", messages=MESSAGES)
        await copy.close()
        assert not client.http_client.is_closed
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert client.http_client.is_closed


def test_with_options_validates_what_it_changes() -> None:
    client = AsyncCTGT(api_key=KEY)
    with pytest.raises(InvalidArgumentError, match="max_retries"):
        client.with_options(max_retries=-2)
    with pytest.raises(InvalidArgumentError, match="base_url"):
        client.with_options(base_url="ftp://x")
    copy = client.with_options(api_key="sk-other", base_url=BASE, default_headers={"A": "b"})
    assert copy.base_url == BASE
    assert copy._options.api_key == "sk-other"
    assert copy._options.default_headers == {"A": "b"}


async def test_the_key_never_appears_in_logs_or_errors(
    caplog: pytest.LogCaptureFixture, api: respx.MockRouter
) -> None:
    caplog.set_level(logging.DEBUG)
    api.post(URL).respond(
        401, json={"error": {"message": f"Key {KEY} is invalid", "code": "invalid_api_key"}}
    )
    async with AsyncCTGT(api_key=KEY, base_url=BASE) as client:
        with pytest.raises(ctgt_async.AuthenticationError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caplog.records
    assert KEY not in caplog.text
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert KEY not in repr(caught.value.request)
