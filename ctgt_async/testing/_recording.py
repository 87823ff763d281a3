"""What the simulator remembers about each request it received."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import Fault

__all__ = ["REDACTED", "RecordedRequest"]

REDACTED = "[redacted]"
"""Stands in for the `Authorization` header value so that a record never holds an API key."""


@dataclass
class RecordedRequest:
    """One HTTP request as the simulator saw it, and how far its response got.

    The record is appended when the request arrives and its response fields fill in as the
    response proceeds, so a test can look at a request whose stream is still open (or stalled).
    The `authorization` header is kept, but its value is replaced by `"[redacted]"`: tests
    can check that a key was sent, and a failing assertion can never print it.
    """

    method: str
    """The HTTP method, e.g. `"POST"`."""
    path: str
    """The request path, e.g. `"/v1/chat/completions"`."""
    headers: dict[str, str]
    """Request headers with lower-case names; repeated headers are joined with `", "`."""
    content: bytes
    """The raw request body."""
    body: Any
    """The parsed JSON body, or `None` when the body was not valid JSON."""
    request_id: str
    """The `x-request-id` the simulator answered with (`req_<hex>`)."""
    status: int | None = None
    """The status code sent, or `None` while no response has started."""
    fault: Fault | None = None
    """The fault injected into this request, if any (scripted, header-selected or random)."""
    chunks_sent: int = 0
    """How many server-sent events of a stream went out, counting `data: [DONE]`."""
    completed: bool = False
    """True once the whole response was delivered."""
    disconnected: bool = False
    """True when the client went away before the response was complete."""
    client: tuple[str, int] | None = None
    """The peer's (host, port): on a socket, requests on one kept-alive connection share it."""

    @property
    def stream(self) -> bool:
        """Whether the request asked for a stream (`"stream": true` in its body)."""
        return isinstance(self.body, dict) and self.body.get("stream") is True
