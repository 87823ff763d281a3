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
    model_config = ConfigDict(extra="allow")


class Usage(_APIModel):
    """Token counts for one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessage(_APIModel):
    """One message: a reply's, or one you send back as conversation history."""

    role: str
    content: str | None = None


class Choice(_APIModel):
    """One generated alternative of a completion."""

    index: int
    message: ChatMessage
    finish_reason: str | None = None


class ChatCompletion(_APIModel):
    """The reply to a non-streaming call, or the one assembled from a stream.

    ``usage`` is ``None`` only for a stream whose server did not report it.
    """

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ChoiceDelta(_APIModel):
    """What one chunk adds to a choice: the role (first chunk) and a piece of content."""

    role: str | None = None
    content: str | None = None


class ChunkChoice(_APIModel):
    """One choice's part of a stream chunk."""

    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None


class ChatCompletionChunk(_APIModel):
    """One server-sent event of a streamed completion (OpenAI's ``chat.completion.chunk``)."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
