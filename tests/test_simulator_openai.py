"""The simulator speaks the OpenAI wire format: the official ``openai`` client works with it.

This is the acceptance check for "any OpenAI-compatible client can talk to the simulator":
the most widely used one, over a real socket, streaming and not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from ctgt_async.testing import Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, openai.AsyncOpenAI]]:
    simulator = Simulator()
    async with simulator.serve() as base_url:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        async with client:
            yield simulator, client


async def test_a_completion(served: tuple[Simulator, openai.AsyncOpenAI]) -> None:
    simulator, client = served
    completion = await client.chat.completions.create(
        model="gemini-2.5-flash-lite",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        temperature=0,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert simulator.last_request.headers["authorization"] == "[redacted]"


async def test_a_stream_matches_the_completion(
    served: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    _, client = served
    whole = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me about tides."}], temperature=0
    )
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Tell me about tides."}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None
    assert whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


async def test_errors_reach_openai_as_its_own_typed_errors(
    served: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    simulator, client = served
    simulator.fail_next(status=429)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    bad_key = openai.AsyncOpenAI(api_key="sk-wrong", base_url=str(client.base_url), max_retries=0)
    async with bad_key:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad_key.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.code == "invalid_api_key"
