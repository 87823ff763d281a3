"""The simulator's OpenAI-style server-sent events, and how a stream fault breaks them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._asgi import dump_json
from ._faults import DropConnection, ErrorEvent, MalformedChunk, Stall, StreamFault, error_payload

if TYPE_CHECKING:
    from ._asgi import Responder
    from ._text import Reply

__all__ = ["StreamPlayer", "build_events", "sse"]

DONE = b"data: [DONE]\n\n"


def sse(payload: object) -> bytes:
    """One server-sent event: a single `data:` line holding compact JSON, then a blank line."""
    return b"data: " + dump_json(payload) + b"\n\n"


def build_events(
    *,
    completion_id: str,
    created: int,
    model: str,
    reply: Reply,
    usage: dict[str, int],
    include_usage: bool,
) -> list[bytes]:
    """Every event of a healthy stream, in order, ending with `data: [DONE]`.

    The shape follows OpenAI's chunks: a first chunk with the assistant role and empty content,
    one chunk per word, a chunk with an empty delta and the finish reason, then (when asked
    with `stream_options.include_usage`) a chunk with no choices and the usage; in that mode
    every other chunk carries `"usage": null`, as OpenAI's do.
    """
    head: dict[str, object] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    tail: dict[str, object] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return sse({**head, "choices": [choice], **tail})

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": delta}, None) for delta in reply.deltas]
    events.append(chunk({}, reply.finish_reason))
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": usage}))
    events.append(DONE)
    return events


class StreamPlayer:
    """Send a stream's events with their delays, breaking it as `fault` says.

    `time_to_first_token` is waited before the first content delta (the role chunk goes out at
    once, as real servers do) and `token_delay` before each later event. `anyio.sleep` is
    used even for zero delays: it is a checkpoint, which keeps concurrent streams fair and
    lets the disconnect listener run under servers whose `send()` never blocks.
    """

    def __init__(
        self,
        responder: Responder,
        events: list[bytes],
        fault: StreamFault | None,
        *,
        time_to_first_token: float,
        token_delay: float,
    ) -> None:
        self._responder = responder
        self._events = events
        self._fault = fault
        self._first_token = time_to_first_token
        self._token_delay = token_delay
        self.drop_requested = False
        """Set when the stream stopped for a `DropConnection`; the caller then drops it."""

    async def play(self) -> None:
        responder, events, fault = self._responder, self._events, self._fault
        fault_at = min(fault.after, len(events)) if fault is not None else -1
        for index in range(len(events) + 1):
            if index == fault_at and fault is not None:
                if isinstance(fault, DropConnection):
                    self.drop_requested = True
                    return
                if isinstance(fault, ErrorEvent):
                    payload = error_payload(fault.message, "server_error", fault.code)
                    await responder.chunk(sse(payload))
                    await responder.end()
                    return
                if isinstance(fault, MalformedChunk):
                    await responder.chunk(_malformed(events[0]))
                if isinstance(fault, Stall):
                    await _stall(fault.seconds)
            if index == len(events):
                break
            await anyio.sleep(
                0.0 if index == 0 else self._first_token if index == 1 else self._token_delay
            )
            await responder.chunk(events[index])
            if responder.gone:
                return
        await responder.end()


def _malformed(first_event: bytes) -> bytes:
    """A chunk cut off in the middle of its JSON, like a proxy that mangled the stream."""
    return first_event[: len(first_event) // 2].rstrip() + b"\n\n"


async def _stall(seconds: float | None) -> None:
    if seconds is None:
        await anyio.sleep_forever()
    else:
        await anyio.sleep(seconds)
