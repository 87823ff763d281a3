"""When to retry, how long to wait, and the tenacity loop that does it.

The decisions are pure functions (`should_retry_status`, `parse_retry_after`,
`backoff_delay`) tested on their own. `call_with_retries` wires them into tenacity, which
stays an implementation detail: no tenacity type appears in the public API and no
`tenacity.RetryError` ever reaches a caller. Sleeping goes through `anyio.sleep`, so the same
code runs on asyncio and trio and a cancellation during a backoff wait takes effect at once.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ._config import (
    DEFAULT_INITIAL_RETRY_DELAY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_DELAY,
    MAX_RETRY_AFTER,
)
from ._errors import APIConnectionError, APIError, APIStatusError, APITimeoutError

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "backoff_delay",
    "call_with_retries",
    "parse_retry_after",
    "should_retry_status",
]

logger = logging.getLogger("ctgt_async")

T = TypeVar("T")

# 408 Request Timeout and 409 Conflict (a lock held by a concurrent request) are worth another
# try, as are 429 and every 5xx. Other 4xx mean the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def should_retry_status(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether a response with this status and these headers deserves another attempt.

    The server has the last word: ``x-should-retry: true`` or ``false`` overrides the status.
    """
    verdict = headers.get("x-should-retry", "").strip().lower()
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it did not say (or said nonsense).

    Reads ``retry-after-ms`` first (finer grained), then ``Retry-After`` as seconds or as an
    HTTP date. A date in the past, or zero, means "retry now": ``0.0``.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        return max(when.timestamp() - current, 0.0)
    return max(value, 0.0) if math.isfinite(value) else None


def backoff_delay(
    retry_number: int,
    *,
    initial: float = DEFAULT_INITIAL_RETRY_DELAY,
    maximum: float = DEFAULT_MAX_RETRY_DELAY,
    jitter: float | None = None,
) -> float:
    """Seconds to wait before retry number ``retry_number`` (1 for the first retry).

    ``initial`` doubles with each retry up to ``maximum``; up to a quarter of it is then taken
    off at random (``jitter`` in [0, 1) fixes that draw for tests), so that clients which failed
    together do not retry together.
    """
    base = min(maximum, initial * 2.0 ** (retry_number - 1))
    draw = random.random() if jitter is None else jitter
    return base * (1.0 - 0.25 * draw)


@dataclass(frozen=True)
class RetryPolicy:
    """How one client retries: counts, delays and the Retry-After ceiling."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = DEFAULT_INITIAL_RETRY_DELAY
    max_delay: float = DEFAULT_MAX_RETRY_DELAY
    max_retry_after: float = MAX_RETRY_AFTER

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, APIStatusError):
            if error.retry_after is not None and error.retry_after > self.max_retry_after:
                return False
            return should_retry_status(error.status_code, error.response.headers)
        return isinstance(error, APIConnectionError)

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, APIStatusError) and error.retry_after is not None:
            return error.retry_after
        return backoff_delay(
            state.attempt_number, initial=self.initial_delay, maximum=self.max_delay
        )


class _Stop:
    """Stop when the retries are used up, or when the next wait would overrun the deadline.

    ``deadline`` is on the event loop's clock (`anyio.current_time`).
    """

    def __init__(self, max_attempts: int, deadline: float | None) -> None:
        self.max_attempts = max_attempts
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            return True
        if self.deadline is None:
            return False
        return anyio.current_time() + (state.upcoming_sleep or 0.0) >= self.deadline


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.info(
        "Retrying in %.3f s (attempt %d failed): %s",
        state.upcoming_sleep,
        state.attempt_number,
        error.message if isinstance(error, APIError) else error,
    )


async def call_with_retries(
    send: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    request: httpx.Request,
    total_timeout: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Await ``send()`` until it succeeds, fails for good, or ``total_timeout`` runs out.

    The error of the last attempt is raised as it is, with ``attempts`` set to the number of
    times ``send`` ran. ``total_timeout`` bounds attempts and waits together: a backoff wait
    that would end past it is not started (the last error is raised instead), and an attempt
    still running when it expires is cancelled and reported as `APITimeoutError`.
    """
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        try:
            return await send()
        except APIError as error:
            error.attempts = attempts
            raise

    # The event loop's clock, like the waits, so that a test's fake clock drives both.
    deadline = None if total_timeout is None else anyio.current_time() + total_timeout
    retrying = AsyncRetrying(
        retry=retry_if_exception(policy.is_retryable),
        stop=_Stop(policy.max_retries + 1, deadline),
        wait=policy.wait,
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
    if total_timeout is None:
        return await retrying(attempt)
    with anyio.move_on_after(total_timeout) as scope:
        return await retrying(attempt)
    assert scope.cancelled_caught
    error = APITimeoutError(
        f"The call did not complete within total_timeout={total_timeout:g} s.", request=request
    )
    error.attempts = attempts
    raise error
