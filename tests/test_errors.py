"""Mapping error responses to typed exceptions, whatever shape the body has."""

from __future__ import annotations

import json

import httpx
import pytest

from ctgt_async import (
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CTGTError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from ctgt_async._errors import MAX_QUOTED_BODY, make_status_error, redact

REQUEST = httpx.Request("POST", "https://api.ctgt.ai/v1/chat/completions")
DOCUMENTED_BODY = {
    "error": {
        "message": "Invalid API key provided",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


def response(status: int, content: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers, request=REQUEST)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (408, APIStatusError),
        (409, APIStatusError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (599, InternalServerError),
    ],
)
def test_each_status_maps_to_its_class(status: int, cls: type[APIStatusError]) -> None:
    error = make_status_error(response(status, b"{}"))
    assert type(error) is cls
    assert isinstance(error, APIError)
    assert isinstance(error, CTGTError)
    assert error.status_code == status


def test_the_documented_error_body_is_parsed_into_fields() -> None:
    raw = json.dumps(DOCUMENTED_BODY).encode()
    error = make_status_error(response(401, raw, **{"x-request-id": "req_42"}))
    assert error.message.startswith("401 Unauthorized: Invalid API key provided")
    assert error.type == "invalid_request_error"
    assert error.code == "invalid_api_key"
    assert error.body == DOCUMENTED_BODY
    assert error.request_id == "req_42"
    assert error.server_message == "Invalid API key provided"
    assert error.request is REQUEST
    assert "request_id=req_42" in str(error)
    assert "code=invalid_api_key" in str(error)


def test_an_html_page_from_a_proxy_still_gives_its_text() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = make_status_error(response(502, page))
    assert "502 Bad Gateway" in error.message
    assert "nginx" in error.message
    assert "<" not in error.message
    assert error.body == page.decode()


def test_a_fastapi_detail_body_gives_its_detail() -> None:
    error = make_status_error(response(422, b'{"detail": [{"loc": ["body"], "msg": "bad"}]}'))
    assert "bad" in error.message
    assert error.body == {"detail": [{"loc": ["body"], "msg": "bad"}]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"error": "quota exhausted"}', "quota exhausted"),
        (b'{"message": "slow down"}', "slow down"),
        (b'["unexpected", "shape"]', '["unexpected", "shape"]'),
        (b"upstream connect error", "upstream connect error"),
    ],
)
def test_other_body_shapes_are_quoted(raw: bytes, expected: str) -> None:
    assert expected in make_status_error(response(500, raw)).message


def test_an_empty_body_gives_the_status_line() -> None:
    error = make_status_error(response(503))
    assert error.message == "503 Service Unavailable"
    assert error.body is None
    assert error.server_message is None


def test_a_huge_body_is_cut_in_the_message_but_kept_whole_on_the_error() -> None:
    raw = b"x" * 10_000
    error = make_status_error(response(500, raw))
    assert len(error.message) < MAX_QUOTED_BODY + 50
    assert error.body == raw.decode()


def test_secrets_in_server_text_are_redacted() -> None:
    raw = b'{"error": {"message": "Key sk-live-123 is revoked"}}'
    error = make_status_error(response(401, raw), secrets=["sk-live-123"])
    assert "sk-live-123" not in str(error)
    assert "Key *** is revoked" in str(error)
    assert error.server_message == "Key *** is revoked"


def test_redact_ignores_empty_secrets() -> None:
    assert redact("abc", ["", "b"]) == "a***c"


def test_retry_after_is_carried() -> None:
    assert make_status_error(response(429), retry_after=1.5).retry_after == 1.5


def test_the_message_says_how_many_attempts_were_made() -> None:
    error = make_status_error(response(500))
    assert "attempt" not in str(error)
    error.attempts = 3
    assert str(error) == "500 Internal Server Error (gave up after 3 attempts)"
