"""An incremental Server-Sent Events decoder that does no I/O.

Streamed completions arrive as a ``text/event-stream`` body cut into arbitrary pieces by the
network. This module turns those pieces back into events, following the WHATWG rules for
interpreting an event stream:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

It is sans-IO on purpose: it never touches a socket, so the streaming layer owns the response
and its errors, and every rule here can be tested by feeding hand-built bytes, split anywhere.

It is also the hot path of token streaming, where each event carries a few characters, so it
works on bytes with C-level methods (``splitlines``, ``partition``) and decodes UTF-8 once per
event rather than once per chunk. That gives the same text as the spec's "decode the whole
stream, then split it into lines": a line end is an ASCII byte, never part of a multi-byte
character, so a character cut short by a line end is replaced by the same U+FFFD either way.

Choices where the spec leaves room, or where this decoder has to say something it does not:

* End of input: the spec only knows terminated lines and says "any pending data must be
  discarded". So an unterminated final line is not processed at all (an unterminated
  ``retry:`` does not change `SSEDecoder.retry`), and the event it belongs to, unfinished
  because no blank line followed, is dropped. `SSEDecoder.end` therefore always returns an
  empty list; `SSEDecoder.has_pending` tells a stream cut inside an event from a clean end.
* A ``\\r`` ending a chunk ends its line at once, without waiting to see whether a ``\\n``
  follows, so an event ending in ``\\r\\r`` comes out of the chunk that completes it. A ``\\n``
  opening the next chunk is then taken as the second half of that ``\\r\\n``.
* `ServerSentEvent.id` is the spec's ``lastEventId``: it persists from event to event until
  the server sends another ``id``. ``None`` stands for the spec's empty string, meaning there
  is no id to resume from (the case in which a browser sends no ``Last-Event-ID``).
* `ServerSentEvent.retry` is the ``retry`` value sent in that event's own block, if any.
  `SSEDecoder.retry` is the spec's reconnection time, which also picks up ``retry`` fields in
  blocks that dispatch nothing. An empty ``retry`` value, or one with more digits than `int`
  converts, is ignored.
* An event is "oversize" when its buffered data plus the line being read exceed
  ``max_event_size`` bytes. Lines that buffer nothing (comments, ``event``, ``id``) count
  while they are read, so a line longer than the limit fails whatever it holds; the verdict
  never depends on where the chunks were cut.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecodeError", "SSEDecoder", "ServerSentEvent"]

# A streamed chunk is a few hundred bytes, and even a whole completion sent as one event stays
# far below a mebibyte; a server holding more than that in one event is broken or hostile.
# The cap keeps one bad stream from growing the process's memory without bound.
DEFAULT_MAX_EVENT_SIZE: Final = 1_048_576

_BOM: Final = b"\xef\xbb\xbf"
_LF: Final = 0x0A
_CR: Final = 0x0D


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event, its fields meaning what the module docs say."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


# The slot setters of ServerSentEvent. A frozen dataclass's __init__ goes through
# object.__setattr__ once per field, which made it the most expensive step of decoding an
# event; writing the slots directly takes half the time and builds an identical object.
_set_event: Callable[[ServerSentEvent, Any], None] = ServerSentEvent.__dict__["event"].__set__
_set_data: Callable[[ServerSentEvent, Any], None] = ServerSentEvent.__dict__["data"].__set__
_set_id: Callable[[ServerSentEvent, Any], None] = ServerSentEvent.__dict__["id"].__set__
_set_retry: Callable[[ServerSentEvent, Any], None] = ServerSentEvent.__dict__["retry"].__set__


def _make_event(
    event_type: str, data: bytes, last_event_id: str | None, retry: int | None
) -> ServerSentEvent:
    event: ServerSentEvent = object.__new__(ServerSentEvent)
    _set_event(event, event_type)
    _set_data(event, data.decode("utf-8", "replace"))
    _set_id(event, last_event_id)
    _set_retry(event, retry)
    return event


class SSEDecodeError(ValueError):
    """The server sent an event larger than the decoder agreed to hold in memory."""


class SSEDecoder:
    """Turns the pieces of one event stream into events, each as soon as it is complete.

    Give every piece of the body to `feed`, then call `end` once the body is exhausted.
    After an `SSEDecodeError` the rest of the stream cannot be trusted: drop it.
    """

    __slots__ = (
        "_after_cr",
        "_block_dirty",
        "_block_retry",
        "_bom_head",
        "_data",
        "_data_size",
        "_event_type",
        "_id_buffer",
        "_last_event_id",
        "_line_parts",
        "_line_size",
        "_max_event_size",
        "_retry",
        "_started",
    )

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if type(max_event_size) is not int or max_event_size <= 0:
            raise ValueError(f"max_event_size must be a positive int, got {max_event_size!r}")
        self._max_event_size = max_event_size
        # Whether the stream's first bytes were checked for a byte order mark. Until three
        # bytes have come, the ones that may start a BOM wait in `_bom_head`.
        self._started = False
        self._bom_head = b""
        # The last chunk ended in "\r", so a "\n" opening the next one completes that line end.
        self._after_cr = False
        # The line not terminated yet, kept in pieces so that a long line costs linear time.
        self._line_parts: list[bytes] = []
        self._line_size = 0
        # The event being assembled: its data lines, joined only at dispatch, and the size the
        # spec's data buffer would have (each line plus its "\n").
        self._data: list[bytes] = []
        self._data_size = 0
        # Set by an event, id or retry field, so that data-only events skip resetting them.
        self._block_dirty = False
        self._event_type = ""
        self._block_retry: int | None = None
        # The spec's last event ID buffer, and the string it is copied to at each dispatch.
        self._id_buffer: str | None = None
        self._last_event_id: str | None = None
        self._retry: int | None = None

    @property
    def has_pending(self) -> bool:
        """Whether the input so far stops inside an event or inside a line.

        True at the end of input means the stream was cut short and its last event is lost.
        """
        return bool(self._line_parts or self._bom_head or self._data or self._block_dirty)

    @property
    def last_event_id(self) -> str | None:
        """The id to resume from (the spec's last event ID string); ``None`` if there is none."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time, in milliseconds, the server last asked for, if it asked."""
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next piece of the body; return the events it completes, often none.

        Raises `SSEDecodeError` as soon as one event needs more than ``max_event_size`` bytes;
        events completed earlier in the same piece are then not returned.
        """
        # A piece holding exactly one "data: ..." line and its blank line is how nearly every
        # completion chunk arrives; when nothing is buffered, it skips the general path.
        if (
            chunk.endswith(b"\n\n")
            and chunk.startswith(b"data: ")
            and self._started
            and not (self._line_parts or self._data or self._block_dirty)
            and len(chunk) <= self._max_event_size
        ):
            lines = chunk.splitlines()
            if len(lines) == 2:
                self._after_cr = False
                return [_make_event("message", lines[0][6:], self._id_buffer, None)]

        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if not self._started:
            chunk = self._skip_bom(chunk)
            if not chunk:
                return []
        if self._line_parts:
            if b"\n" not in chunk and b"\r" not in chunk:
                # Still inside the same line: keep the piece without copying the earlier ones.
                self._line_parts.append(chunk)
                self._line_size += len(chunk)
                self._check_pending_line()
                return []
            self._line_parts.append(chunk)
            chunk = b"".join(self._line_parts)
            self._line_parts = []
            self._line_size = 0

        lines = chunk.splitlines()
        last = chunk[-1]
        tail = b""
        if last == _CR:
            self._after_cr = True
        elif last != _LF:
            tail = lines.pop()
        # No line of this chunk can overflow if the whole chunk fits beside the data already
        # held, which is the usual case; only otherwise is every line measured.
        if self._data_size + len(chunk) > self._max_event_size:
            events = self._process_checked(lines)
        else:
            events = self._process(lines)
        if tail:
            self._line_parts = [tail]
            self._line_size = len(tail)
            self._check_pending_line()
        return events

    def end(self) -> list[ServerSentEvent]:
        """Mark the end of the input, discarding an unfinished event as the spec requires.

        Always returns an empty list (see the module docs). The decoder is then ready for a
        new stream, such as the one a reconnection opens; `last_event_id` and `retry` carry
        over, as they do in a browser's ``EventSource``.
        """
        self._discard()
        self._started = False
        self._after_cr = False
        return []

    def _skip_bom(self, chunk: bytes) -> bytes:
        head = self._bom_head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_head = head
            return b""
        self._started = True
        self._bom_head = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _process(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        size = self._data_size
        for line in lines:
            if not line:
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(
                        _make_event(
                            self._event_type or "message", raw, self._id_buffer, self._block_retry
                        )
                    )
                    data.clear()
                    size = 0
                if self._block_dirty:
                    self._end_block()
            elif line.startswith(b"data: "):
                # The shape of nearly every line of a completion stream, so it skips `_field`.
                data.append(line[6:])
                size += len(line) - 5
            else:
                size += self._field(line)
        self._data_size = size
        return events

    def _process_checked(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for line in lines:
            if self._data_size + len(line) > self._max_event_size:
                self._overflow()
            events += self._process([line])
        return events

    def _field(self, line: bytes) -> int:
        """Apply one line other than ``data: ...``; return how many bytes it added to the data."""
        # A comment (":...") has an empty field name, which no branch matches.
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            return len(value) + 1
        if name == b"event":
            self._block_dirty = True
            self._event_type = value.decode("utf-8", "replace")
        elif name == b"id":
            self._block_dirty = True
            if b"\0" not in value:
                self._id_buffer = value.decode("utf-8", "replace") or None
        elif name == b"retry":
            self._block_dirty = True
            # bytes.isdigit() accepts ASCII digits only, exactly what the spec allows.
            if value.isdigit():
                # int() refuses more digits than sys.get_int_max_str_digits() allows.
                with contextlib.suppress(ValueError):
                    self._retry = self._block_retry = int(value)
        return 0

    def _end_block(self) -> None:
        # The spec's dispatch step 1 runs even when there is no event to dispatch.
        self._last_event_id = self._id_buffer
        self._event_type = ""
        self._block_retry = None
        self._block_dirty = False

    def _check_pending_line(self) -> None:
        if self._data_size + self._line_size > self._max_event_size:
            self._overflow()

    def _overflow(self) -> NoReturn:
        self._discard()
        raise SSEDecodeError(
            f"the server sent an oversize event: more than {self._max_event_size} bytes "
            f"in one event (max_event_size={self._max_event_size})"
        )

    def _discard(self) -> None:
        self._bom_head = b""
        self._line_parts = []
        self._line_size = 0
        self._data = []
        self._data_size = 0
        self._event_type = ""
        self._block_retry = None
        self._block_dirty = False
        self._id_buffer = self._last_event_id
