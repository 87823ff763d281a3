"""Test your own code against the simulator: its replies, scripted faults,
and what was sent.

Everything runs in this process, with no network and no key. The same setup
works in any test framework; with pytest, the plugin's fixtures do it.
"""

import anyio

from ctgt_async import AsyncCTGT, RateLimitError, StreamInterruptedError
from ctgt_async.testing import DropConnection, Simulator

MODEL = "gemini-2.5-flash-lite"
TEXT = "The tide rises and falls twice a day."


# The application code under test.


async def summarize(client: AsyncCTGT, text: str) -> str:
    """Summarize `text`, or say so when the service stays busy."""
    try:
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Summarize in one sentence."},
                {"role": "user", "content": text},
            ],
            temperature=0,
        )
    except RateLimitError:
        return "(busy, try again later)"
    return completion.choices[0].message.content or ""


async def live_summary(client: AsyncCTGT, text: str) -> tuple[str, bool]:
    """Stream a summary; return what arrived and whether it is complete."""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        stream=True,
    )
    try:
        async with stream:
            parts = [piece async for piece in stream.text_stream]
    except StreamInterruptedError as error:
        return error.partial_text.get(0, ""), False
    return "".join(parts), True


# The checks.


async def main() -> None:
    simulator = Simulator()
    # An AsyncCTGT connected to the simulator, in this process.
    async with simulator.client() as client:
        # The happy path, and the request as the server received it.
        summary = await summarize(client, TEXT)
        assert summary
        request = simulator.last_request
        assert request.body["temperature"] == 0
        # A key was sent; the record never shows it.
        assert request.headers["authorization"] == "[redacted]"
        print("summarize: sends temperature 0 and a key")

        # One 503 is retried; at temperature 0 the answer does not change.
        simulator.fail_next(status=503)
        assert await summarize(client, TEXT) == summary
        assert [r.status for r in simulator.requests[-2:]] == [503, 200]
        print("summarize: survives a 503")

        # A rate limit that outlasts the client's two retries.
        simulator.fail_next(3, status=429)
        assert await summarize(client, TEXT) == "(busy, try again later)"
        print("summarize: says so when rate limited")

        # A stream whose connection drops after five events.
        simulator.break_next_stream(DropConnection(after=5))
        text, complete = await live_summary(client, TEXT)
        assert not complete
        assert text
        assert simulator.last_request.fault == DropConnection(after=5)
        print(f"live_summary: keeps {text!r} when the connection drops")

    # Forget the requests and queued faults, to reuse it in another test.
    simulator.reset()


anyio.run(main)
