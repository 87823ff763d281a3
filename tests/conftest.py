"""Fixtures shared by the whole suite.

Tests whose behaviour must hold on both event loops take ``@pytest.mark.anyio`` and run once
under asyncio and once under trio through the ``anyio_backend`` fixture below.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
