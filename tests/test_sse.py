"""The SSE decoder against the WHATWG rules for interpreting an event stream.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Tests are named after the rule they check. The example streams are written after the ones the
spec walks through, and a literal transcription of the spec's algorithm (`spec_decode`, which
works on decoded text, all at once) is the oracle for randomly built streams.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctgt_async._sse import (
    DEFAULT_MAX_EVENT_SIZE,
    ServerSentEvent,
    SSEDecodeError,
    SSEDecoder,
)

BOM = b"\xef\xbb\xbf"


def decode(*pieces: bytes, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> list[ServerSentEvent]:
    """Feed the pieces in order, then end the input; return every event."""
    decoder = SSEDecoder(max_event_size=max_event_size)
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    events += decoder.end()
    return events


def cut(stream: bytes, at: Iterable[int]) -> list[bytes]:
    """Cut the stream at the given offsets (in any order, repeats allowed)."""
    bounds = [0, *sorted(at), len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds)]


def message(data: str, id: str | None = None, retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent("message", data, id, retry)


# --- The spec's own examples ----------------------------------------------------------------


def test_spec_example_data_lines_join_with_newlines() -> None:
    # The stock ticker example: three data lines make one event.
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert decode(stream) == [message("YHOO\n+2\n10")]


def test_spec_example_comment_ids_and_leading_space() -> None:
    stream = (
        b": test stream\n"
        b"\n"
        b"data: first event\n"
        b"id: 1\n"
        b"\n"
        b"data:second event\n"
        b"id\n"
        b"\n"
        b"data:  third event\n"
        b"\n"
    )
    assert decode(stream) == [
        message("first event", id="1"),
        # A bare "id" line resets the last event ID to the empty string.
        message("second event", id=None),
        # Only the first space after the colon goes.
        message(" third event", id=None),
    ]


def test_spec_example_end_of_stream_does_not_dispatch_the_last_event() -> None:
    stream = b"data: first event\nid: 1\n\ndata:  third event\n"
    assert decode(stream) == [message("first event", id="1")]


def test_spec_example_empty_data_fields() -> None:
    # The first block is one empty data line, the second two of them; the last block is not
    # followed by a blank line, so it is discarded.
    stream = b"data\n\ndata\ndata\n\ndata:"
    assert decode(stream) == [message(""), message("\n")]


def test_spec_example_space_after_colon_is_optional() -> None:
    assert decode(b"data:test\n\ndata: test\n\n") == [message("test"), message("test")]


def test_spec_example_event_types() -> None:
    stream = (
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    assert decode(stream) == [
        ServerSentEvent("add", "73857293"),
        ServerSentEvent("remove", "2153"),
        ServerSentEvent("add", "113411"),
    ]


# --- Line ends ------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_end_style_gives_the_same_events(eol: bytes) -> None:
    lines = [b"event: e", b"id: 7", b"data: a", b"data: b", b"", b": c", b"data: d", b""]
    stream = b"".join(line + eol for line in lines)
    assert decode(stream) == [ServerSentEvent("e", "a\nb", "7"), message("d", id="7")]


def test_line_end_styles_mix_within_one_stream() -> None:
    assert decode(b"data: a\rdata: b\ndata: c\r\n\r\n") == [message("a\nb\nc")]


def test_cr_at_the_end_of_a_chunk_and_lf_at_the_start_of_the_next_are_one_line_end() -> None:
    # Taken as two line ends, the "\n" would be a blank line dispatching "a" on its own.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [message("a\nb")]


def test_a_cr_lf_split_only_swallows_one_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [message("a")]


def test_cr_at_the_end_of_a_chunk_followed_by_cr_is_a_blank_line() -> None:
    assert decode(b"data: a\r", b"\rdata: b\n\n") == [message("a"), message("b")]


def test_an_event_ended_by_cr_cr_comes_out_without_waiting_for_more_input() -> None:
    assert SSEDecoder().feed(b"data: a\r\r") == [message("a")]


def test_an_event_comes_out_of_the_chunk_that_completes_it() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [message("a")]


def test_only_cr_and_lf_end_lines() -> None:
    # bytes.splitlines would not split these, but str.splitlines would: make sure of neither.
    others = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    assert decode(f"data: {others}\n\n".encode()) == [message(others)]


def test_blank_lines_in_a_row_dispatch_once() -> None:
    assert decode(b"\n\ndata: a\n\n\n\n") == [message("a")]


# --- Byte order mark and UTF-8 --------------------------------------------------------------


def test_a_leading_bom_is_skipped() -> None:
    # Were it kept, the first field name would be "\ufeffdata" and nothing would dispatch.
    assert decode(BOM + b"data: a\n\n") == [message("a")]


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_a_leading_bom_split_across_chunks_is_skipped(split: int) -> None:
    stream = BOM + b"data: a\n\n"
    assert decode(*cut(stream, [split])) == [message("a")]


def test_a_bom_fed_one_byte_at_a_time_is_skipped() -> None:
    stream = BOM + b"data: a\n\n"
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == [message("a")]


def test_only_one_leading_bom_is_skipped() -> None:
    assert decode(BOM + BOM + b"data: a\n\ndata: b\n\n") == [message("b")]


def test_a_bom_after_the_start_is_not_skipped() -> None:
    assert decode(b"data: a\n\n" + BOM + b"data: b\n\n") == [message("a")]
    assert decode(b"data: " + BOM + b"b\n\n") == [message("\ufeffb")]


def test_the_start_of_a_bom_that_does_not_finish_is_invalid_utf8() -> None:
    # "\xef\xbb" then "d": not a BOM, so the first field name is "\ufffddata", ignored.
    assert decode(b"\xef", b"\xbbdata: a\n\ndata: b\n\n") == [message("b")]


def test_invalid_utf8_is_replaced() -> None:
    assert decode(b"data: \xff ok \xc3\n\n") == [message("\ufffd ok \ufffd")]


def test_a_character_cut_by_a_line_end_is_replaced_as_in_the_whole_stream() -> None:
    # The spec decodes the whole stream first: "\xe4\xb8" before the line end is one
    # incomplete character, and the stray continuation byte "\xad" another.
    stream = b"data: \xe4\xb8\ndata: \xad!\n\n"
    assert decode(stream) == [message("\ufffd\n\ufffd!")] == spec_decode(stream)


def test_multibyte_characters_split_at_every_byte() -> None:
    text = "h\u00e9llo \u20ac \u4e16\u754c \U0001f389"
    stream = b"data: " + text.encode() + b"\n\n"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            assert decode(*cut(stream, [i, j])) == [message(text)], (i, j)


# --- Comments and fields --------------------------------------------------------------------


def test_comment_lines_are_ignored() -> None:
    assert decode(b": keep-alive\n\n:\n\n") == []
    assert decode(b"data: a\n: in between\ndata: b\n\n") == [message("a\nb")]


def test_event_sets_the_type_of_the_next_event_only() -> None:
    stream = b"event: delta\ndata: a\n\ndata: b\n\n"
    assert decode(stream) == [ServerSentEvent("delta", "a"), message("b")]


def test_an_empty_event_type_means_message() -> None:
    assert decode(b"event:\ndata: a\n\nevent\ndata: b\n\n") == [message("a"), message("b")]


def test_the_last_event_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"
    assert decode(stream) == [message("a", id="1"), message("b", id="1"), message("c", id="2")]


def test_an_empty_id_resets_the_last_event_id() -> None:
    stream = b"id: 1\ndata: a\n\nid:\ndata: b\n\n"
    assert decode(stream) == [message("a", id="1"), message("b", id=None)]


def test_an_id_containing_nul_is_ignored() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert decode(stream) == [message("a", id="1"), message("b", id="1")]


def test_an_id_in_a_block_without_data_still_becomes_the_last_event_id() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n\n") == []
    assert decoder.last_event_id == "5"
    assert decoder.feed(b"data: a\n\n") == [message("a", id="5")]


def test_the_last_event_id_changes_only_when_a_block_ends() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\n")
    assert decoder.last_event_id is None
    decoder.feed(b"data: a\n\n")
    assert decoder.last_event_id == "1"


def test_retry_sets_the_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.retry is None
    assert decoder.feed(b"retry: 2500\ndata: a\n\ndata: b\n\n") == [
        message("a", retry=2500),
        message("b"),  # retry belongs to the block that sent it
    ]
    assert decoder.retry == 2500


def test_retry_in_a_block_without_data_still_sets_the_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 10000\n\n") == []
    assert decoder.retry == 10000


@pytest.mark.parametrize(
    "value",
    [b"", b" 10", b"10s", b"-1", b"+1", b"1.5", b"1e3", "\u0661\u0662".encode(), b"\xef\xbc\x91"],
    ids=repr,
)
def test_retry_other_than_ascii_digits_is_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 7\n\nretry: " + value + b"\ndata: a\n\n") == [message("a")]
    assert decoder.retry == 7


def test_retry_with_more_digits_than_int_converts_is_ignored() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + b"9" * 10_000 + b"\ndata: a\n\n") == [message("a")]
    assert decoder.retry is None


def test_unknown_fields_are_ignored() -> None:
    stream = b"foo: bar\nData: no\nDATA: no\ndata : no\n data: no\ndata: yes\n\n"
    assert decode(stream) == [message("yes")]


def test_a_line_without_colon_is_a_field_name_with_an_empty_value() -> None:
    assert decode(b"data\n\n") == [message("")]
    assert decode(b"data: a\ndata\ndata: b\n\n") == [message("a\n\nb")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert decode(b"data:   three\n\n") == [message("  three")]
    assert decode(b"event:  spaced\ndata: a\n\n") == [ServerSentEvent(" spaced", "a")]


def test_other_whitespace_after_the_colon_is_kept() -> None:
    assert decode(b"data:\tx\n\n") == [message("\tx")]


def test_the_value_runs_from_the_first_colon_to_the_end_of_the_line() -> None:
    assert decode(b'data: {"a": "b:c"}\n\n') == [message('{"a": "b:c"}')]


def test_a_data_value_ending_in_a_newline_keeps_its_inner_newlines() -> None:
    # Only the newline appended after the last data line is removed.
    assert decode(b"data:\ndata:\n\n") == [message("\n")]


# --- Dispatch -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [b"event: ping\n", b"id: 1\n", b"retry: 5\n", b": hi\n", b""])
def test_a_block_with_an_empty_data_buffer_dispatches_nothing(block: bytes) -> None:
    assert decode(block + b"\n") == []


def test_a_block_without_data_still_resets_the_event_type() -> None:
    assert decode(b"event: ping\n\ndata: a\n\n") == [message("a")]


def test_the_event_type_resets_to_message_after_each_dispatch() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\ndata: 3\n\n"
    assert [event.event for event in decode(stream)] == ["a", "message", "b"]


def test_fields_of_the_previous_block_do_not_leak_into_a_one_chunk_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: delta\nretry: 3\n") == []
    assert decoder.feed(b"data: a\n\n") == [ServerSentEvent("delta", "a", None, 3)]
    assert decoder.feed(b"data: b\n\n") == [message("b")]


def test_decoded_events_equal_constructed_ones() -> None:
    [event] = decode(b"event: e\nid: i\nretry: 1\ndata: d\n\n")
    assert event == ServerSentEvent(event="e", data="d", id="i", retry=1)
    assert hash(event) == hash(ServerSentEvent(event="e", data="d", id="i", retry=1))
    assert repr(event) == "ServerSentEvent(event='e', data='d', id='i', retry=1)"


def test_events_are_frozen_with_spec_defaults() -> None:
    event = ServerSentEvent()
    assert (event.event, event.data, event.id, event.retry) == ("message", "", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "x"  # type: ignore[misc]


# --- End of input ---------------------------------------------------------------------------


def test_end_of_input_discards_an_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [message("a")]
    assert decoder.has_pending
    assert decoder.end() == []
    assert not decoder.has_pending


def test_end_of_input_does_not_process_an_unterminated_line() -> None:
    # The spec only knows terminated lines, so these are not fields at all.
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nretry: 5")
    decoder.end()
    assert decoder.retry is None
    decoder.feed(b"id: 2")
    decoder.end()
    assert decoder.last_event_id == "1"


def test_end_of_input_dispatches_nothing_even_after_a_final_cr() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [message("a")]
    assert not decoder.has_pending
    assert decoder.end() == []


@pytest.mark.parametrize(
    ("stream", "pending"),
    [
        (b"", False),
        (b"data: a\n\n", False),
        (b": comment\n", False),
        (b"unknown\n", False),
        (b"data: a\r", True),
        (b"data: a\n", True),
        (b"da", True),
        (b"event: e\n", True),
        (b"id: 1\n", True),
        (b"retry: 1\n", True),
        (b"\xef\xbb", True),
        (BOM, False),
        (b"data: a\n\n:", True),
    ],
)
def test_has_pending_tells_a_clean_end_from_a_cut(stream: bytes, pending: bool) -> None:
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert decoder.has_pending is pending


def test_after_end_the_decoder_reads_a_new_stream() -> None:
    # As after a reconnection: the new body may start with a BOM, the last event id stays.
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\nretry: 100\ndata: a\n\ndata: cut") == [
        message("a", id="9", retry=100)
    ]
    decoder.end()
    assert decoder.feed(BOM + b"data: b\n\n") == [message("b", id="9")]
    assert (decoder.last_event_id, decoder.retry) == ("9", 100)


def test_empty_chunks_change_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert not decoder.has_pending
    assert decode(b"", b"data: a\r", b"", b"\n", b"", b"\n", b"") == [message("a")]


# --- Size limit -----------------------------------------------------------------------------


def test_the_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_EVENT_SIZE == 1_048_576


def test_an_event_at_the_limit_passes_and_one_byte_more_fails() -> None:
    # Held while reading: the line "data: " + 10 bytes is 16 bytes.
    assert decode(b"data: 0123456789\n\n", max_event_size=16) == [message("0123456789")]
    with pytest.raises(SSEDecodeError) as info:
        decode(b"data: 0123456789A\n\n", max_event_size=16)
    assert "oversize" in str(info.value)
    assert "16" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("stream", "fails"),
    [
        (b"data: 0123456789\n\n", False),
        (b"data: 0123456789A\n\n", True),
        (b"data: 01234\ndata: 0123\n\n", False),
        (b"data: 01234\ndata: 01234\n\n", True),
        (b": comment\n" * 5 + b"id: 1\ndata: a\n\n", False),
        (b": a comment, 17 b\ndata: a\n\n", True),
    ],
)
def test_the_limit_verdict_does_not_depend_on_where_chunks_are_cut(
    stream: bytes, fails: bool
) -> None:
    # What counts is the data held plus the line being read, however the line arrives.
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            if fails:
                with pytest.raises(SSEDecodeError):
                    decode(*cut(stream, [i, j]), max_event_size=16)
            else:
                assert decode(*cut(stream, [i, j]), max_event_size=16) == spec_decode(stream)


def test_data_lines_add_up_towards_the_limit() -> None:
    decoder = SSEDecoder(max_event_size=100)
    # Each line holds 11 bytes of data once read (10 and its newline) and 16 while read.
    for _ in range(8):
        assert decoder.feed(b"data: 0123456789\n") == []
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: 0123456789\n")


def test_the_limit_applies_to_each_event_not_to_the_stream() -> None:
    stream = b"data: hello\n\n" * 1000
    assert decode(stream, max_event_size=16) == [message("hello")] * 1000


def test_lines_that_buffer_nothing_do_not_add_up() -> None:
    stream = b": keep-alive\n" * 100 + b"event: e\n" * 100 + b"data: a\n\n"
    assert decode(stream, max_event_size=16) == [ServerSentEvent("e", "a")]


def test_a_huge_line_without_newline_fails_soon_after_the_limit() -> None:
    decoder = SSEDecoder()
    fed = 0

    def feed_100_mib_without_newline() -> None:
        nonlocal fed
        for piece in itertools.repeat(b"x" * 65_536, 1600):
            decoder.feed(piece)
            fed += len(piece)

    with pytest.raises(SSEDecodeError):
        feed_100_mib_without_newline()
    assert DEFAULT_MAX_EVENT_SIZE <= fed < DEFAULT_MAX_EVENT_SIZE + 65_536
    assert not decoder.has_pending  # what it held is released


def test_a_huge_line_in_one_chunk_fails() -> None:
    with pytest.raises(SSEDecodeError):
        SSEDecoder(max_event_size=1024).feed(b"data: " + b"x" * 2048)
    with pytest.raises(SSEDecodeError):
        SSEDecoder(max_event_size=1024).feed(b"data: " + b"x" * 2048 + b"\n\n")


# --- Arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, "1024", None, True])
def test_max_event_size_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=value)


def test_max_event_size_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        SSEDecoder(1024)  # type: ignore[call-arg]


# --- Any split, any stream ------------------------------------------------------------------

SMALL_STREAM = (
    BOM + b": hello\r\n"
    b"retry: 2500\r\n"
    b"event: greeting\r\n"
    b"id: 1\r\n"
    b"data: h\xc3\xa9llo\r\n"
    b"data:  w\xe2\x82\xacrld \xf0\x9f\x8e\x89\r\n"
    b"\r\n"
    b"data: second\r"
    b"\r"
    b"id\n"
    b"data\n"
    b"\n"
    b"data: \xe4\xb8\xad\n\n"
)
SMALL_EVENTS = [
    ServerSentEvent("greeting", "h\u00e9llo\n w\u20acrld \U0001f389", "1", 2500),
    message("second", id="1"),
    message("", id=None),
    message("\u4e2d"),
]


def test_the_small_stream_decodes_as_the_spec_says() -> None:
    assert decode(SMALL_STREAM) == SMALL_EVENTS
    assert spec_decode(SMALL_STREAM) == SMALL_EVENTS


def test_every_way_to_cut_the_small_stream_in_three_gives_the_same_events() -> None:
    n = len(SMALL_STREAM)
    for i in range(n + 1):
        for j in range(i, n + 1):
            assert decode(*cut(SMALL_STREAM, [i, j])) == SMALL_EVENTS, (i, j)


def test_the_small_stream_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    pieces = [SMALL_STREAM[i : i + 1] for i in range(len(SMALL_STREAM))]
    assert decode(*pieces) == SMALL_EVENTS


def _large_stream() -> bytes:
    blocks: list[bytes] = []
    for n in range(300):
        eol = (b"\n", b"\r\n", b"\r")[n % 3]
        lines = [f'data: {{"n":{n},"text":"t\u00e9\u20ac\U0001f600 {n}"}}'.encode()]
        if n % 7 == 0:
            lines += [b": keep-alive", f"id: {n}".encode()]
        if n % 11 == 0:
            lines += [b"event: special", b"data:second line"]
        if n % 13 == 0:
            lines += [b"retry: 1000"]
        blocks.append(eol.join(lines) + eol + eol)
    return BOM + b"".join(blocks)


LARGE_STREAM = _large_stream()
LARGE_EVENTS = decode(LARGE_STREAM)


def test_the_large_stream_decodes_as_the_spec_says() -> None:
    assert len(LARGE_EVENTS) == 300
    assert spec_decode(LARGE_STREAM) == LARGE_EVENTS


@settings(deadline=None)
@given(st.lists(st.integers(0, len(LARGE_STREAM)), max_size=80))
def test_random_cuts_of_a_large_stream_give_the_same_events(at: list[int]) -> None:
    assert decode(*cut(LARGE_STREAM, at)) == LARGE_EVENTS


_LINE_END = re.compile(r"\r\n|\r|\n")


def spec_decode(stream: bytes) -> list[ServerSentEvent]:
    """The spec's algorithm transcribed step by step, on the whole stream decoded at once."""
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    *lines, _unterminated_line = _LINE_END.split(text)
    events: list[ServerSentEvent] = []
    data = event_type = id_buffer = ""
    retry: int | None = None
    for line in lines:
        if not line:  # dispatch
            last_event_id = id_buffer
            if data:
                data = data.removesuffix("\n")
                events.append(
                    ServerSentEvent(event_type or "message", data, last_event_id or None, retry)
                )
            data = event_type = ""
            retry = None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


_LINES = st.sampled_from(
    [
        b"",
        b"",
        b"data: hello",
        b"data:x",
        b"data",
        b"data:  two spaces",
        b"data: h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x8e\x89",
        b"data: \xe4\xb8",
        b"data: \xff\xfe",
        b"data: \xef\xbb\xbf",
        b"event: update",
        b"event:",
        b"event",
        b"id: 42",
        b"id",
        b"id: a\x00b",
        b"retry: 1500",
        b"retry: 15s",
        b"retry:",
        b": keep-alive",
        b":",
        b"foo: bar",
        b"\xef\xbb\xbfdata: bom",
    ]
)
_VALUES = st.binary(max_size=10).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_FIELDS = st.sampled_from([b"data:", b"data: ", b"event:", b"id:", b"retry:", b":", b""])


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    """Streams of known and random lines, any line ends, perhaps a BOM, perhaps a cut."""
    line = st.one_of(_LINES, st.tuples(_FIELDS, _VALUES).map(b"".join))
    eol = st.sampled_from([b"\n", b"\r\n", b"\r"])
    start = draw(st.sampled_from([b"", b"", BOM, BOM[:2], BOM + BOM]))
    body = b"".join(a + b for a, b in draw(st.lists(st.tuples(line, eol), max_size=40)))
    return start + body + draw(_VALUES)


@settings(deadline=None, max_examples=300)
@given(event_streams())
def test_random_streams_decode_as_the_spec_says(stream: bytes) -> None:
    assert decode(stream) == spec_decode(stream)


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_random_streams_cut_anywhere_give_the_same_events(data: st.DataObject) -> None:
    stream = data.draw(event_streams())
    at = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert decode(*cut(stream, at)) == decode(stream)


def _pieces_of(stream: bytes, size: int) -> Iterator[bytes]:
    return (stream[i : i + size] for i in range(0, len(stream), size))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 65_536])
def test_fixed_size_pieces_give_the_same_events(size: int) -> None:
    assert decode(*_pieces_of(LARGE_STREAM, size)) == LARGE_EVENTS
