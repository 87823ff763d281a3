"""The pytest plugin gives any project simulator fixtures without an import.

Each test writes a small test module of a user project and runs pytest on it in process;
the fixtures come from the ``pytest11`` entry point of the installed package.
"""

from __future__ import annotations

import pytest

USER_TESTS = """
import pytest

from ctgt_async import RateLimitError

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def test_a_call_reaches_the_simulator(ctgt_client, ctgt_simulator):
    completion = await ctgt_client.chat.completions.create(
        model="gemini-2.5-flash-lite", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content
    assert ctgt_simulator.last_request.body["model"] == "gemini-2.5-flash-lite"


async def test_faults_are_scripted_on_the_simulator(ctgt_client, ctgt_simulator):
    ctgt_simulator.fail_next(3, status=429)
    with pytest.raises(RateLimitError):
        await ctgt_client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert [r.status for r in ctgt_simulator.requests] == [429, 429, 429]


async def test_streams_work(ctgt_client):
    stream = await ctgt_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    completion = await stream.get_final_completion()
    assert completion.choices[0].finish_reason == "stop"


def test_each_test_gets_a_fresh_simulator(ctgt_simulator):
    assert len(ctgt_simulator.requests) == 0
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    # A user project with pytest-asyncio installed states its loop scope, as it must.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_the_fixtures_are_available_without_imports(user_project: pytest.Pytester) -> None:
    pytester = user_project
    pytester.makepyfile(test_user_app=USER_TESTS)
    result = pytester.runpytest("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)


def test_the_fixtures_are_listed_with_their_docs(user_project: pytest.Pytester) -> None:
    result = user_project.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["ctgt_simulator*", "*fresh CTGT API simulator*", "ctgt_client*"])
