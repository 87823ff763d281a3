"""Stream an answer from the built-in simulator: no network, no API key.

The simulator runs in this process and answers like the CTGT API;
`simulator.client()` is an AsyncCTGT connected to it, with no socket in
between. Use `AsyncCTGT()` instead to talk to the real service.
"""

import anyio

from ctgt_async.testing import Simulator


async def main() -> None:
    simulator = Simulator()
    async with simulator.client() as client:
        stream = await client.chat.completions.create(
            model="gemini-2.5-flash-lite",
            messages=[{"role": "user", "content": "Why is the sky blue?"}],
            stream=True,
        )
        async with stream:
            async for text in stream.text_stream:
                print(text, end="", flush=True)
        print()


anyio.run(main)
