"""The pytest plugin: simulator fixtures for any project that installs ctgt-async.

Registered through the ``pytest11`` entry point, so the fixtures are there without an
import or a ``conftest.py``:

``ctgt_simulator``
    A fresh `Simulator` per test: script faults on it, inspect ``requests`` afterwards.
``ctgt_client``
    An open `AsyncCTGT` wired in process to ``ctgt_simulator`` (no sockets, no key), closed
    after the test. It is an async fixture for anyio's pytest plugin (``@pytest.mark.anyio``,
    asyncio or trio) or pytest-asyncio in auto mode. In pytest-asyncio's strict mode, build
    it yourself from ``ctgt_simulator.client()`` with ``@pytest_asyncio.fixture``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._client import AsyncCTGT
from ._simulator import Simulator

__all__ = ["ctgt_client", "ctgt_simulator"]


@pytest.fixture
def ctgt_simulator() -> Simulator:
    """A fresh CTGT API simulator for one test."""
    return Simulator()


@pytest.fixture
async def ctgt_client(ctgt_simulator: Simulator) -> AsyncIterator[AsyncCTGT]:
    """An `AsyncCTGT` talking to ``ctgt_simulator`` in process, without retry waits."""
    async with ctgt_simulator.client(initial_retry_delay=0) as client:
        yield client
