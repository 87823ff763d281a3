"""Defaults, each with the reason for its value, and the not-given sentinel.

Nothing here performs I/O; the client reads these once at construction.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

import httpx

API_KEY_ENV: Final = "CTGT_API_KEY"
BASE_URL_ENV: Final = "CTGT_BASE_URL"

DEFAULT_BASE_URL: Final = "https://api.ctgt.ai/v1"

# A completion is generated before its first byte is sent, so a long answer can keep a
# non-streaming response silent for minutes: reads get ten minutes. A server that does not
# accept a connection within five seconds is down or unreachable, and retrying sooner beats
# waiting longer, so connecting gets five.
DEFAULT_TIMEOUT: Final = httpx.Timeout(600.0, connect=5.0)

# Batch jobs run hundreds of requests at once against one host. httpx's default of 100
# connections would queue them in the pool; 1,000 leaves the queueing to the caller's own
# limits. Keeping 100 idle connections alive avoids a TCP and TLS handshake per request once
# a burst has warmed the pool up, without holding thousands of sockets open when idle.
DEFAULT_LIMITS: Final = httpx.Limits(
    max_connections=1000, max_keepalive_connections=100, keepalive_expiry=30.0
)

# Two retries turn most transient 429/5xx blips into successes while still failing within
# seconds when the service is really down.
DEFAULT_MAX_RETRIES: Final = 2

# Backoff: about half a second, doubling per retry, never more than eight seconds between
# attempts, with jitter so that many clients retrying at once do not move in lock step.
DEFAULT_INITIAL_RETRY_DELAY: Final = 0.5
DEFAULT_MAX_RETRY_DELAY: Final = 8.0

# A server's Retry-After is obeyed up to one minute. Beyond that waiting inside one call
# would look like a hang; the error is raised at once, with `retry_after` on it, so the
# caller can decide.
MAX_RETRY_AFTER: Final = 60.0


# One stream event larger than this is an error, not something to buffer: a chunk carries a
# few words, so a megabyte is three orders of magnitude of headroom and still a firm bound.
DEFAULT_MAX_STREAM_EVENT_SIZE: Final = 1024 * 1024

# After `data: [DONE]` the rest of the response (normally just the chunked-encoding
# terminator) is read so that the connection can go back to the pool. A server that keeps
# sending is not waited for beyond these bounds: the connection is closed instead.
DRAIN_MAX_BYTES: Final = 64 * 1024
DRAIN_MAX_SECONDS: Final = 1.0


class NotGiven(enum.Enum):
    """Marks a parameter the caller did not pass, which is not the same as passing ``None``.

    ``timeout=None`` means "no timeout"; leaving ``timeout`` out means "use the client's".
    A parameter that is not given is not sent to the server at all.
    """

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN
"""The value of every parameter the caller left out; see `NotGiven`."""
