"""Building the request body, and checking the caller's arguments before anything is sent.

Pure functions: they take arguments and return a JSON-ready ``dict`` or raise
`InvalidArgumentError` naming the field. Keeping this free of I/O lets every rule be tested
directly, and guarantees that a bad argument never costs a round trip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._config import NotGiven
from ._errors import InvalidArgumentError
from ._models import ChatMessage

__all__ = ["build_chat_completion_body", "encode_body"]

TEMPERATURE_RANGE = (0.0, 2.0)


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_text(field: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(field, f"must be a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise InvalidArgumentError(field, "must not be empty")
    return value


def _message_dict(index: int, message: object) -> dict[str, Any]:
    field = f"messages[{index}]"
    if isinstance(message, ChatMessage):
        data = message.model_dump(exclude_none=True)
    elif isinstance(message, Mapping):
        data = dict(message)
    else:
        raise InvalidArgumentError(
            field,
            f"must be a dict with 'role' and 'content' or a ChatMessage, got {_type_name(message)}",
        )
    for key in ("role", "content"):
        if key not in data:
            raise InvalidArgumentError(f"{field}.{key}", "is required")
    _check_text(f"{field}.role", data["role"])
    _check_text(f"{field}.content", data["content"], allow_empty=True)
    return data


def _messages_list(messages: object) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidArgumentError(
            "messages", f"must be a list of messages, got {_type_name(messages)}"
        )
    checked = [_message_dict(index, message) for index, message in enumerate(messages)]
    if not checked:
        raise InvalidArgumentError("messages", "must contain at least one message")
    return checked


def _check_temperature(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError("temperature", f"must be a number, got {_type_name(value)}")
    low, high = TEMPERATURE_RANGE
    if math.isnan(value) or not low <= value <= high:
        raise InvalidArgumentError(
            "temperature", f"must be between {low:g} and {high:g}, got {value!r}"
        )
    return value


def _given(value: object) -> bool:
    return value is not None and not isinstance(value, NotGiven)


def build_chat_completion_body(
    *,
    model: object,
    messages: object,
    persona: object,
    temperature: object,
    stream: object,
    user: object,
    extra_body: object,
) -> dict[str, Any]:
    """Check every argument and return the JSON body of a chat completion request.

    A parameter left out (or passed as ``None``) is not put in the body, so the server applies
    its own default and strict OpenAI-compatible servers never see fields they do not know.
    ``extra_body`` is merged last and sent as given: it is the escape hatch for parameters this
    SDK does not know yet.
    """
    body: dict[str, Any] = {
        "model": _check_text("model", model),
        "messages": _messages_list(messages),
    }
    if _given(persona):
        body["persona"] = _check_text("persona", persona)
    if _given(temperature):
        body["temperature"] = _check_temperature(temperature)
    if _given(stream):
        if not isinstance(stream, bool):
            raise InvalidArgumentError("stream", f"must be True or False, got {_type_name(stream)}")
        body["stream"] = stream
    if _given(user):
        body["user"] = _check_text("user", user)
    if _given(extra_body):
        if not isinstance(extra_body, Mapping):
            raise InvalidArgumentError(
                "extra_body", f"must be a dict, got {_type_name(extra_body)}"
            )
        for key in extra_body:
            if not isinstance(key, str):
                raise InvalidArgumentError("extra_body", f"keys must be strings, got {key!r}")
        body.update(extra_body)
    return body


def _surrogate_path(value: object, path: str) -> str | None:
    """Where in ``value`` a string holds a lone surrogate (text no encoding can carry)."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, object]] = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, item in items:
        found = _surrogate_path(item, sub_path)
        if found:
            return found
    return None


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body as compact UTF-8 JSON.

    A string with a lone surrogate (``"\\ud800"``, what a bad decode or a cut emoji leaves)
    cannot be encoded as UTF-8; that is the caller's argument at fault, reported with its
    place rather than as a ``UnicodeEncodeError`` from deep inside the client.
    """
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        field = (_surrogate_path(dict(body), "") or ".body").lstrip(".")
        raise InvalidArgumentError(
            field, "contains a lone surrogate character, which is not valid Unicode text"
        ) from None
