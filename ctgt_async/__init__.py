"""ctgt-async: the async-first Python SDK for the CTGT chat completions API.

Everything public is importable from here; the modules behind it are private.
"""

from ._batch import (
    Batch,
    BatchInput,
    BatchProgress,
    BatchRequest,
    BatchResult,
    ChatCompletionParams,
)
from ._client import AsyncCTGT
from ._config import NOT_GIVEN, NotGiven
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CTGTError,
    InternalServerError,
    InvalidArgumentError,
    MissingAPIKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    StreamDecodeError,
    StreamInterruptedError,
    UnprocessableEntityError,
)
from ._limits import ClientStats
from ._models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Usage,
)
from ._streaming import AsyncStream
from ._types import KnownPersona, MessageParam, Persona, TimeoutTypes
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncCTGT",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchInput",
    "BatchProgress",
    "BatchRequest",
    "BatchResult",
    "CTGTError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionParams",
    "ChatMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "ClientStats",
    "InternalServerError",
    "InvalidArgumentError",
    "KnownPersona",
    "MessageParam",
    "MissingAPIKeyError",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "Persona",
    "RateLimitError",
    "StreamDecodeError",
    "StreamInterruptedError",
    "TimeoutTypes",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
]

# Show the public path in reprs, tracebacks and generated docs: ``ctgt_async.AsyncCTGT``,
# not ``ctgt_async._client.AsyncCTGT``.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("ctgt_async._"):
        _obj.__module__ = __name__
del _name, _obj
