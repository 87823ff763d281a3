"""One entry point for every check: ``nox -s tests``, ``lint``, ``typecheck``.

Each session installs the project into a fresh virtual environment from its own
``pyproject.toml`` extras, so what passes here passes on a clean machine.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = False

PYTHON = ["3.11"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite under asyncio and trio with branch coverage (at least 95%)."""
    session.install("-e", ".[test]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", "--fail-under=95")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[lint]")
    session.run("mypy", "--strict", "ctgt_async", "tests", "examples")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning (a broken link or reference) fails."""
    session.install("-e", ".[docs]")
    # The variable hides mkdocs-material's notice about MkDocs 2, which is not a build warning.
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite: numbers, never pass/fail on speed. CI: `nox -s bench -- --quick`."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/run.py", *session.posargs)
