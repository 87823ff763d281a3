"""The ``ctgt`` command: chat from the terminal, serve the simulator.

    ctgt chat "Why is the sky blue?"              # streams the reply (needs CTGT_API_KEY)
    ctgt chat --simulate "Why is the sky blue?"   # the same, offline, against the simulator
    ctgt serve --port 8000                         # the simulator on a socket (needs [server])

argparse only: the command must not add a dependency to the core package. Errors print one
line to stderr, never a traceback; exit codes: 0 success, 1 the API call failed, 2 bad usage
or configuration, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

import anyio

from ._errors import CTGTError, InvalidArgumentError, MissingAPIKeyError
from ._version import __version__

if TYPE_CHECKING:
    from ._client import AsyncCTGT
    from ._types import MessageParam

DEFAULT_MODEL = "gemini-2.5-flash-lite"
MODEL_ENV = "CTGT_MODEL"

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctgt", description="The CTGT chat completions API from the command line."
    )
    parser.add_argument("--version", action="version", version=f"ctgt-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser(
        "chat",
        help="ask one question and stream the answer",
        description="Ask one question and print the answer as it is generated.",
    )
    chat.add_argument("prompt", help="what to ask")
    chat.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV, DEFAULT_MODEL),
        help=f"model name (default: ${MODEL_ENV} or {DEFAULT_MODEL})",
    )
    chat.add_argument("--persona", help="default, technical_expert, creative_writer, ...")
    chat.add_argument("--temperature", type=float, help="0 to 2 (server default 1)")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    chat.add_argument(
        "--no-stream", dest="stream", action="store_false", help="wait for the whole answer"
    )
    chat.add_argument(
        "--json", action="store_true", help="print the whole completion as JSON instead of text"
    )
    chat.add_argument(
        "--simulate",
        action="store_true",
        help="talk to the built-in simulator in process: no network, no key",
    )

    serve = commands.add_parser(
        "serve",
        help="run the API simulator on a local port",
        description="Serve the CTGT API simulator over HTTP (needs ctgt-async[server]).",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help="a key to accept (repeatable; default: sk-test)",
    )
    serve.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="fraction of requests answered with a retryable fault: 429, 500 or 503",
    )
    serve.add_argument("--seed", type=int, default=0, help="seed for replies and faults")
    serve.add_argument(
        "--time-to-first-token", type=float, default=0.0, metavar="SECONDS", help="stream delay"
    )
    serve.add_argument(
        "--token-delay", type=float, default=0.0, metavar="SECONDS", help="delay per stream token"
    )
    return parser


def _messages(args: argparse.Namespace) -> list[MessageParam]:
    messages: list[MessageParam] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    return messages


def _client(args: argparse.Namespace) -> AsyncCTGT:
    if args.simulate:
        from .testing import Simulator

        return Simulator().client()
    from ._client import AsyncCTGT

    return AsyncCTGT()


async def _chat(args: argparse.Namespace, out: TextIO) -> None:
    options = {
        "model": args.model,
        "messages": _messages(args),
        "persona": args.persona,
        "temperature": args.temperature,
    }
    async with _client(args) as client:
        if not args.stream:
            completion = await client.chat.completions.create(**options)
        else:
            stream = await client.chat.completions.create(**options, stream=True)
            async with stream:
                if args.json:
                    completion = await stream.get_final_completion()
                else:
                    async for text in stream.text_stream:
                        out.write(text)
                        out.flush()
                    out.write("\n")
                    return
        if args.json:
            out.write(completion.model_dump_json(indent=2) + "\n")
        else:
            out.write((completion.choices[0].message.content or "") + "\n")


async def _serve(args: argparse.Namespace) -> None:
    from .testing import Simulator

    simulator = Simulator(
        api_keys=args.api_keys or ("sk-test",),
        seed=args.seed,
        fault_rate=args.fault_rate,
        time_to_first_token=args.time_to_first_token,
        token_delay=args.token_delay,
    )
    async with simulator.serve(host=args.host, port=args.port) as base_url:
        print(f"CTGT simulator serving {base_url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            anyio.run(_serve, args)
        else:
            anyio.run(_chat, args, sys.stdout)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MissingAPIKeyError, InvalidArgumentError, ValueError, ImportError, OSError) as error:
        print(f"ctgt: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CTGTError as error:
        print(f"ctgt: error: {error}", file=sys.stderr)
        return EXIT_API_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
