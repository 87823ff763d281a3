"""Client options, an httpx client of your own, and per-call overrides.

Needs CTGT_API_KEY, and CTGT_BASE_URL to use the simulator (see chat.py).
"""

import anyio
import httpx

from ctgt_async import AsyncCTGT, MessageParam

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "Name a colour."},
]


async def show_body(request: httpx.Request) -> None:
    """An httpx event hook: print the JSON body of each request sent."""
    print(f"sent: {request.content.decode()}")


async def main() -> None:
    # Your own httpx client: for a proxy, certificates, event hooks or a
    # transport of your own. You own it: closing the AsyncCTGT leaves it
    # open, and you close it yourself (here, at the end of the block).
    hooks = {"request": [show_body]}
    async with httpx.AsyncClient(event_hooks=hooks) as http_client:
        client = AsyncCTGT(
            http_client=http_client,
            timeout=httpx.Timeout(60.0, connect=5.0),  # for each attempt
            max_retries=3,
            default_headers={"X-Request-Source": "docs-example"},
        )

        # Only what you pass is sent: no persona, temperature, stream or
        # user in this request's body.
        await client.chat.completions.create(model=MODEL, messages=QUESTION)

        # Per-call settings replace the client's for this call only.
        # `extra_body` sends fields this SDK does not model, as given.
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=0,
            timeout=20.0,
            total_timeout=45.0,
            extra_headers={"X-Request-Source": "nightly-job"},
            extra_body={"max_tokens": 5},
        )
        print(f"finish_reason={completion.choices[0].finish_reason}")

        # A copy with other settings, sharing the connection pool.
        patient = client.with_options(timeout=120.0, max_retries=5)
        print(f"copy: {patient!r}")

        await client.close()
        print(f"our httpx client is still open: {not http_client.is_closed}")


anyio.run(main)
