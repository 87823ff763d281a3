"""Answer many prompts at once with client.batch, and print each result as it completes.

The requests are made by a generator, so they could come from a file of any size: the batch
takes one only when it has room to send it. Each result carries the index of its request and
either the completion or the error, so one failure never stops the others.
"""

from collections.abc import Iterator

import anyio

from ctgt_async import AsyncCTGT, BatchRequest

MODEL = "gemini-2.5-flash-lite"
TOPICS = ["tides", "rainbows", "volcanoes", "auroras", "glaciers", "thunder", "deserts", "coral"]


def requests() -> Iterator[BatchRequest]:
    for topic in TOPICS:
        yield BatchRequest(
            id=f"explain-{topic}",
            params={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Explain {topic} in one sentence."}],
                "temperature": 0,
            },
        )


async def main() -> None:
    async with AsyncCTGT() as client, client.batch(requests(), concurrency=4) as results:
        async for result in results:
            if result.completion is not None:
                answer = result.completion.choices[0].message.content or ""
                print(f"{result.id}: {answer[:60]}...")
            else:
                print(f"{result.id}: failed: {result.error}")
        progress = results.progress
        print(f"{progress.succeeded} succeeded, {progress.failed} failed")


anyio.run(main)
