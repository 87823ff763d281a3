"""Client-side limits: one shared rate-limit cooldown, a concurrency cap and per-minute budgets.

Why this exists: without it every task of an application retries its own 429 on its own
schedule, the server sees a herd of retries, and work beyond the connection pool fails with
pool timeouts instead of waiting its turn. Every attempt of every call of one client (and of
the copies `with_options` makes, which share its pool) passes through one `Limiter` before it
is sent:

1. the **concurrency cap** (``max_concurrency``): an attempt takes a slot and keeps it until its
   response is fully read, or, for a stream, until the stream is closed;
2. the **cooldown gate**: a 429 with ``Retry-After`` closes the gate for that long, for every
   request of the client, so that nobody sends into a rate limit the server has just reported
   (a wait beyond the retry ceiling is raised to the caller instead, and closes nothing);
3. the **per-minute budgets** (``requests_per_minute``, ``tokens_per_minute``): an attempt is
   admitted once the last sixty seconds leave room for it.

Waiting happens here, in anyio primitives, in front of the pool; nothing fails for having
waited. Slots and budgets are handed out first come, first served. Time is the event loop's
own clock (`anyio.current_time`), and waits are `anyio.sleep`, so under trio's ``MockClock``
no test sleeps for real.

The pieces that decide (`SlidingWindow`, `estimate_tokens`) are pure and take the time as an
argument; `Limiter` is the thin async layer that waits for them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import anyio
import httpx

__all__ = [
    "ClientStats",
    "Limiter",
    "Permit",
    "SlidingWindow",
    "estimate_tokens",
    "read_total_tokens",
]

WINDOW_SECONDS: Final = 60.0
"""The period the per-minute budgets count over."""

WINDOW_SLOTS: Final = 120
"""How finely the window is kept: 120 slots of half a second. What was admitted inside one slot
is forgotten when the slot's *end* leaves the window, up to half a second later than strictly
needed: the budget errs on the safe side, and memory stays at 120 counters whatever the rate."""

CHARS_PER_TOKEN: Final = 4
"""The usual rule of thumb for English text with BPE tokenizers (OpenAI documents it)."""

TOKENS_PER_MESSAGE: Final = 4
"""Framing each message costs beyond its content: role and separators."""

# Reading the total out of a JSON body or the last events of a stream without parsing it.
_TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
# A stream's usage chunk comes last, just before ``[DONE]``; this much of the tail holds it.
_STREAM_TAIL_BYTES: Final = 1024


@dataclasses.dataclass(frozen=True)
class ClientStats:
    """What a client's requests are doing right now: a snapshot from `AsyncCTGT.stats`.

    Attributes:
        in_flight: Attempts sent and not finished: a response being read, or a stream still
            open. Never more than ``max_concurrency`` when that is set.
        queued: Attempts waiting to be sent: for a concurrency slot, for the cooldown gate, or
            for room in a per-minute budget.
        cooldown_remaining: Seconds until the cooldown gate opens again; ``0.0`` when open.
        rate_limited: How many 429 responses this client has received so far.
    """

    in_flight: int
    queued: int
    cooldown_remaining: float
    rate_limited: int


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """What a request will cost against ``tokens_per_minute``, before it is sent.

    The prompt is estimated at one token per four characters of message content (rounded up)
    plus four per message, and ``max_tokens`` (or ``max_completion_tokens``) is added when the
    body sets it, because the server reserves that much. Without it the answer's length is
    unknown; the charge is corrected with the response's ``usage.total_tokens`` once it
    arrives, so the estimate only decides when a request may start.
    """
    tokens = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            length = len(content) if isinstance(content, str) else 0
            tokens += TOKENS_PER_MESSAGE + -(-length // CHARS_PER_TOKEN)
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            tokens += value
            break
    return max(tokens, 1)


def read_total_tokens(data: bytes) -> int | None:
    """The last ``"total_tokens": N`` in a response body or stream tail, if there is one."""
    found = _TOTAL_TOKENS.findall(data)
    return int(found[-1]) if found else None


class _Slot:
    __slots__ = ("amount", "index", "live")

    def __init__(self, index: int) -> None:
        self.index = index
        self.amount = 0
        self.live = True


class SlidingWindow:
    """How much was admitted during the last ``period`` seconds, against a ``limit``.

    Pure bookkeeping: every method takes the current time. Amounts are kept in ``slots`` equal
    slots; an amount counts until the end of its slot has left the window, so the total over
    any ``period`` seconds never exceeds ``limit`` (an amount larger than ``limit`` on its own
    is admitted alone, once the window is empty, rather than never).
    """

    def __init__(
        self, limit: int, *, period: float = WINDOW_SECONDS, slots: int = WINDOW_SLOTS
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self.limit = limit
        self._period = period
        self._width = period / slots
        self._slots: deque[_Slot] = deque()
        self._total = 0

    @property
    def total(self) -> int:
        """What the window holds, as of the last call that was given the time."""
        return self._total

    def _expiry(self, slot: _Slot) -> float:
        return (slot.index + 1) * self._width + self._period

    def _expire(self, now: float) -> None:
        slots = self._slots
        while slots and self._expiry(slots[0]) <= now:
            slot = slots.popleft()
            slot.live = False
            self._total -= slot.amount

    def delay(self, now: float, amount: int) -> float:
        """Seconds from ``now`` until ``amount`` fits in the window; ``0.0`` if it fits now."""
        self._expire(now)
        if self._total == 0 or self._total + amount <= self.limit:
            return 0.0
        # Free the oldest slots until enough has left; an oversize amount waits for all of it.
        excess = min(self._total + amount - self.limit, self._total)
        freed = 0
        for slot in self._slots:
            freed += slot.amount
            if freed >= excess:
                return self._expiry(slot) - now
        return self._expiry(self._slots[-1]) - now  # pragma: no cover (excess <= total)

    def add(self, now: float, amount: int) -> _Slot:
        """Count ``amount`` as admitted at ``now``; the slot returned lets `adjust` correct it."""
        index = math.floor(now / self._width)
        slots = self._slots
        if slots and slots[-1].index >= index:
            slot = slots[-1]
        else:
            slot = _Slot(index)
            slots.append(slot)
        slot.amount += amount
        self._total += amount
        return slot

    def adjust(self, slot: _Slot, change: int) -> None:
        """Correct an earlier `add` by ``change``; nothing to do once its slot has expired."""
        if slot.live:
            change = max(change, -slot.amount)
            slot.amount += change
            self._total += change


class Permit:
    """One admitted attempt: release it when its response is done with.

    `release` is synchronous and idempotent, so it can run from ``finally`` blocks, from a
    response's ``aclose`` and from a cancelled task alike.
    """

    __slots__ = ("_charge", "_cost", "_limiter", "_released")

    def __init__(self, limiter: Limiter, cost: int, charge: _Slot | None) -> None:
        self._limiter = limiter
        self._cost = cost
        self._charge = charge
        self._released = False

    def settle(self, total_tokens: int | None) -> None:
        """Replace the token estimate with what the response says it cost."""
        if total_tokens is not None and self._charge is not None:
            tokens = self._limiter._tokens
            assert tokens is not None
            tokens.adjust(self._charge, total_tokens - self._cost)
            self._charge = None

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release()

    def attach(self, response: httpx.Response) -> None:
        """Keep the permit until ``response`` (an open stream) is closed, then release it."""
        body = response.stream
        assert isinstance(body, httpx.AsyncByteStream)  # an AsyncClient's response
        response.stream = _PermitStream(body, self, keep_tail=self._charge is not None)


class _PermitStream(httpx.AsyncByteStream):
    """A response body that releases its permit when closed, and reads its usage on the way.

    The stream object is what every path that ends a response closes (the end of a stream,
    an error, ``close()``, a cancelled task), so hanging the release here needs no cooperation
    from the code that reads the body. It is an iterator object, not an async generator, so
    that a body abandoned half-way leaves no generator for the garbage collector to finalize.
    """

    def __init__(self, inner: httpx.AsyncByteStream, permit: Permit, *, keep_tail: bool) -> None:
        self._inner = inner
        self._iterator: AsyncIterator[bytes] | None = None
        self._permit = permit
        self._keep_tail = keep_tail
        self._tail = b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._inner.__aiter__()
        piece = await self._iterator.__anext__()
        if self._keep_tail:
            self._tail = (self._tail + piece)[-_STREAM_TAIL_BYTES:]
        return piece

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._keep_tail:
                self._permit.settle(read_total_tokens(self._tail))
            self._permit.release()


class Limiter:
    """The gate, the slots and the budgets shared by every request of one client.

    Args:
        max_concurrency: Attempts in flight at once; ``None``: no cap.
        requests_per_minute: Attempts admitted in any sixty seconds; ``None``: no budget.
        tokens_per_minute: Estimated tokens admitted in any sixty seconds; ``None``: no budget.
        clock: Current time in seconds; the default is the event loop's clock.
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._slots = anyio.Semaphore(max_concurrency) if max_concurrency else None
        self._requests = SlidingWindow(requests_per_minute) if requests_per_minute else None
        self._tokens = SlidingWindow(tokens_per_minute) if tokens_per_minute else None
        self._budgets = self._requests is not None or self._tokens is not None
        # Admission through the budgets is one at a time, in arrival order (anyio's Lock is
        # fair), so a waiter that was first is not overtaken when room appears.
        self._admission = anyio.Lock()
        self._open_at = -math.inf
        self._in_flight = 0
        self._queued = 0
        self._rate_limited = 0
        self._listeners: list[Callable[[float | None], None]] = []

    @property
    def counts_tokens(self) -> bool:
        """Whether requests need a token estimate (a ``tokens_per_minute`` budget is set)."""
        return self._tokens is not None

    def stats(self) -> ClientStats:
        remaining = self._open_at - self._clock() if self._open_at > -math.inf else 0.0
        return ClientStats(
            in_flight=self._in_flight,
            queued=self._queued,
            cooldown_remaining=max(remaining, 0.0),
            rate_limited=self._rate_limited,
        )

    async def acquire(self, cost: int = 1) -> Permit:
        """Wait for a slot, the gate and the budgets; return the permit to send one attempt."""
        if self._slots is None and not self._budgets and self._open_at <= self._clock():
            # Nothing to wait for, the common case: a few comparisons and no await.
            self._in_flight += 1
            return Permit(self, cost, None)
        self._queued += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                charge = await self._admit(cost)
            except BaseException:
                if self._slots is not None:
                    self._slots.release()
                raise
        finally:
            self._queued -= 1
        self._in_flight += 1
        return Permit(self, cost, charge)

    async def _admit(self, cost: int) -> _Slot | None:
        if not self._budgets:
            await self._wait_for_gate()
            return None
        async with self._admission:
            while True:
                now = self._clock()
                wait = self._open_at - now
                if self._requests is not None:
                    wait = max(wait, self._requests.delay(now, 1))
                if self._tokens is not None:
                    wait = max(wait, self._tokens.delay(now, cost))
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            if self._requests is not None:
                self._requests.add(now, 1)
            return self._tokens.add(now, cost) if self._tokens is not None else None

    async def _wait_for_gate(self) -> None:
        # Sleep until the opening; again if another 429 pushed it further meanwhile.
        while True:
            wait = self._open_at - self._clock()
            if wait <= 0:
                return
            await anyio.sleep(wait)

    def _release(self) -> None:
        self._in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def rate_limited(self, retry_after: float | None) -> None:
        """Record a 429; with a ``Retry-After`` of ``retry_after`` seconds, close the gate.

        The gate only ever closes further: two 429s in a row leave it closed until the later
        of their two ends. Listeners (a batch adapting its concurrency) hear of every 429.
        """
        self._rate_limited += 1
        if retry_after is not None and retry_after > 0:
            self._open_at = max(self._open_at, self._clock() + retry_after)
        for listener in tuple(self._listeners):
            listener(retry_after)

    def add_listener(self, listener: Callable[[float | None], None]) -> Callable[[], None]:
        """Call ``listener(retry_after)`` on every 429 until the returned function is called."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove
