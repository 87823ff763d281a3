"""Stop reading a stream early: with `break`, or with an anyio deadline.

Either way the stream's HTTP response is closed on the way out, and its
connection goes back to the pool at once. The deadline is shown on a stream
that the simulator stalls (the X-CTGT-Simulate header), so run this against
the simulator: `ctgt serve`, with CTGT_API_KEY=sk-test and
CTGT_BASE_URL=http://127.0.0.1:8000/v1.
"""

import anyio

from ctgt_async import AsyncCTGT, MessageParam

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "Tell me about the tides."},
]


async def main() -> None:
    async with AsyncCTGT() as client:
        # 1. From inside the loop: take ten pieces of text and leave.
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            stream=True,
        )
        async with stream:
            pieces = 0
            async for text in stream.text_stream:
                print(text, end="", flush=True)
                pieces += 1
                if pieces == 10:
                    break
        print(f"\n[left after {pieces} pieces; {stream!r}]")

        # 2. From outside, with a deadline. Whatever is awaited when it
        # expires (connecting, the status, the next event) is cancelled,
        # the stream closes itself, and the program goes on after the
        # block. This deadline is short because the simulator is asked to
        # go silent after eight events.
        with anyio.move_on_after(0.5) as deadline:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                stream=True,
                extra_headers={"X-CTGT-Simulate": "stall-after=8"},
            )
            async with stream:
                async for text in stream.text_stream:
                    print(text, end="", flush=True)
        if deadline.cancelled_caught:
            chunks = stream.chunks_received
            print(f"\n[deadline passed after {chunks} chunks; {stream!r}]")


anyio.run(main)
