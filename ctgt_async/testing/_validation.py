"""Check a chat completions request body the way the reference page describes it.

Each problem becomes a 400 whose error names the offending field in `param` (with a path such
as `messages[0].content`), so that both the SDK's error mapping and a human reading a failed
test can tell what was wrong. Optional fields may be `null`, which means "use the default", as
with OpenAI-compatible servers. Unknown fields are accepted and ignored: the real service is
lenient about them and the SDK should not depend on the contrary. Unknown persona names are
accepted too and answered in the default voice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["ChatRequest", "InvalidRequest", "parse_chat_request"]

DEFAULT_PERSONA = "default"
DEFAULT_TEMPERATURE = 1.0


@dataclass(frozen=True)
class ChatRequest:
    """A request body that passed validation, with defaults filled in."""

    model: str
    messages: tuple[tuple[str, str], ...]
    persona: str
    temperature: float
    stream: bool
    include_usage: bool
    max_tokens: int | None


class InvalidRequest(Exception):  # noqa: N818 (mirrors the API's error type name)
    """Why a request body was rejected; becomes a 400 `invalid_request_error`."""

    def __init__(self, message: str, *, param: str | None, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)}.",
        param=param,
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _messages(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        raise _missing("messages")
    if not isinstance(value, list):
        raise _wrong_type("messages", "an array of message objects", value)
    if not value:
        raise InvalidRequest(
            "Invalid 'messages': expected a non-empty array of message objects.", param="messages"
        )
    parsed: list[tuple[str, str]] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _wrong_type(where, "an object with 'role' and 'content'", message)
        for field in ("role", "content"):
            if field not in message:
                raise _missing(f"{where}.{field}")
            if not isinstance(message[field], str):
                raise _wrong_type(f"{where}.{field}", "a string", message[field])
        if not message["role"]:
            raise InvalidRequest(
                f"Invalid '{where}.role': expected a non-empty string.", param=f"{where}.role"
            )
        parsed.append((message["role"], message["content"]))
    return tuple(parsed)


def parse_chat_request(content: bytes) -> ChatRequest:
    """Parse and validate a request body, or raise `InvalidRequest`."""
    try:
        body = json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send a valid JSON object.",
            param=None,
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, but got {_type_name(body)}.",
            param=None,
            code="invalid_json",
        )

    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if not model.strip():
        raise InvalidRequest("Invalid 'model': expected a non-empty string.", param="model")

    messages = _messages(body.get("messages"))

    temperature = body.get("temperature")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    elif isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise _wrong_type("temperature", "a number", temperature)
    elif not (math.isfinite(temperature) and 0 <= temperature <= 2):
        raise InvalidRequest(
            f"Invalid 'temperature': expected a number between 0 and 2, but got {temperature}.",
            param="temperature",
        )

    stream = body.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)

    persona = body.get("persona")
    if persona is None:
        persona = DEFAULT_PERSONA
    elif not isinstance(persona, str):
        raise _wrong_type("persona", "a string", persona)

    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _wrong_type("user", "a string", user)

    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise _wrong_type("max_tokens", "an integer", max_tokens)
        if max_tokens < 1:
            raise InvalidRequest(
                f"Invalid 'max_tokens': expected an integer >= 1, but got {max_tokens}.",
                param="max_tokens",
            )

    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        flag = options.get("include_usage")
        if flag is not None and not isinstance(flag, bool):
            raise _wrong_type("stream_options.include_usage", "a boolean", flag)
        include_usage = flag is True

    return ChatRequest(
        model=model,
        messages=messages,
        persona=persona,
        temperature=float(temperature),
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
    )
