"""Print an answer as it is generated, chunk by chunk.

Needs CTGT_API_KEY, and CTGT_BASE_URL to use the simulator (see chat.py).
"""

import anyio

from ctgt_async import AsyncCTGT


async def main() -> None:
    async with AsyncCTGT() as client:
        stream = await client.chat.completions.create(
            model="gemini-2.5-flash-lite",
            messages=[{"role": "user", "content": "Why is the sky blue?"}],
            stream=True,
        )
        # However this block is left (end, break, exception, cancellation),
        # the response is closed and its connection goes back to the pool.
        async with stream:
            async for chunk in stream:
                # The usage chunk at the end of a stream has no choices.
                if chunk.choices:
                    text = chunk.choices[0].delta.content
                    print(text or "", end="", flush=True)
        print()


anyio.run(main)
