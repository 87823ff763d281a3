"""The public surface: exactly what ``__all__`` says, under the public module name."""

from __future__ import annotations

import types

import ctgt_async


def test_all_is_sorted_and_matches_the_public_namespace() -> None:
    public = {
        name
        for name, value in vars(ctgt_async).items()
        # Public subpackages (``ctgt_async.testing``) are namespaces of their own.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    exported = set(ctgt_async.__all__) - {"__version__"}
    assert public == exported
    assert ctgt_async.__all__ == sorted(ctgt_async.__all__, key=lambda n: (n != "NOT_GIVEN", n))


def test_public_classes_show_the_public_module() -> None:
    for name in ctgt_async.__all__:
        value = getattr(ctgt_async, name)
        if isinstance(value, type):
            assert value.__module__ == "ctgt_async", name


def test_the_version_is_a_string() -> None:
    major, minor, patch = ctgt_async.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))
