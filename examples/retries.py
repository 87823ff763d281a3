"""Tuning retries: how many, the waits between them, a deadline for the
whole call, and turning them off.

Each retry is logged at INFO level on the "ctgt_async" logger. The failures
are asked of the simulator with the X-CTGT-Simulate header, so run this
against the simulator: `ctgt serve`, with CTGT_API_KEY=sk-test and
CTGT_BASE_URL=http://127.0.0.1:8000/v1.
"""

import logging

import anyio

from ctgt_async import AsyncCTGT, InternalServerError, MessageParam

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "Why is the sky blue?"},
]
# A 503 on every attempt, with "Retry-After: 0": retry at once.
ALWAYS_503 = {"X-CTGT-Simulate": "status=503, retry-after=0"}

# Print the SDK's retry log lines on stderr, and nothing from elsewhere.
logging.basicConfig(format="%(name)s: %(message)s")
logging.getLogger("ctgt_async").setLevel(logging.INFO)


async def main() -> None:
    async with AsyncCTGT(
        max_retries=4,  # five attempts in all
        initial_retry_delay=0.25,  # then 0.5, 1, 2... less some jitter
        max_retry_delay=4.0,  # the longest wait between two attempts
        total_timeout=60.0,  # one call, all attempts and waits included
    ) as client:
        try:
            await client.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                extra_headers=ALWAYS_503,
            )
        except InternalServerError as error:
            print(f"max_retries=4: gave up after {error.attempts} attempts")

        # No retries for one call, from a copy that shares the pool.
        no_retries = client.with_options(max_retries=0)
        try:
            await no_retries.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                extra_headers=ALWAYS_503,
            )
        except InternalServerError as error:
            print(f"max_retries=0: gave up after {error.attempts} attempt")

        # Each call sends an Idempotency-Key, the same on all its retries,
        # so that the server can recognise a repeat. Pass your own to tie
        # it to an operation of yours.
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            extra_headers={"Idempotency-Key": "summary-of-order-1234"},
        )
        print(f"with our own idempotency key: {completion.id}")


anyio.run(main)
