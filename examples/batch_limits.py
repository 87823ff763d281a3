"""Client-side limits, the shared cooldown after a 429, results in input order, progress.

One request asks the simulator for a 429 with Retry-After: 1 (the X-CTGT-Simulate header
does that; the real service does not know it). From then on every request of the client
waits out that second before it is sent, instead of each one hitting the limit on its own.
Run this against the simulator: `ctgt serve`, then CTGT_API_KEY=sk-test and
CTGT_BASE_URL=http://127.0.0.1:8000/v1.
"""

import anyio

from ctgt_async import AsyncCTGT, BatchProgress, ChatCompletionParams, RateLimitError

MODEL = "gemini-2.5-flash-lite"
RATE_LIMITED = {"X-CTGT-Simulate": "status=429, retry-after=1"}


def show(progress: BatchProgress) -> None:
    print(f"  {progress.done}/{progress.total} done, concurrency {progress.concurrency}")


async def main() -> None:
    async with AsyncCTGT(
        max_concurrency=8,  # never more than 8 requests in flight, however many tasks ask
        requests_per_minute=600,  # and never more than 600 sent in any sixty seconds
        max_retries=0,
    ) as client:
        try:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Hello?"}],
                extra_headers=RATE_LIMITED,
            )
        except RateLimitError as error:
            cooldown = client.stats.cooldown_remaining
            print(f"429, retry after {error.retry_after:g} s: the client waits {cooldown:.1f} s")

        questions: list[ChatCompletionParams] = [
            {"model": MODEL, "messages": [{"role": "user", "content": f"What is {n} squared?"}]}
            for n in range(6)
        ]
        started = anyio.current_time()
        async with client.batch(questions, ordered=True, on_progress=show) as results:
            async for result in results:
                print(f"#{result.index}: {'ok' if result.ok else result.error}")
        waited = anyio.current_time() - started
        print(f"the batch waited out the cooldown first: {waited:.1f} s in all")


anyio.run(main)
