"""Input types shared by every signature, defined once.

Typed dictionaries describe what callers may pass; the pydantic models in
`_models.py` describe what the server sends back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict, Union

import httpx

if TYPE_CHECKING:
    from ._models import ChatMessage

__all__ = [
    "KnownPersona",
    "MessageInput",
    "MessageParam",
    "Persona",
    "Role",
    "TimeoutTypes",
]

KnownPersona = Literal[
    "default",
    "technical_expert",
    "creative_writer",
    "educator",
    "safety_first",
]
"""The five personas the CTGT API documents."""

Persona = KnownPersona | str
"""A documented persona (offered by autocompletion) or any other name: the server decides."""

Role = Literal["system", "user", "assistant"] | str
"""Message author. The common roles autocomplete; others pass through for the server to judge."""


class _RequiredMessageKeys(TypedDict):
    role: Role
    """Who wrote the message: ``"system"``, ``"user"`` or ``"assistant"``."""
    content: str
    """The message text."""


class MessageParam(_RequiredMessageKeys, total=False):
    """One message of the conversation, as a plain dictionary.

    ``role`` and ``content`` are required. Other keys (``name``, for instance) are sent as given.
    """

    name: str
    """An optional name for the author, to tell participants of the same role apart."""


MessageInput = Union[MessageParam, "ChatMessage"]
"""A message as a dictionary or as a `ChatMessage` model (for example one taken from a reply)."""

TimeoutTypes = float | httpx.Timeout | None
"""Seconds for every phase, an `httpx.Timeout` for each phase apart, or ``None`` for no limit."""
