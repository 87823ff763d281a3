"""Re-encoding a stream as server-sent events for a downstream client (FastAPI, Starlette...).

A web app that calls CTGT with ``stream=True`` usually forwards the tokens to a browser as
they arrive. Done by hand that tends to go wrong in three ways this module handles:

* Framing: SSE ``data:`` lines cannot hold a newline, so text with newlines must be split
  over several ``data:`` lines (the browser joins them back with ``\\n``).
* Errors: an upstream failure after the response has started cannot change the HTTP status
  any more. It becomes a final ``event: error`` whose payload has the OpenAI error shape and
  a message safe to show (the server's own message, or a fixed sentence for connection
  problems; never the API key, URLs or exception internals), instead of a silently cut body.
* Lifecycle: the generator closes the upstream stream in ``finally``. ASGI servers cancel
  the body iterator when the browser disconnects, so the upstream connection is closed at
  once rather than read to the end for nobody.

No web framework is imported: the output is plain ``bytes`` for any streaming response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from ._errors import APIConnectionError, APIError, APIStatusError, APITimeoutError

if TYPE_CHECKING:
    from ._models import ChatCompletionChunk
    from ._streaming import AsyncStream

__all__ = ["SSEFormat", "encode_event", "error_event", "restream"]

SSEFormat = Literal["openai", "text"]
"""``"openai"``: each chunk as OpenAI's ``chat.completion.chunk`` JSON, then ``[DONE]``, so
OpenAI-style browser clients work unchanged. ``"text"``: only the text of choice 0."""

DONE = b"data: [DONE]\n\n"


def encode_event(data: str, *, event: str | None = None) -> bytes:
    """One SSE event; ``data`` may hold newlines (each line becomes a ``data:`` line)."""
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def _safe_error(error: APIError) -> dict[str, str | None]:
    """The error as a browser may see it: the server's words, or a fixed description."""
    if isinstance(error, APIStatusError):
        # The server's own words (key already redacted), without our request details.
        message = error.server_message or "The upstream model reported an error."
        return {"message": message, "type": error.type or "api_error", "code": error.code}
    if isinstance(error, APITimeoutError):
        return {"message": "The upstream model timed out.", "type": "timeout", "code": None}
    if isinstance(error, APIConnectionError):
        message = "The connection to the upstream model was lost."
        return {"message": message, "type": "connection_error", "code": None}
    message = "The upstream model sent an invalid response."
    return {"message": message, "type": "invalid_response", "code": None}


def error_event(error: APIError) -> bytes:
    """The final ``event: error`` sent when the upstream stream fails mid-way."""
    return encode_event(json.dumps({"error": _safe_error(error)}), event="error")


async def restream(
    stream: AsyncStream[ChatCompletionChunk], format: SSEFormat = "openai"
) -> AsyncIterator[bytes]:
    """Yield ``stream`` as SSE bytes in ``format``; always closes ``stream`` when done."""
    try:
        try:
            if format == "openai":
                async for chunk in stream:
                    yield encode_event(chunk.model_dump_json(exclude_unset=True))
            else:
                async for text in stream.text_stream:
                    yield encode_event(text)
        except APIError as error:
            yield error_event(error)
            return
        yield DONE
    finally:
        await stream.close()
