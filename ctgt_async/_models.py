"""Pydantic models of what the API sends back.

Every model keeps fields it does not know (``extra="allow"``): the server may add some, and
they stay readable as attributes and through ``model_extra`` instead of being dropped.
The stream chunk shape is not on CTGT's reference page; it follows OpenAI's
``chat.completion.chunk``, which the API's wire format is compatible with.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Usage",
]


class _APIModel(BaseModel):
    # defer_build: a model's validator is built the first time it is used, not at import,
    # so `import ctgt_async` does not pay for models a program never receives.
    model_config = ConfigDict(extra="allow", defer_build=True)


class Usage(_APIModel):
    """Token counts for one completion."""

    prompt_tokens: int
    """Tokens in the messages sent."""
    completion_tokens: int
    """Tokens in the generated reply."""
    total_tokens: int
    """The two added up: what the call is billed for."""


class ChatMessage(_APIModel):
    """One message: a reply's, or one you send back as conversation history."""

    role: str
    """Who wrote it: ``"system"``, ``"user"``, ``"assistant"``, or another role the server knows."""
    content: str | None = None
    """The text. ``None`` only in a reply that carries no text."""


class Choice(_APIModel):
    """One generated alternative of a completion."""

    index: int
    """Position of this choice among the reply's choices (0 for the first)."""
    message: ChatMessage
    """The generated message."""
    finish_reason: str | None = None
    """Why generation stopped: ``"stop"`` (a natural end), ``"length"`` (the token limit), ..."""


class ChatCompletion(_APIModel):
    """The reply to a non-streaming call, or the one assembled from a stream.

    ``usage`` is ``None`` only for a stream whose server did not report it.
    """

    id: str
    """The completion's identifier, such as ``"chatcmpl-123"``."""
    object: str = "chat.completion"
    """Always ``"chat.completion"``."""
    created: int
    """When it was created, in seconds since the Unix epoch."""
    model: str
    """The model that generated it."""
    choices: list[Choice]
    """The generated alternatives; the API returns one."""
    usage: Usage | None = None
    """Token counts, when the server reported them."""


class ChoiceDelta(_APIModel):
    """What one chunk adds to a choice: the role (first chunk) and a piece of content."""

    role: str | None = None
    """The author's role, sent in the first chunk of a choice only."""
    content: str | None = None
    """The next piece of text, if this chunk carries one."""


class ChunkChoice(_APIModel):
    """One choice's part of a stream chunk."""

    index: int
    """Which choice this piece belongs to."""
    delta: ChoiceDelta
    """What this chunk adds to the choice."""
    finish_reason: str | None = None
    """Set on the choice's last chunk: why generation stopped."""


class ChatCompletionChunk(_APIModel):
    """One server-sent event of a streamed completion (OpenAI's ``chat.completion.chunk``)."""

    id: str
    """The completion's identifier, the same on every chunk of a stream."""
    object: str = "chat.completion.chunk"
    """Always ``"chat.completion.chunk"``."""
    created: int
    """When the completion was created, in seconds since the Unix epoch."""
    model: str
    """The model generating it."""
    choices: list[ChunkChoice]
    """This chunk's pieces, one per choice; empty on a chunk that only reports usage."""
    usage: Usage | None = None
    """Token counts, on the last chunk when the server sends them."""
