"""The stream helpers: `text_stream` for the text alone, and
`get_final_completion()` for the whole `ChatCompletion` at the end.

Needs CTGT_API_KEY, and CTGT_BASE_URL to use the simulator (see chat.py).
"""

import anyio

from ctgt_async import AsyncCTGT, MessageParam

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "What makes a sunset red?"},
]


async def main() -> None:
    async with AsyncCTGT() as client:
        # The text alone: the non-empty content of the first choice.
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            stream=True,
        )
        async with stream:
            async for text in stream.text_stream:
                print(text, end="", flush=True)
        print()

        # The text as it arrives, then the assembled completion. The
        # `stream_options` field asks for a last chunk with token counts;
        # the SDK does not model it, so it goes through `extra_body`.
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            stream=True,
            extra_body={"stream_options": {"include_usage": True}},
        )
        async with stream:
            async for text in stream.text_stream:
                print(text, end="", flush=True)
            completion = await stream.get_final_completion()
        print()

    choice = completion.choices[0]
    length = len(choice.message.content or "")
    print(f"finish_reason={choice.finish_reason}, {length} characters")
    if completion.usage is not None:
        print(f"usage: {completion.usage.total_tokens} tokens")


anyio.run(main)
