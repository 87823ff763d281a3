"""A loopback OpenAI-format server for the benchmarks: cheap enough never to be the bottleneck.

It answers ``POST /v1/chat/completions`` from pre-rendered bytes and does nothing else:

* without ``"stream": true`` in the body, a fixed ``chat.completion`` with ``content-length``;
* with it, a ``text/event-stream`` of N ``chat.completion.chunk`` events (the same events as
  ``stream_parse.py`` feeds its in-process clients), each in its own HTTP chunk, then
  ``data: [DONE]`` and the chunked terminator. N comes from the ``x-bench-chunks`` request
  header or the ``chunks`` query parameter; the default is 200.

The whole stream is handed to the kernel in one write, so it arrives as fast as loopback
carries it: the client's reads are large and what is measured is the client's parsing, not
the pace of a model. Connections are kept alive until the client closes them (or sends
``connection: close``). Any ``authorization`` header is accepted.

This is a raw ``asyncio.Protocol`` with a minimal HTTP/1.1 parser: no framework, no per-request
allocation beyond slicing the request. A request costs it a few tens of microseconds, a stream
chunk well under one, so the client being measured does far more work than the server. The
benchmark client checks that claim on every run by reading this process's CPU time from
``/proc`` around the measured part.

    python bench/server.py                      # serve on a free port, print {"port", "pid"}
    python bench/server.py --port 8765
    curl -sN localhost:8765/v1/chat/completions -d '{"stream": true}' -H 'x-bench-chunks: 3'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stream_parse import event_stream  # the same events as the in-process benchmark

DEFAULT_CHUNKS = 200
MAX_CHUNKS = 1_000_000
MAX_HEAD = 64 * 1024
PATH = "/v1/chat/completions"
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gemini-2.5-flash-lite",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": " ".join(f"word{i % 97}" for i in range(60)),
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 60, "total_tokens": 72},
}


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_response(status: str, body: object) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", "content-length": str(len(payload))}
    return _head(status, headers) + payload


COMPLETION_RESPONSE = _json_response("200 OK", COMPLETION)
NOT_FOUND = _json_response("404 Not Found", {"error": {"message": "not found", "type": "bench"}})
BAD_REQUEST = _json_response("400 Bad Request", {"error": {"message": "bad", "type": "bench"}})
STREAM_HEAD = _head(
    "200 OK",
    {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "transfer-encoding": "chunked",
    },
)

_streams: dict[int, bytes] = {}


def stream_response(chunks: int) -> bytes:
    """The full response for a stream of ``chunks`` events, rendered once and cached."""
    cached = _streams.get(chunks)
    if cached is None:
        body = event_stream(chunks)
        events = [event + b"\n\n" for event in body.split(b"\n\n") if event]
        framed = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
        cached = STREAM_HEAD + b"".join(framed) + b"0\r\n\r\n"
        _streams[chunks] = cached
    return cached


class Connection(asyncio.Protocol):
    """One client connection: parse requests as they arrive and answer each in one write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.transport.write(self.respond(lines[0], headers, body))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()

    def respond(self, request_line: str, headers: dict[str, str], body: bytes) -> bytes:
        method, _, rest = request_line.partition(" ")
        target = urlsplit(rest.rpartition(" ")[0])
        if method != "POST" or target.path != PATH:
            return NOT_FOUND
        if not STREAM_FLAG.search(body):
            return COMPLETION_RESPONSE
        query = parse_qs(target.query)
        try:
            chunks = int(headers.get("x-bench-chunks") or query.get("chunks", [DEFAULT_CHUNKS])[0])
        except ValueError:
            return BAD_REQUEST
        if not 2 <= chunks <= MAX_CHUNKS:
            return BAD_REQUEST
        return stream_response(chunks)


async def serve(host: str, port: int, *, exit_on_stdin_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done)
    if exit_on_stdin_eof:
        # Run by bench/run.py with stdin as a pipe: when the runner dies, so does the server.
        class Watch(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                done()

        await loop.connect_read_pipe(Watch, sys.stdin)
    server = await loop.create_server(Connection, host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"host": host, "port": bound, "pid": os.getpid()}), flush=True)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument(
        "--prerender",
        default=f"{DEFAULT_CHUNKS}",
        help="comma-separated stream lengths to render before serving (default: 200)",
    )
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for chunks in filter(None, args.prerender.split(",")):
        stream_response(int(chunks))
    asyncio.run(serve(args.host, args.port, exit_on_stdin_eof=args.exit_on_stdin_eof))


if __name__ == "__main__":
    main()
