"""Ask one question and print the whole answer.

AsyncCTGT() reads the key from CTGT_API_KEY and, when it is set, the API
root from CTGT_BASE_URL. To run this offline, start the simulator with
`ctgt serve` in another terminal and point the client at it:

    export CTGT_API_KEY=sk-test CTGT_BASE_URL=http://127.0.0.1:8000/v1
    python examples/chat.py
"""

import anyio

from ctgt_async import AsyncCTGT


async def main() -> None:
    async with AsyncCTGT() as client:
        completion = await client.chat.completions.create(
            model="gemini-2.5-flash-lite",
            messages=[{"role": "user", "content": "Why is the sky blue?"}],
            persona="educator",
            temperature=0.3,
        )
    print(completion.choices[0].message.content)
    if completion.usage is not None:
        print(f"({completion.usage.total_tokens} tokens)")


anyio.run(main)
