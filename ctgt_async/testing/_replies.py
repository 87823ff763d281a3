"""Send a generated reply: as one completion, or as a stream that a fault may break."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from ._faults import ConnectionDropped
from ._stream import StreamPlayer, build_events
from ._text import prompt_tokens

if TYPE_CHECKING:
    from ._asgi import Responder
    from ._faults import StreamFault
    from ._text import Reply
    from ._validation import ChatRequest

__all__ = ["Timing", "send_completion", "send_stream"]


@dataclass(frozen=True)
class Timing:
    """How slowly the simulated model writes, in seconds."""

    time_to_first_token: float
    token_delay: float

    def generation_time(self, words: int) -> float:
        """How long a whole reply takes: the first token, then one delay per further word."""
        return self.time_to_first_token + self.token_delay * max(words - 1, 0)


def _usage(request: ChatRequest, reply: Reply) -> dict[str, int]:
    prompt = prompt_tokens(request.messages)
    completion = len(reply.words)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


async def send_completion(
    out: Responder, request: ChatRequest, reply: Reply, timing: Timing
) -> None:
    """Answer with a whole completion, after the time generating it would take.

    The wait listens for the client leaving, so that a client that gives up on a slow reply
    is recorded as disconnected, as it would be on a real server.
    """
    delay = timing.generation_time(len(reply.words))
    if delay > 0:
        await out.race_disconnect(lambda: anyio.sleep(delay))
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.content},
        "finish_reason": reply.finish_reason,
    }
    completion = {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [choice],
        "usage": _usage(request, reply),
    }
    await out.json(200, completion)


async def send_stream(
    out: Responder,
    request: ChatRequest,
    reply: Reply,
    fault: StreamFault | None,
    timing: Timing,
) -> None:
    """Answer with server-sent events, broken by `fault` if there is one.

    A drop is signalled by raising `ConnectionDropped` after the partial body, which both
    uvicorn and `SimulatorTransport` turn into a connection closed mid-body.
    """
    out.record.fault = fault
    events = build_events(
        completion_id=_completion_id(),
        created=int(time.time()),
        model=request.model,
        reply=reply,
        usage=_usage(request, reply),
        include_usage=request.include_usage,
    )
    player = StreamPlayer(
        out,
        events,
        fault,
        time_to_first_token=timing.time_to_first_token,
        token_delay=timing.token_delay,
    )
    headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
    await out.start(200, headers)
    await out.race_disconnect(player.play)
    if player.drop_requested and not out.gone:
        raise ConnectionDropped(f"simulated drop after {out.record.chunks_sent} events")
