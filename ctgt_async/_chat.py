"""``client.chat.completions.create``: the one endpoint, typed by its ``stream`` argument."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, overload

import pydantic

from ._config import NOT_GIVEN, NotGiven
from ._errors import APIResponseValidationError
from ._models import ChatCompletion, ChatCompletionChunk
from ._request import build_chat_completion_body
from ._streaming import AsyncStream

if TYPE_CHECKING:
    from ._client import AsyncCTGT
    from ._types import MessageInput, Persona, TimeoutTypes

__all__ = ["Chat", "ChatCompletions"]


class ChatCompletions:
    """The ``chat.completions`` resource: ``await client.chat.completions.create(...)``."""

    def __init__(self, client: AsyncCTGT) -> None:
        self._client = client

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageInput],
        persona: Persona | NotGiven | None = NOT_GIVEN,
        temperature: float | NotGiven | None = NOT_GIVEN,
        stream: Literal[False] | NotGiven = NOT_GIVEN,
        user: str | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageInput],
        persona: Persona | NotGiven | None = NOT_GIVEN,
        temperature: float | NotGiven | None = NOT_GIVEN,
        stream: Literal[True],
        user: str | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncStream[ChatCompletionChunk]: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageInput],
        persona: Persona | NotGiven | None = NOT_GIVEN,
        temperature: float | NotGiven | None = NOT_GIVEN,
        stream: bool,
        user: str | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageInput],
        persona: Persona | NotGiven | None = NOT_GIVEN,
        temperature: float | NotGiven | None = NOT_GIVEN,
        stream: bool | NotGiven = NOT_GIVEN,
        user: str | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Create a chat completion, or with ``stream=True`` stream it as it is generated.

        Every argument is checked before anything is sent: a bad one raises
        `InvalidArgumentError` naming it. Arguments left out are not sent, so the server
        applies its own defaults.

        Args:
            model: The model, for example ``"gemini-2.5-flash-lite"``.
            messages: The conversation so far: dicts with ``role`` and ``content``, or
                `ChatMessage` objects.
            persona: One of the documented personas (``default``, ``technical_expert``,
                ``creative_writer``, ``educator``, ``safety_first``) or any other name the
                server knows.
            temperature: Randomness from 0 to 2 (server default 1).
            stream: ``True`` returns an `AsyncStream` of `ChatCompletionChunk` as soon as the
                response headers arrive; errors and retries happen before that.
            user: Your identifier for the end user, for abuse monitoring.
            extra_headers: Headers for this call only; a ``None`` value removes a header the
                client would send (``Idempotency-Key`` is generated per call; override it here).
            extra_body: Fields merged into the JSON body as given, for parameters this SDK
                does not model yet (for example ``stream_options``).
            timeout: Per-attempt timeout for this call, instead of the client's.
            total_timeout: Limit on this call including retries, instead of the client's.

        Returns:
            A `ChatCompletion`, or with ``stream=True`` an `AsyncStream[ChatCompletionChunk]`.

        Raises:
            InvalidArgumentError: An argument is invalid (nothing was sent).
            APIStatusError: The server answered with an error status, after any retries.
            APIConnectionError: The server could not be reached, after any retries.
            APIResponseValidationError: The server's answer is not a valid completion.
        """
        body = build_chat_completion_body(
            model=model,
            messages=messages,
            persona=persona,
            temperature=temperature,
            stream=stream,
            user=user,
            extra_body=extra_body,
        )
        is_stream = stream is True
        client = self._client
        response = await client._post(
            "chat/completions",
            body,
            stream=is_stream,
            extra_headers=extra_headers,
            timeout=timeout,
            total_timeout=total_timeout,
        )
        if is_stream:
            return await AsyncStream._open(response, ChatCompletionChunk, client._stream_options)
        try:
            return ChatCompletion.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise APIResponseValidationError(
                "The response is not a valid chat completion: "
                f"{exc.error_count()} problem(s), first at "
                f"{'.'.join(map(str, exc.errors()[0]['loc'])) or 'the top level'}: "
                f"{exc.errors()[0]['msg']}.",
                response=response,
                body=response.text[:500],
            ) from exc


class Chat:
    """The ``chat`` namespace of the client."""

    def __init__(self, client: AsyncCTGT) -> None:
        self.completions = ChatCompletions(client)
