"""The pure retry decisions: which statuses, how long to wait, what Retry-After means."""

from __future__ import annotations

import email.utils

import pytest

from ctgt_async._retry import backoff_delay, parse_retry_after, should_retry_status


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    assert should_retry_status(status, {})


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 422])
def test_statuses_that_blame_the_request_are_not_retried(status: int) -> None:
    assert not should_retry_status(status, {})


def test_the_server_can_veto_or_demand_a_retry() -> None:
    assert not should_retry_status(503, {"x-should-retry": "false"})
    assert should_retry_status(400, {"x-should-retry": "true"})
    assert should_retry_status(503, {"x-should-retry": "maybe"})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "nan", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "x", "retry-after": "9"}, 9.0),
    ],
)
def test_retry_after_values(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


def test_an_http_date_without_a_zone_is_ignored() -> None:
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00"}) is None


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    delays = [backoff_delay(n, initial=0.5, maximum=8.0, jitter=0.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_takes_off_at_most_a_quarter() -> None:
    assert backoff_delay(3, initial=0.5, maximum=8.0, jitter=0.999) == pytest.approx(1.5, abs=0.01)
    for _ in range(200):
        assert 1.5 <= backoff_delay(3, initial=0.5, maximum=8.0) <= 2.0


def test_a_zero_initial_delay_means_no_waiting() -> None:
    assert backoff_delay(5, initial=0.0, maximum=8.0) == 0.0
