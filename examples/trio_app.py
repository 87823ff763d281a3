"""ctgt-async under trio: concurrent calls in a nursery, and a stream under
a deadline.

Needs CTGT_API_KEY, and CTGT_BASE_URL to use the simulator (see chat.py).
"""

import trio

from ctgt_async import AsyncCTGT, MessageParam

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "Describe the moon."},
]


async def ask(
    client: AsyncCTGT,
    persona: str,
    answers: dict[str, str],
) -> None:
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        persona=persona,
        temperature=0,
    )
    answers[persona] = completion.choices[0].message.content or ""


async def main() -> None:
    async with AsyncCTGT() as client:
        # Three calls at once, sharing one connection pool.
        answers: dict[str, str] = {}
        async with trio.open_nursery() as nursery:
            for persona in ("educator", "creative_writer", "technical_expert"):
                nursery.start_soon(ask, client, persona, answers)
        for persona, answer in sorted(answers.items()):
            print(f"{persona}: {answer[:50]}...")

        # A stream under a trio deadline: when it expires, the stream is
        # closed on the way out.
        with trio.move_on_after(30) as deadline:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                stream=True,
            )
            async with stream:
                async for text in stream.text_stream:
                    print(text, end="", flush=True)
        if deadline.cancelled_caught:
            print("\n[deadline passed]")
        else:
            print("\n[done]")


trio.run(main)
