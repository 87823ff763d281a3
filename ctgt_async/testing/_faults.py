"""Faults the simulator can inject, the `X-CTGT-Simulate` header grammar, and rate limiting.

Faults are small frozen dataclasses so that a test can build them, compare them with `==`,
and find the one that was applied in `RecordedRequest.fault`. There are two families:

* `StatusFault`: the request fails with an HTTP error status before any reply is made.
* Stream faults (`DropConnection`, `MalformedChunk`, `ErrorEvent`, `Stall`): a streaming
  request starts normally with a 200 and goes wrong after `after` server-sent events. They
  have no effect on non-streaming requests. When `after` is larger than the number of events
  the stream has, the fault happens after the last one (before the body is terminated).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "SIMULATE_HEADER",
    "ConnectionDropped",
    "DropConnection",
    "ErrorEvent",
    "Fault",
    "MalformedChunk",
    "RateLimiter",
    "SimulateHeaderError",
    "Stall",
    "StatusFault",
    "StreamFault",
    "error_payload",
    "parse_simulate_header",
    "retry_after_headers",
    "status_fault_payload",
]

SIMULATE_HEADER = "X-CTGT-Simulate"
"""The request header that selects a fault per request; its grammar is in `Simulator`."""


def _check_after(after: object) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be a non-negative int, got {after!r}")


def _check_seconds(name: str, seconds: float | None) -> None:
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {seconds!r}")


@dataclass(frozen=True)
class StatusFault:
    """Answer with an error status instead of a reply.

    `retry_after` (seconds) becomes a `Retry-After` header, rounded up to whole seconds as
    HTTP requires, plus the exact value in milliseconds as `retry-after-ms`; `None` sends
    neither. The default is a rate limit that asks for no wait, which is what tests want.
    """

    status: int = 429
    """The HTTP status to answer with, 400 to 599."""
    retry_after: float | None = 0.0
    """Seconds for `Retry-After`; `None` sends no header."""
    message: str | None = None
    """The error message; `None` picks one that suits the status."""

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise TypeError(f"status must be an int, got {self.status!r}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {self.status}")
        _check_seconds("retry_after", self.retry_after)


@dataclass(frozen=True)
class DropConnection:
    """Close the connection after `after` events, without terminating the body.

    Over a socket the TCP connection is closed mid-body; in process the transport raises
    `httpx.RemoteProtocolError`. Either way the client sees what a network failure looks like.
    """

    after: int = 0
    """How many events of the stream go out before the fault."""

    def __post_init__(self) -> None:
        _check_after(self.after)


@dataclass(frozen=True)
class MalformedChunk:
    """After `after` events, send one event whose data is not JSON, then carry on normally."""

    after: int = 0
    """How many events of the stream go out before the fault."""

    def __post_init__(self) -> None:
        _check_after(self.after)


@dataclass(frozen=True)
class ErrorEvent:
    """After `after` events, send an in-stream error event and end the body (no `[DONE]`).

    The event is `data: {"error": {"message": ..., "type": "server_error", "code": ...}}`, the
    way OpenAI-compatible servers report a failure once the 200 status has already gone out.
    """

    after: int = 0
    """How many events of the stream go out before the fault."""
    message: str = "The server had an error while processing your request."
    """The `error.message` of the event."""
    code: str = "server_error"
    """The `error.code` of the event."""

    def __post_init__(self) -> None:
        _check_after(self.after)


@dataclass(frozen=True)
class Stall:
    """After `after` events, go silent for `seconds` (`None`: until the client gives up).

    A finite stall resumes the stream afterwards, so it can test a read timeout that is
    shorter than the stall as well as a slow but healthy stream.
    """

    after: int = 0
    """How many events of the stream go out before the fault."""
    seconds: float | None = None
    """How long the stream stays silent; `None`: until the client gives up."""

    def __post_init__(self) -> None:
        _check_after(self.after)
        _check_seconds("seconds", self.seconds)


StreamFault: TypeAlias = DropConnection | MalformedChunk | ErrorEvent | Stall
"""A fault that breaks a stream which has already started."""
Fault: TypeAlias = StatusFault | StreamFault
"""Any fault the simulator can inject."""


class ConnectionDropped(Exception):  # noqa: N818 (a signal to the server, not an error)
    """Raised by the simulator after a partial body to make the server drop the connection.

    Both uvicorn and `SimulatorTransport` treat an application that raises after the response
    started as a broken connection; raising this is the portable way to ask for exactly that.
    """


# --- error bodies ---------------------------------------------------------------------------

_NO_PARAM = object()

_STATUS_ERRORS: Mapping[int, tuple[str, str, str]] = {
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached. Please retry later."),
    500: ("server_error", "internal_error", "The server had an error processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable", "The server is temporarily overloaded."),
    504: ("server_error", "gateway_timeout", "The server timed out."),
}


def error_payload(
    message: str, error_type: str, code: str | None, param: object = _NO_PARAM
) -> dict[str, object]:
    """Build the reference page's error body: `{"error": {"message", "type", "code"}}`."""
    error: dict[str, object] = {"message": message, "type": error_type, "code": code}
    if param is not _NO_PARAM:
        error["param"] = param
    return {"error": error}


def status_fault_payload(fault: StatusFault) -> dict[str, object]:
    """The error body for an injected status, typed the way the real service would type it."""
    if fault.status in _STATUS_ERRORS:
        error_type, code, message = _STATUS_ERRORS[fault.status]
    elif fault.status >= 500:
        error_type, code, message = "server_error", "server_error", "The server had an error."
    else:
        error_type, code, message = "invalid_request_error", "simulated_error", "Simulated error."
    return error_payload(fault.message or message, error_type, code)


def retry_after_headers(seconds: float | None) -> list[tuple[str, str]]:
    """`Retry-After` in whole seconds (rounded up, as HTTP wants) and `retry-after-ms` exactly."""
    if seconds is None:
        return []
    milliseconds = round(seconds * 1000)
    return [("retry-after", str(math.ceil(seconds))), ("retry-after-ms", str(milliseconds))]


# --- the X-CTGT-Simulate header -------------------------------------------------------------


class SimulateHeaderError(ValueError):
    """The `X-CTGT-Simulate` header could not be understood; the request gets a 400."""


_STREAM_DIRECTIVES: Mapping[str, Callable[[int], StreamFault]] = {
    "drop-after": lambda after: DropConnection(after=after),
    "malformed-after": lambda after: MalformedChunk(after=after),
    "error-after": lambda after: ErrorEvent(after=after),
    "stall-after": lambda after: Stall(after=after),
}
_KNOWN = {"status", "retry-after", "stall-for", *_STREAM_DIRECTIVES}


def _int_value(name: str, text: str) -> int:
    if not text.isdigit():
        raise SimulateHeaderError(f"{name} needs a non-negative integer, got {text!r}")
    return int(text)


def _seconds_value(name: str, text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise SimulateHeaderError(f"{name} needs a number of seconds, got {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise SimulateHeaderError(f"{name} needs a finite number of seconds >= 0, got {text!r}")
    return seconds


def parse_simulate_header(value: str) -> StatusFault | StreamFault | None:
    """Parse an `X-CTGT-Simulate` header value into the fault it asks for.

    Raises `SimulateHeaderError` (a `ValueError`) with a message that says what is wrong.
    """
    directives: dict[str, str] = {}
    for item in value.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, text = item.partition("=")
        name, text = name.strip().lower(), text.strip()
        if not sep or not text:
            raise SimulateHeaderError(f"expected name=value, got {item!r}")
        if name not in _KNOWN:
            raise SimulateHeaderError(f"unknown directive {name!r}")
        if name in directives:
            raise SimulateHeaderError(f"directive {name!r} given twice")
        directives[name] = text

    stream_names = [name for name in directives if name in _STREAM_DIRECTIVES]
    if len(stream_names) > 1:
        raise SimulateHeaderError(f"choose one stream fault, got {', '.join(stream_names)}")
    if "retry-after" in directives and "status" not in directives:
        raise SimulateHeaderError("retry-after only goes with status")
    if "stall-for" in directives and "stall-after" not in directives:
        raise SimulateHeaderError("stall-for only goes with stall-after")

    if "status" in directives:
        if stream_names:
            raise SimulateHeaderError("status cannot be combined with a stream fault")
        status = _int_value("status", directives["status"])
        if not 400 <= status <= 599:
            raise SimulateHeaderError(f"status must be 400-599, got {status}")
        retry_after = (
            _seconds_value("retry-after", directives["retry-after"])
            if "retry-after" in directives
            else (0.0 if status == 429 else None)
        )
        return StatusFault(status=status, retry_after=retry_after)
    if stream_names:
        name = stream_names[0]
        fault = _STREAM_DIRECTIVES[name](_int_value(name, directives[name]))
        if "stall-for" in directives:
            seconds = _seconds_value("stall-for", directives["stall-for"])
            return Stall(after=fault.after, seconds=seconds)
        return fault
    return None


# --- rate limiting --------------------------------------------------------------------------


class RateLimiter:
    """A sliding one-minute window of admitted requests per API key.

    Only admitted requests take a slot. `acquire` answers how long until the oldest slot frees
    when the window is full, which becomes the 429's `Retry-After`. Time comes from an
    injected clock so tests can move it forward instead of waiting.
    """

    WINDOW = 60.0

    def __init__(self, requests_per_minute: int, clock: Callable[[], float]) -> None:
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Take a slot for `key` and return `None`, or return the seconds until one frees."""
        now = self._clock()
        window = self._admitted.setdefault(key, deque())
        while window and window[0] <= now - self.WINDOW:
            window.popleft()
        if len(window) >= self.requests_per_minute:
            return window[0] + self.WINDOW - now
        window.append(now)
        return None
