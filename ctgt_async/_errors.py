"""Every exception the SDK raises, and the pure function that maps a response to one.

The tree::

    CTGTError                          base of everything raised on purpose
    ├── MissingAPIKeyError             no key given and CTGT_API_KEY unset (at construction)
    ├── InvalidArgumentError           a bad argument, caught before any request (also ValueError)
    └── APIError                       something went wrong talking to the API; has .request
        ├── APIConnectionError         no usable response: refused, reset, DNS, TLS, ...
        │   ├── APITimeoutError        an attempt (or the whole call) ran out of time
        │   └── StreamInterruptedError the connection dropped mid-stream, before the end
        ├── APIResponseValidationError a response arrived but is not what the API promises
        │   └── StreamDecodeError      a streamed event that is not a valid chunk
        └── APIStatusError             the server answered 4xx/5xx (or an error event mid-stream)
            ├── BadRequestError            400
            ├── AuthenticationError        401
            ├── PermissionDeniedError      403
            ├── NotFoundError              404
            ├── UnprocessableEntityError   422
            ├── RateLimitError             429
            └── InternalServerError        >= 500

Transport failures and status errors are separate branches: "the server said no" and
"we never heard from the server" call for different handling. Every `APIError` carries the
request it concerns and, once retries are over, how many attempts were made.

No message built here contains the API key: the client never hands it to this module, and
server-supplied text is passed through `redact` by the caller before it lands in an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CTGTError",
    "InternalServerError",
    "InvalidArgumentError",
    "MissingAPIKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "StreamDecodeError",
    "StreamInterruptedError",
    "UnprocessableEntityError",
    "make_status_error",
    "redact",
]

# Server text quoted in an error is cut to this many characters: enough to read an HTML error
# page's gist, not enough to flood a log line.
MAX_QUOTED_BODY = 500


class CTGTError(Exception):
    """Base class of every exception ctgt-async raises on purpose."""


class MissingAPIKeyError(CTGTError):
    """No API key was passed and the ``CTGT_API_KEY`` environment variable is not set."""


class InvalidArgumentError(CTGTError, ValueError):
    """An argument is invalid. Raised before anything is sent, so no request was made.

    Attributes:
        field: Where the problem is, as a path such as ``messages[1].role``.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class APIError(CTGTError):
    """A call to the API failed.

    Attributes:
        message: What went wrong, in words.
        request: The request that failed (its headers hold the key; its repr does not).
        attempts: How many times the request was sent before giving up (1 when not retried).
        partial_text: For an error raised mid-stream, the content received before it, per
            choice index, so that a caller can show, resume or report it. Empty otherwise.
        chunks_received: For an error raised mid-stream, how many chunks had arrived.
    """

    partial_text: dict[int, str]
    chunks_received: int

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.attempts = 1
        self.partial_text = {}
        self.chunks_received = 0

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (gave up after {self.attempts} attempts)"
        return self.message


class APIConnectionError(APIError):
    """No usable response arrived: the connection failed, was refused or was cut."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """An attempt, a read between stream events, or the whole call ran out of time."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request) -> None:
        super().__init__(message, request=request)


class StreamInterruptedError(APIConnectionError):
    """The stream ended before its end marker; ``partial_text`` keeps what had arrived."""


class APIResponseValidationError(APIError):
    """The server answered, but not in the shape the API promises.

    Attributes:
        response: The response (already read).
        body: The offending text, cut to a safe length.
    """

    def __init__(self, message: str, *, response: httpx.Response, body: str) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.body = body


class StreamDecodeError(APIResponseValidationError):
    """A streamed event is not valid JSON or not a valid chunk; ``body`` quotes it."""


class APIStatusError(APIError):
    """The server answered with an error status, or sent an error event mid-stream.

    Attributes:
        status_code: The HTTP status (for an error event mid-stream, the stream's own status).
        type: The ``error.type`` the server sent, such as ``invalid_request_error``.
        code: The ``error.code`` the server sent, such as ``invalid_api_key``.
        body: The parsed JSON body, or the text when it is not JSON, or ``None`` when empty.
        response: The response, already read.
        request_id: The ``x-request-id`` header, for support tickets.
        retry_after: Seconds the server asked us to wait (``Retry-After``), when it said.
        server_message: The server's own ``error.message`` (API key redacted), or ``None``
            when it sent none: the part of the error that is safe to show an end user.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: object,
        type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, request=response.request)
        self.server_message = server_message
        self.status_code = response.status_code
        self.response = response
        self.body = body
        self.type = type
        self.code = code
        self.request_id: str | None = response.headers.get("x-request-id")
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400: the server rejected the parameters."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not do this."""


class NotFoundError(APIStatusError):
    """404: wrong base URL or path, or an unknown model."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; see ``retry_after``."""


class InternalServerError(APIStatusError):
    """500 and above: the server or a gateway in front of it failed."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _quote(text: str) -> str:
    """Make server text fit for one line of an error message: no tags, no runs of space."""
    flat = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    if len(flat) > MAX_QUOTED_BODY:
        return flat[:MAX_QUOTED_BODY] + "…"
    return flat


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def describe_error_body(raw: bytes) -> tuple[str | None, str | None, str | None, object]:
    """Read ``(message, type, code, body)`` out of an error response body.

    Understands the documented ``{"error": {"message", "type", "code"}}``, a bare
    ``{"error": "..."}``, FastAPI's ``{"detail": ...}`` and a top-level ``message``; anything
    else (an HTML page from a proxy, plain text) is quoted as text.
    """
    if not raw.strip():
        return None, None, None, None
    try:
        body: object = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace")
        return _quote(text), None, None, text
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = _as_text(error.get("message"))
            return message, _as_text(error.get("type")), _as_text(error.get("code")), body
        for key in ("error", "detail", "message"):
            if key in body:
                return _quote(_as_text(body[key]) or ""), None, None, body
    return _quote(json.dumps(body)), None, None, body


def make_status_error(
    response: httpx.Response,
    *,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> APIStatusError:
    """Build the typed error for a read error response (pure: no I/O, no logging)."""
    status = response.status_code
    message, type_, code, body = describe_error_body(response.content)
    reason = response.reason_phrase or "Error"
    summary = f"{status} {reason}"
    if message:
        message = redact(message, secrets)
        summary = f"{summary}: {message}"
    details = [f"{name}={value}" for name, value in (("type", type_), ("code", code)) if value]
    request_id = response.headers.get("x-request-id")
    if request_id:
        details.append(f"request_id={request_id}")
    if details:
        summary = f"{summary} [{', '.join(details)}]"
    if status >= 500:
        cls: type[APIStatusError] = InternalServerError
    else:
        cls = _STATUS_ERRORS.get(status, APIStatusError)
    return cls(
        summary,
        response=response,
        body=body,
        type=type_,
        code=code,
        retry_after=retry_after,
        server_message=message,
    )
