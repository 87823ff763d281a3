"""CPU per chunk to parse one long stream, in process, for ctgt-async, openai and a floor.

A 20,000-chunk OpenAI-format stream is served by an in-process mock transport in 64 KiB
pieces, so only the client's own work is measured: reading pieces, finding events, parsing
JSON and building typed chunks. The floor is what any client must at least do: raw httpx
``aiter_bytes``, a split on blank lines and ``json.loads``.

    python bench/stream_parse.py                 # 7 interleaved repetitions, Markdown table
    python bench/stream_parse.py --repetitions 3
    python bench/stream_parse.py --driver ctgt   # one measurement, printed as JSON

``openai`` drives ``AsyncOpenAI`` and needs ``pip install openai`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio

DRIVERS = ("floor", "ctgt", "openai")
CHUNKS = 20_000
PIECE = 64 * 1024
URL = "http://bench.local/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Tell me a story."}]


def event_stream(chunks: int) -> bytes:
    """An OpenAI-style stream of ``chunks`` content deltas, a finish chunk and ``[DONE]``."""

    def event(delta: dict[str, Any], finish: str | None) -> bytes:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gemini-2.5-flash-lite",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    parts = [event({"role": "assistant", "content": ""}, None)]
    parts += [event({"content": f" word{i % 97}"}, None) for i in range(chunks - 2)]
    parts.append(event({}, "stop"))
    return b"".join(parts) + b"data: [DONE]\n\n"


def pieces(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), PIECE):
        yield body[start : start + PIECE]


def handler_for(module: Any, body: bytes) -> Callable[[Any], Any]:
    """A mock-transport handler for ``httpx`` or ``httpx2``: the same bytes for both."""

    class Body(module.AsyncByteStream):  # type: ignore[misc,name-defined]
        async def __aiter__(self) -> Any:
            for piece in pieces(body):
                yield piece

    def handle(request: Any) -> Any:
        return module.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())

    return handle


async def run_floor(body: bytes) -> int:
    import httpx

    count = 0
    transport = httpx.MockTransport(handler_for(httpx, body))
    async with (
        httpx.AsyncClient(transport=transport) as client,
        client.stream("POST", URL, json={"messages": MESSAGES}) as response,
    ):
        buffer = b""
        async for piece in response.aiter_bytes():
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                data = event[6:]
                if data != b"[DONE]":
                    json.loads(data)
                    count += 1
    return count


async def run_ctgt(body: bytes) -> int:
    import httpx

    from ctgt_async import AsyncCTGT

    count = 0
    transport = httpx.MockTransport(handler_for(httpx, body))
    async with AsyncCTGT(
        api_key="sk-bench", base_url="http://bench.local/v1", transport=transport
    ) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        async with stream:
            async for _ in stream:
                count += 1
    return count


async def run_openai(body: bytes) -> int:
    import httpx2
    from openai import AsyncOpenAI

    count = 0
    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler_for(httpx2, body)))
    async with AsyncOpenAI(
        api_key="sk-bench", base_url="http://bench.local/v1", http_client=http_client
    ) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        async with stream:
            async for _ in stream:
                count += 1
    return count


RUNNERS = {"floor": run_floor, "ctgt": run_ctgt, "openai": run_openai}


def one_measurement(driver: str, chunks: int) -> float:
    body = event_stream(chunks)
    runner = RUNNERS[driver]
    anyio.run(runner, event_stream(50))  # import and warm everything outside the timing
    start = time.process_time()
    count = anyio.run(runner, body)
    elapsed = time.process_time() - start
    assert count == chunks, (driver, count)
    return elapsed / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--driver", choices=DRIVERS)
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=CHUNKS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps({"value": one_measurement(args.driver, args.chunks)}))
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import measure, table

    drivers = args.drivers.split(",")
    results = measure(
        __file__, drivers, repetitions=args.repetitions, extra=["--chunks", str(args.chunks)]
    )
    print(f"stream_parse: {args.chunks} chunks, {PIECE // 1024} KiB pieces, CPU µs per chunk\n")
    print(table(results, unit="µs/chunk", baseline="floor"))


if __name__ == "__main__":
    main()
