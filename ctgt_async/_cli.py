"""The ``ctgt`` command: chat from the terminal, run batch files, serve the simulator.

    ctgt chat "Why is the sky blue?"              # streams the reply (needs CTGT_API_KEY)
    ctgt chat --simulate "Why is the sky blue?"   # the same, offline, against the simulator
    ctgt batch in.jsonl -o out.jsonl               # a JSONL file of requests, resumable
    ctgt serve --port 8000                         # the simulator on a socket (needs [server])

argparse only: the command must not add a dependency to the core package. Errors print one
line to stderr, never a traceback; exit codes: 0 success, 1 the API call failed (for
``batch``: some lines ended in an error), 2 bad usage or configuration, 130 interrupted
(Ctrl-C), 143 terminated (``batch`` on SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ._config import API_KEY_ENV
from ._errors import AuthenticationError, CTGTError, InvalidArgumentError, MissingAPIKeyError
from ._version import __version__

if TYPE_CHECKING:
    from ._batch import Batch
    from ._batch_files import BatchJob
    from ._client import AsyncCTGT
    from ._progress import Console
    from ._types import MessageParam

DEFAULT_MODEL = "gemini-2.5-flash-lite"
MODEL_ENV = "CTGT_MODEL"

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# A batch job would rather wait out a rough patch than write an error line for a request
# that a later attempt would have answered: more retries than a single call's default.
BATCH_MAX_RETRIES = 5
# Same as the library's default, repeated here so that `--help` does not import it.
BATCH_CONCURRENCY = 32
# The simulator behind `--simulate` keeps this many request records, not one per line.
SIMULATOR_RECORDS = 100


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            bound = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise argparse.ArgumentTypeError(f"{bound}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    k, slash, n = text.partition("/")
    if slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n):
        return int(k), int(n)
    raise argparse.ArgumentTypeError(f"must be K/N with 1 <= K <= N, such as 2/8; got {text!r}")


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
        "--json",
        action="store_true",
        help="print the whole completion, usage included, as JSON (implies --no-stream)",
    )
    chat.add_argument(
        "--simulate",
        action="store_true",
        help="talk to the built-in simulator in process: no network, no key",
    )

    _add_batch_parser(commands)

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


def _add_batch_parser(commands: Any) -> None:
    batch: argparse.ArgumentParser = commands.add_parser(
        "batch",
        help="run a JSONL file of requests, resumably",
        description=(
            "Send every request of an OpenAI Batch API style JSONL file and append one result "
            "line per custom_id to the output. Run the same command again after an "
            "interruption (even kill -9) to resume where it stopped."
        ),
    )
    batch.add_argument("input", type=Path, metavar="INPUT.jsonl", help="the requests")
    batch.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUTPUT.jsonl", help="the results"
    )
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=BATCH_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once (default {BATCH_CONCURRENCY})",
    )
    batch.add_argument("--rpm", type=_positive_int, metavar="N", help="requests per minute")
    batch.add_argument("--tpm", type=_positive_int, metavar="N", help="tokens per minute")
    batch.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="keep the concurrency fixed instead of backing off on 429s",
    )
    batch.add_argument(
        "--max-retries",
        type=_count,
        default=BATCH_MAX_RETRIES,
        metavar="N",
        help=f"retries per request (default {BATCH_MAX_RETRIES})",
    )
    batch.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="run only shard K of N (by a stable hash of custom_id), to split a job",
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="remove error lines from the output and run their requests again",
    )
    batch.add_argument("--quiet", action="store_true", help="no progress, only problems")
    batch.add_argument(
        "--progress-interval",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default 10)",
    )
    batch.add_argument(
        "--simulate",
        action="store_true",
        help="send to the built-in simulator in process: no network, no key",
    )
    simulator = batch.add_argument_group("with --simulate")
    simulator.add_argument("--seed", type=int, default=0, help="seed for replies and faults")
    simulator.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="fraction of requests answered with a retryable fault: 429, 500 or 503",
    )
    simulator.add_argument(
        "--server-rpm", type=_positive_int, metavar="N", help="the simulator's rate limit"
    )
    simulator.add_argument(
        "--time-to-first-token",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long each simulated answer takes to start",
    )
    simulator.add_argument(
        "--token-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long each further word of a simulated answer takes",
    )


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
        # JSON is printed once the answer is whole, so it gains nothing from a stream, and a
        # non-streamed answer carries `usage`, which a stream only sends when asked.
        if args.json or not args.stream:
            completion = await client.chat.completions.create(**options)
            if args.json:
                out.write(completion.model_dump_json(indent=2) + "\n")
            else:
                out.write((completion.choices[0].message.content or "") + "\n")
            return
        stream = await client.chat.completions.create(**options, stream=True)
        async with stream:
            async for text in stream.text_stream:
                out.write(text)
                out.flush()
        out.write("\n")


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


# --- batch ----------------------------------------------------------------------------------

_SIMULATOR_OPTIONS = {
    "seed": 0,
    "fault_rate": 0.0,
    "server_rpm": None,
    "time_to_first_token": 0.0,
    "token_delay": 0.0,
}


@dataclasses.dataclass
class BatchOutcome:
    """How a batch run ended, besides what its counts say."""

    signal: int | None = None
    """The signal that stopped it (SIGINT, SIGTERM), if one did."""
    fatal: AuthenticationError | None = None
    """A 401: the key is wrong, so no other request can succeed; the run stopped."""
    elapsed: float = 0.0


def _batch_client(args: argparse.Namespace) -> AsyncCTGT:
    options: dict[str, Any] = {
        "max_retries": args.max_retries,
        "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm,
    }
    if args.simulate:
        from .testing import Simulator

        simulator = Simulator(
            seed=args.seed,
            fault_rate=args.fault_rate,
            time_to_first_token=args.time_to_first_token,
            token_delay=args.token_delay,
            max_records=SIMULATOR_RECORDS,
        )
        if args.server_rpm:
            simulator.rate_limit(args.server_rpm)
        return simulator.client(**options)
    from ._client import AsyncCTGT

    return AsyncCTGT(**options)


async def _watch_signals(scope: anyio.CancelScope, outcome: BatchOutcome) -> None:
    """On Ctrl-C or SIGTERM, stop the run in an orderly way instead of by KeyboardInterrupt.

    Cancelling stops the requests in flight at their next await; result lines are written
    between awaits, with one write each, so every line already started is finished.
    """
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
            # Windows, or not the main thread: Ctrl-C arrives as KeyboardInterrupt instead.
            return
        async for signum in signals:
            outcome.signal = signum
            scope.cancel()
            return


async def _show_progress(job: BatchJob, console: Console, total_lines: int) -> None:
    from ._progress import RateMeter, Snapshot

    meter = RateMeter()
    while True:
        now = anyio.current_time()
        counts = job.counts
        results = counts.succeeded + counts.failed + counts.bad
        settled = job.settled_lines
        rate, settle_rate = meter.sample(now, results, settled)
        left = max(total_lines - settled, 0)
        eta = left / settle_rate if settle_rate > 0 else (0.0 if not left else None)
        snapshot = Snapshot(
            total_lines=total_lines,
            settled_lines=settled,
            succeeded=counts.succeeded,
            failed=counts.failed + counts.bad,
            rate=rate,
            eta=eta,
        )
        console.progress(now, snapshot)
        await anyio.sleep(console.refresh_interval)


async def run_batch_job(
    job: BatchJob, batch: Batch, console: Console, *, total_lines: int
) -> BatchOutcome:
    """Run ``batch`` (made over ``job.requests()``), writing each result as it comes.

    The signal watcher and the progress display run beside it and stop with it.
    """
    outcome = BatchOutcome()
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_watch_signals, tasks.cancel_scope, outcome)
        if not console.quiet:
            tasks.start_soon(_show_progress, job, console, total_lines)
        async with batch as results:
            async for result in results:
                if isinstance(result.error, AuthenticationError):
                    outcome.fatal = result.error
                    break
                job.record(result)
        tasks.cancel_scope.cancel()
    outcome.elapsed = time.monotonic() - started
    console.clear()
    return outcome


async def _run_batch(
    args: argparse.Namespace, job: BatchJob, console: Console, total_lines: int
) -> BatchOutcome:
    async with _batch_client(args) as client:
        batch = client.batch(job.requests(), concurrency=args.concurrency, adaptive=args.adaptive)
        return await run_batch_job(job, batch, console, total_lines=total_lines)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else (plural or singular + 's')}"


def _summary(job: BatchJob, outcome: BatchOutcome) -> list[str]:
    from ._progress import format_duration

    counts = job.counts
    resume = job.output.resume
    parts = [f"{counts.succeeded:,} succeeded", f"{counts.failed:,} failed"]
    if counts.bad:
        parts.append(_plural(counts.bad, "bad line"))
    if counts.duplicates:
        parts.append(_plural(counts.duplicates, "duplicate") + " skipped")
    if counts.resumed:
        parts.append(f"{counts.resumed:,} done by an earlier run")
    if counts.other_shard:
        parts.append(f"{counts.other_shard:,} in other shards")
    lines = [
        f"ctgt batch: {_plural(counts.lines, 'line')} in {format_duration(outcome.elapsed)}: "
        + ", ".join(parts)
    ]
    if outcome.signal is not None:
        lines.append(
            f"ctgt batch: stopped; {_plural(job.in_flight, 'request')} in flight will be sent "
            "when the same command is run again"
        )
    failed = resume.failed + counts.failed + counts.bad
    if failed and outcome.signal is None and outcome.fatal is None:
        lines.append(
            f"ctgt batch: {job.output.path} holds {_plural(failed, 'error line')}; "
            "run again with --retry-failed to retry them"
        )
    return lines


def _batch(args: argparse.Namespace) -> int:
    from ._batch_files import BatchJob, OutputFile, count_lines
    from ._progress import Console

    given = [
        "--" + name.replace("_", "-")
        for name, default in _SIMULATOR_OPTIONS.items()
        if getattr(args, name) != default
    ]
    if given and not args.simulate:
        raise InvalidArgumentError(given[0], "only goes with --simulate")
    if not 0.0 <= args.fault_rate <= 1.0:
        raise InvalidArgumentError(
            "--fault-rate", f"must be between 0 and 1, got {args.fault_rate}"
        )
    source: Path = args.input
    if not source.is_file():
        raise InvalidArgumentError(str(source), "no such file")
    if args.output.exists() and args.output.resolve() == source.resolve():
        raise InvalidArgumentError("--output", "must not be the input file")
    console = Console(
        sys.stderr,
        bar=sys.stderr.isatty() and os.environ.get("TERM") != "dumb",
        interval=args.progress_interval,
        quiet=args.quiet,
    )

    def report(message: str) -> None:
        console.message(f"ctgt: {message}")

    client_secrets = () if args.simulate else (os.environ.get(API_KEY_ENV, ""),)
    output = OutputFile(args.output, retry_failed=args.retry_failed)
    try:
        resume = output.resume
        if resume.repaired_bytes:
            report(
                f"{args.output}: cut off a torn last line ({resume.repaired_bytes:,} bytes) "
                "left by an interrupted run; its request will be sent again"
            )
        if resume.dropped_failures:
            report(
                f"{args.output}: removed {_plural(resume.dropped_failures, 'error line')} to retry"
            )
        done = resume.succeeded + resume.failed
        if done and not args.quiet:
            report(f"{args.output}: resuming; {_plural(done, 'line')} already written")
        job = BatchJob(
            source,
            output,
            shard=args.shard,
            report=report,
            secrets=tuple(secret for secret in client_secrets if secret),
        )
        outcome = anyio.run(_run_batch, args, job, console, count_lines(source))
    finally:
        output.close()
    for line in _summary(job, outcome):
        console.message(line)
    if outcome.signal is not None:
        return EXIT_TERMINATED if outcome.signal == signal.SIGTERM else EXIT_INTERRUPTED
    if outcome.fatal is not None:
        console.message(f"ctgt: error: {outcome.fatal}")
        console.message(
            "ctgt batch: stopped, since no request can succeed with this key; nothing was "
            "written for the requests in flight, which the next run will send"
        )
        return EXIT_API_ERROR
    if resume.failed + job.counts.failed + job.counts.bad:
        return EXIT_API_ERROR
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "batch":
            return _batch(args)
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
