"""The errors a call can raise, caught by kind, and what each one carries.

Three of these cases ask the simulator for a fault with the X-CTGT-Simulate
header (the real service does not know it), so run this against the
simulator: `ctgt serve`, with CTGT_API_KEY=sk-test and
CTGT_BASE_URL=http://127.0.0.1:8000/v1.
"""

import anyio

from ctgt_async import (
    APIStatusError,
    AsyncCTGT,
    AuthenticationError,
    InternalServerError,
    InvalidArgumentError,
    MessageParam,
    RateLimitError,
)

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "Why is the sky blue?"},
]
# Faults to ask of the simulator.
SERVER_ERROR = {"X-CTGT-Simulate": "status=503, retry-after=0"}
LONG_RATE_LIMIT = {"X-CTGT-Simulate": "status=429, retry-after=90"}
BAD_REQUEST = {"X-CTGT-Simulate": "status=400"}


async def main() -> None:
    async with AsyncCTGT() as client:
        create = client.chat.completions.create

        # A bad argument is refused before anything is sent.
        # InvalidArgumentError is also a ValueError.
        try:
            await create(model=MODEL, messages=QUESTION, temperature=3)
        except InvalidArgumentError as error:
            print(f"InvalidArgumentError: {error.field}: {error.problem}")

        # The server says no: a wrong key is a 401, which is not retried.
        wrong_key = client.with_options(api_key="sk-wrong")
        try:
            await wrong_key.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
            )
        except AuthenticationError as error:
            print(f"AuthenticationError: {error.status_code}, {error.code}")

        # A 503 is retried (twice by default); then the last error raises.
        try:
            await create(
                model=MODEL,
                messages=QUESTION,
                extra_headers=SERVER_ERROR,
            )
        except InternalServerError as error:
            print(f"InternalServerError: {error.attempts} attempts")

        # A 429 that asks for more than a minute's wait is raised at once,
        # so that the caller decides what to do.
        try:
            await create(
                model=MODEL,
                messages=QUESTION,
                extra_headers=LONG_RATE_LIMIT,
            )
        except RateLimitError as error:
            print(f"RateLimitError: retry after {error.retry_after:g} s")

        # Every status error carries the error body and the request id.
        try:
            await create(
                model=MODEL,
                messages=QUESTION,
                extra_headers=BAD_REQUEST,
            )
        except APIStatusError as error:
            print(f"{type(error).__name__}: {error.type}, {error.request_id}")
            print(f"    {error}")


anyio.run(main)
