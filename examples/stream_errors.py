"""What a stream that fails halfway raises, and the text it had received.

The X-CTGT-Simulate header asks the simulator for a fault (the real service
does not know it), so run this against the simulator: `ctgt serve`, with
CTGT_API_KEY=sk-test and CTGT_BASE_URL=http://127.0.0.1:8000/v1.
"""

import anyio

from ctgt_async import (
    APIError,
    APIStatusError,
    AsyncCTGT,
    MessageParam,
    StreamDecodeError,
    StreamInterruptedError,
)

MODEL = "gemini-2.5-flash-lite"
QUESTION: list[MessageParam] = [
    {"role": "user", "content": "How do rainbows form?"},
]


async def ask(client: AsyncCTGT, fault: str) -> str:
    """Stream an answer, which the simulator breaks as `fault` says."""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        stream=True,
        extra_headers={"X-CTGT-Simulate": fault},
    )
    async with stream:
        return "".join([text async for text in stream.text_stream])


async def main() -> None:
    async with AsyncCTGT() as client:
        for fault in ("drop-after=6", "error-after=4", "malformed-after=3"):
            error: APIError
            try:
                await ask(client, fault)
            except StreamInterruptedError as interrupted:
                # The connection dropped before the end.
                error, what = interrupted, "cut off"
            except APIStatusError as status_error:
                # The server sent an error event after its 200 status.
                error, what = status_error, f"error event {status_error.code}"
            except StreamDecodeError as decode_error:
                # An event that is not a valid chunk; `body` quotes it.
                error, what = decode_error, "an invalid event"
            else:
                raise AssertionError("the stream was meant to break")
            kept = error.partial_text.get(0, "")
            print(f"{fault}: {what} after {error.chunks_received} chunks")
            print(f"    kept {kept!r}")


anyio.run(main)
