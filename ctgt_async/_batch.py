"""Batches: many chat completions at bounded concurrency, results as they complete.

``client.batch(requests)`` returns a `Batch`, used as ``async with ... as results`` and
iterated with ``async for``. How it runs:

* One **worker** task per slot of ``concurrency``, in an anyio task group, takes the next
  request from the input (an iterable or an async iterable, which may be endless) when there
  is room to start it, sends it, and hands its `BatchResult` to the ``async for`` through a
  memory object stream without a buffer. So the batch holds only what is in flight, however
  large the input, and a reader slower than the requests slows them down instead of letting
  results pile up. A failed request is a result carrying its typed error: it never stops the
  others.
* The concurrency limit adapts (unless ``adaptive=False``): halved when the client sees a 429,
  at most once per cooldown, then raised by one after each run of that many requests without
  one, back up to the ``concurrency`` asked for. This is additive increase, multiplicative
  decrease, the rule TCP uses to share a link: it backs off fast and probes back slowly.
* With ``ordered=True`` results come out in input order. A result that finishes early waits
  in a reorder buffer; no request starts more than ``reorder_window`` places after the
  earliest one not yet delivered, which bounds the buffer to ``reorder_window`` results.

Leaving the ``async with`` block (after a ``break``, an exception or a cancellation) cancels
the requests still running and waits for their tasks, so no task outlives the block. The
batch cannot be iterated outside the block: an iterator abandoned half-way would leave its
tasks running with nobody to stop them, so the context manager is required, not optional.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypedDict

import anyio

from ._config import NotGiven
from ._errors import CTGTError, InvalidArgumentError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._limits import Limiter
    from ._models import ChatCompletion
    from ._types import MessageInput, Persona, TimeoutTypes

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Batch",
    "BatchInput",
    "BatchProgress",
    "BatchRequest",
    "BatchResult",
    "ChatCompletionParams",
]

DEFAULT_CONCURRENCY: Final = 32
"""Enough requests at once to keep a rate limit of a few thousand requests a minute busy with
answers of a second or two, without opening with a burst that trips one."""

REORDER_WINDOW_FACTOR: Final = 4
"""In input order, requests may run this many times ``concurrency`` ahead of the earliest one
not yet delivered, so that one slow request does not stall the batch at once."""


class _RequiredParams(TypedDict):
    model: str
    messages: Iterable[MessageInput]


class ChatCompletionParams(_RequiredParams, total=False):
    """The keyword arguments of ``client.chat.completions.create``, as one dictionary.

    ``model`` and ``messages`` are required. With ``stream: True`` the batch streams the
    answer (which keeps long answers from hitting a read timeout) and assembles the whole
    `ChatCompletion` from it.
    """

    persona: Persona | None
    temperature: float | None
    stream: bool
    user: str | None
    extra_headers: Mapping[str, str | None] | None
    extra_body: Mapping[str, object] | None
    timeout: TimeoutTypes | NotGiven
    total_timeout: float | NotGiven | None


_PARAM_NAMES: Final = (
    ChatCompletionParams.__required_keys__ | ChatCompletionParams.__optional_keys__
)


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    """A request of a batch with your own id on it, carried over to its result.

    Attributes:
        id: Your identifier, for example a database key or a ``custom_id``.
        params: The arguments of ``client.chat.completions.create``.
    """

    id: str
    params: ChatCompletionParams


BatchInput = ChatCompletionParams | BatchRequest
"""One request of a batch: the arguments of ``create`` as a dictionary, or a `BatchRequest`."""


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """How one request of a batch ended: with a completion or with an error, never both.

    Attributes:
        index: The request's position in the input, from 0.
        id: The `BatchRequest.id`, or ``None`` for a request given as a plain dictionary.
        completion: The answer, when the request succeeded.
        error: Why it failed, when it did: an `APIError` (after the client's retries) or an
            `InvalidArgumentError` for a request that could not be sent.
    """

    index: int
    id: str | None
    completion: ChatCompletion | None = None
    error: CTGTError | None = None

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.error is None

    def unwrap(self) -> ChatCompletion:
        """The completion, or the error raised."""
        if self.error is not None:
            raise self.error
        assert self.completion is not None
        return self.completion


@dataclasses.dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands, as given to ``on_progress`` after each result.

    Attributes:
        total: How many requests the input holds, when known (a sized input, or ``total=``).
        started: Requests sent so far (taken from the input).
        succeeded: Results delivered with a completion.
        failed: Results delivered with an error.
        concurrency: The current concurrency limit (lower than asked while backing off).
        elapsed: Seconds since the batch started.
    """

    total: int | None
    started: int
    succeeded: int
    failed: int
    concurrency: int
    elapsed: float

    @property
    def done(self) -> int:
        """Results delivered so far."""
        return self.succeeded + self.failed

    @property
    def in_flight(self) -> int:
        """Requests started and not delivered yet."""
        return self.started - self.done

    @property
    def rate(self) -> float:
        """Results per second since the start."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, when the total is known and results have come."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate


class _Concurrency:
    """The adaptive limit: additive increase, multiplicative decrease.

    A 429 halves the limit, then further 429s are ignored until the cooldown the server asked
    for (or, without one, a typical request's duration) has passed, since the requests that
    were already in flight report the same congestion and must not halve it again. Once the
    hold is over, every ``limit`` results in a row without a 429 raise it by one.
    """

    def __init__(self, maximum: int, *, adaptive: bool, clock: Callable[[], float]) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.adaptive = adaptive
        self._clock = clock
        self._hold_until = -math.inf
        self._clean = 0
        self._typical_duration = 0.0

    def rate_limited(self, retry_after: float | None) -> None:
        now = self._clock()
        self._clean = 0
        if now < self._hold_until:
            return
        self.limit = max(1, self.limit // 2)
        self._hold_until = now + max(retry_after or 0.0, self._typical_duration)

    def finished(self, duration: float) -> None:
        """Count a result that took ``duration`` seconds."""
        # A moving average that forgets over a few dozen results.
        self._typical_duration += (duration - self._typical_duration) * 0.05
        if self.limit >= self.maximum or self._clock() < self._hold_until:
            return
        self._clean += 1
        if self._clean >= self.limit:
            self._clean = 0
            self.limit += 1


class Batch:
    """A running batch: enter it with ``async with``, then iterate its results.

    Made by `AsyncCTGT.batch`; see there for the arguments. ::

        async with client.batch(requests, concurrency=32) as results:
            async for result in results:
                ...
    """

    def __init__(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        call: Callable[[ChatCompletionParams], Awaitable[ChatCompletion]],
        limiter: Limiter | None,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        reorder_window: int | None = None,
        adaptive: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        total: int | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        _check_count("concurrency", concurrency)
        if reorder_window is None:
            reorder_window = REORDER_WINDOW_FACTOR * concurrency
        _check_count("reorder_window", reorder_window)
        if total is None and isinstance(requests, Sized):
            total = len(requests)
        elif total is not None:
            _check_count("total", total, minimum=0)
        if not isinstance(requests, (Iterable, AsyncIterable)):
            raise InvalidArgumentError(
                "requests", f"must be an iterable or async iterable, got {type(requests).__name__}"
            )
        self._requests = requests
        self._call = call
        self._limiter = limiter
        self._ordered = ordered
        self._window = reorder_window
        self._on_progress = on_progress
        self._total = total
        self._clock = clock
        self._concurrency = _Concurrency(concurrency, adaptive=adaptive, clock=clock)
        self._state = "new"
        self._group: TaskGroup | None = None
        self._send: MemoryObjectSendStream[BatchResult] | None = None
        self._receive: MemoryObjectReceiveStream[BatchResult] | None = None
        self._stop_listening: Callable[[], None] | None = None
        self._input_error: Exception | None = None
        self._room: anyio.Event | None = None
        self._iterator: Iterator[BatchInput] | AsyncIterator[BatchInput] = (
            requests.__aiter__() if isinstance(requests, AsyncIterable) else iter(requests)
        )
        self._pull_lock = anyio.Lock() if isinstance(requests, AsyncIterable) else None
        self._exhausted = False
        self._running = 0
        self._started = 0
        self._succeeded = 0
        self._failed = 0
        self._next_index = 0
        self._reorder: dict[int, BatchResult] = {}
        self._start_time = 0.0
        self._end_time = 0.0

    # -- observing -----------------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        """The current concurrency limit."""
        return self._concurrency.limit

    @property
    def progress(self) -> BatchProgress:
        """Where the batch stands now."""
        return BatchProgress(
            total=self._total,
            started=self._started,
            succeeded=self._succeeded,
            failed=self._failed,
            concurrency=self._concurrency.limit,
            elapsed=self._elapsed(),
        )

    def _elapsed(self) -> float:
        if self._state == "new":
            return 0.0
        end = self._end_time if self._state == "closed" else self._clock()
        return end - self._start_time

    def __repr__(self) -> str:
        progress = self.progress
        return (
            f"<Batch {self._state} done={progress.done} failed={progress.failed} "
            f"in_flight={progress.in_flight} concurrency={progress.concurrency}>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Batch:
        if self._state != "new":
            raise RuntimeError("a Batch can only be entered once; make a new one")
        self._state = "running"
        self._start_time = self._clock()
        # No buffer: a finished request keeps its slot until its result is handed over, so a
        # slow reader slows the batch down instead of letting results pile up.
        self._send, self._receive = anyio.create_memory_object_stream[BatchResult](0)
        if self._concurrency.adaptive and self._limiter is not None:
            self._stop_listening = self._limiter.add_listener(self._rate_limited)
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._run_workers, name="ctgt-batch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        self._state = "closed"
        self._end_time = self._clock()
        if self._stop_listening is not None:
            self._stop_listening()
        try:
            if group is None:
                return
            # When the results were all read this cancels nothing; after an early exit it
            # stops the requests still running, and their results are not delivered.
            group.cancel_scope.cancel()
            # The exception leaving the block (the caller's own, or the input's error raised
            # by `__anext__`) is not handed to the group, which would wrap it in an exception
            # group: it propagates as it is. A failure of the batch's own tasks still does.
            await group.__aexit__(None, None, None)
        finally:
            if self._receive is not None:
                self._receive.close()

    # -- iterating -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        return self

    async def __anext__(self) -> BatchResult:
        receive = self._receive
        if self._state != "running" or receive is None:
            raise RuntimeError(
                "iterate a batch inside its block: `async with client.batch(...) as results: "
                "async for result in results: ...`, so that leaving early stops its requests"
            )
        try:
            if self._ordered:
                result = self._reorder.pop(self._next_index, None)
                while result is None:
                    arrived = await _receive(receive)
                    if arrived.index == self._next_index:
                        result = arrived
                    else:
                        self._reorder[arrived.index] = arrived
                self._next_index += 1
                self._wake()
            else:
                result = await _receive(receive)
        except anyio.EndOfStream:
            error, self._input_error = self._input_error, None
            if error is not None:
                raise error from None
            raise StopAsyncIteration from None
        if result.error is None:
            self._succeeded += 1
        else:
            self._failed += 1
        if self._on_progress is not None:
            self._on_progress(self.progress)
        return result

    # -- running -------------------------------------------------------------------------

    def _rate_limited(self, retry_after: float | None) -> None:
        self._concurrency.rate_limited(retry_after)

    def _wake(self) -> None:
        """Let the workers waiting for room look again."""
        room, self._room = self._room, None
        if room is not None:
            room.set()

    def _has_room(self, index: int) -> bool:
        if self._running >= self._concurrency.limit:
            return False
        return not self._ordered or index < self._next_index + self._window

    async def _run_workers(self) -> None:
        """Run one worker per slot; close the results stream when the last one is done."""
        send = self._send
        assert send is not None
        try:
            async with send, anyio.create_task_group() as workers:
                for _ in range(self._concurrency.maximum):
                    workers.start_soon(self._work)
        finally:
            if not self._exhausted:
                await _close_iterator(self._iterator)

    async def _work(self) -> None:
        send = self._send
        assert send is not None
        while (taken := await self._take()) is not None:
            index, item = taken
            started = self._clock()
            if isinstance(item, BatchRequest):
                request_id: str | None = item.id
                params: object = item.params
            else:
                request_id, params = None, item
            try:
                completion = await self._call(_checked(index, params))
                result = BatchResult(index, request_id, completion=completion)
            except CTGTError as error:
                result = BatchResult(index, request_id, error=error)
            self._concurrency.finished(self._clock() - started)
            try:
                # The slot is given up once the result is handed over, not before: a slow
                # reader holds the batch back instead of letting results pile up. A reader
                # already waiting takes it at once, without a trip through the event loop.
                try:
                    send.send_nowait(result)
                except anyio.WouldBlock:
                    await send.send(result)
            finally:
                self._running -= 1
                self._wake()

    async def _take(self) -> tuple[int, BatchInput] | None:
        """The next request and its index once there is room for it; ``None`` at the end."""
        if self._pull_lock is None:
            # A plain iterator: checking for room and taking the item involve no await, so
            # no other worker can come in between.
            return await self._take_next()
        # An async iterator can serve one `__anext__` at a time.
        async with self._pull_lock:
            return await self._take_next()

    async def _take_next(self) -> tuple[int, BatchInput] | None:
        while not self._exhausted and not self._has_room(self._started):
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        if self._exhausted:
            return None
        iterator = self._iterator
        try:
            if isinstance(iterator, AsyncIterator):
                item = await iterator.__anext__()
            else:
                item = next(iterator)
        except (StopIteration, StopAsyncIteration):
            self._stop_taking(None)
            return None
        except Exception as error:
            # The input itself failed: deliver what is running, then raise it.
            self._stop_taking(error)
            return None
        index = self._started
        self._started += 1
        self._running += 1
        return index, item

    def _stop_taking(self, error: Exception | None) -> None:
        self._exhausted = True
        self._input_error = error
        self._wake()


async def _receive(receive: MemoryObjectReceiveStream[BatchResult]) -> BatchResult:
    """The next result: from a worker already waiting to hand it over, or when one comes."""
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        return await receive.receive()


def _checked(index: int, params: object) -> ChatCompletionParams:
    """The request's arguments, or `InvalidArgumentError` naming the request and the key."""
    where = f"requests[{index}]"
    if not isinstance(params, Mapping):
        raise InvalidArgumentError(
            where,
            "must be a dict of chat.completions.create arguments or a BatchRequest, "
            f"got {type(params).__name__}",
        )
    for key in params:
        if key not in _PARAM_NAMES:
            raise InvalidArgumentError(
                f"{where}.{key}",
                "is not an argument of chat.completions.create; "
                "put fields the SDK does not model in extra_body",
            )
    stream = params.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidArgumentError(f"{where}.stream", f"must be True or False, got {stream!r}")
    return params  # type: ignore[return-value]  # the keys were checked just above


def _check_count(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(name, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(name, f"must be at least {minimum}, got {value}")


async def _close_iterator(iterator: Iterator[Any] | AsyncIterator[Any]) -> None:
    """Close a generator the batch stopped early, so its ``finally`` blocks run now."""
    with anyio.CancelScope(shield=True):
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
