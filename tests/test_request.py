"""Building the request body: what is sent, what is left out, and what is refused."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ctgt_async import NOT_GIVEN, ChatMessage, CTGTError, InvalidArgumentError
from ctgt_async._request import build_chat_completion_body, encode_body

USER = {"role": "user", "content": "Why is the sky blue?"}


def build(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "model": "gemini-2.5-flash-lite",
        "messages": [USER],
        "persona": NOT_GIVEN,
        "temperature": NOT_GIVEN,
        "stream": NOT_GIVEN,
        "user": NOT_GIVEN,
        "extra_body": None,
    }
    arguments.update(overrides)
    return build_chat_completion_body(**arguments)


def test_only_model_and_messages_are_sent_when_nothing_else_is_given() -> None:
    assert build() == {"model": "gemini-2.5-flash-lite", "messages": [USER]}


def test_none_means_not_given_and_is_not_sent() -> None:
    assert build(persona=None, temperature=None, stream=None, user=None) == build()


def test_every_given_parameter_is_sent_as_given() -> None:
    body = build(persona="educator", temperature=0.3, stream=True, user="user-123")
    assert body == {
        "model": "gemini-2.5-flash-lite",
        "messages": [USER],
        "persona": "educator",
        "temperature": 0.3,
        "stream": True,
        "user": "user-123",
    }


def test_an_unknown_persona_is_passed_through_for_the_server_to_judge() -> None:
    assert build(persona="pirate")["persona"] == "pirate"


def test_messages_may_be_models_and_any_iterable() -> None:
    reply = ChatMessage(role="assistant", content="Rayleigh scattering.")
    body = build(messages=iter([USER, reply]))
    assert body["messages"] == [USER, {"role": "assistant", "content": "Rayleigh scattering."}]


def test_extra_message_keys_are_kept() -> None:
    message = {"role": "user", "content": "hi", "name": "ada"}
    assert build(messages=[message])["messages"] == [message]


def test_extra_body_is_merged_last_and_wins() -> None:
    body = build(temperature=1, extra_body={"temperature": 0.5, "stream_options": {"x": 1}})
    assert body["temperature"] == 0.5
    assert body["stream_options"] == {"x": 1}


def test_temperature_bounds_are_inclusive() -> None:
    assert build(temperature=0)["temperature"] == 0
    assert build(temperature=2.0)["temperature"] == 2.0


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"model": ""}, "model", "must not be empty"),
        ({"model": "   "}, "model", "must not be empty"),
        ({"model": None}, "model", "must be a string, got NoneType"),
        ({"model": 3}, "model", "must be a string, got int"),
        ({"messages": []}, "messages", "at least one message"),
        ({"messages": "hello"}, "messages", "must be a list of messages, got str"),
        ({"messages": USER}, "messages", "must be a list of messages, got dict"),
        ({"messages": None}, "messages", "must be a list of messages, got NoneType"),
        ({"messages": [USER, "hi"]}, "messages[1]", "got str"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role", "is required"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        ({"messages": [{"role": "", "content": "x"}]}, "messages[0].role", "must not be empty"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "got int"),
        ({"messages": [ChatMessage(role="assistant")]}, "messages[0].content", "is required"),
        ({"temperature": -0.01}, "temperature", "between 0 and 2"),
        ({"temperature": 2.01}, "temperature", "between 0 and 2"),
        ({"temperature": math.nan}, "temperature", "between 0 and 2"),
        ({"temperature": "1"}, "temperature", "must be a number, got str"),
        ({"temperature": True}, "temperature", "must be a number, got bool"),
        ({"stream": "yes"}, "stream", "must be True or False, got str"),
        ({"stream": 1}, "stream", "must be True or False, got int"),
        ({"persona": 7}, "persona", "must be a string"),
        ({"persona": ""}, "persona", "must not be empty"),
        ({"user": 123}, "user", "must be a string"),
        ({"extra_body": ["x"]}, "extra_body", "must be a dict"),
        ({"extra_body": {1: "x"}}, "extra_body", "keys must be strings"),
    ],
)
def test_invalid_arguments_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build(**overrides)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_the_validation_error_is_both_an_sdk_error_and_a_value_error() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build(model="")
    assert isinstance(caught.value, CTGTError)
    assert isinstance(caught.value, ValueError)


def test_a_lone_surrogate_is_an_invalid_argument_naming_its_place() -> None:
    body = build(messages=[USER, {"role": "user", "content": "cut emoji \ud83d"}])
    with pytest.raises(InvalidArgumentError) as caught:
        encode_body(body)
    assert caught.value.field == "messages[1].content"
    assert "surrogate" in str(caught.value)


def test_the_body_is_compact_utf8_json() -> None:
    assert encode_body({"a": "é", "b": [1]}) == '{"a":"é","b":[1]}'.encode()
