"""The ``ctgt`` command: output, exit codes, and one-line errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctgt_async import ChatCompletion
from ctgt_async._cli import main

CTGT = [sys.executable, "-m", "ctgt_async._cli"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CTGT_")}
    environment.update(env)
    return subprocess.run(
        [*CTGT, *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[str]:
    """``ctgt serve`` in its own process; yields its base URL."""
    with serve("--api-key", "sk-cli") as base_url:
        yield base_url


@contextlib.contextmanager
def serve(*options: str) -> Iterator[str]:
    port = free_port()
    with subprocess.Popen(
        [*CTGT, "serve", "--port", str(port), *options], stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert "serving http://127.0.0.1" in banner, banner
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 130


# -- chat, in process ----------------------------------------------------------------------


def test_chat_streams_the_same_text_as_the_whole_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--simulate", "--temperature", "0", "Why is the sky blue?"]) == 0
    streamed = capsys.readouterr().out
    assert (
        main(["chat", "--simulate", "--no-stream", "--temperature", "0", "Why is the sky blue?"])
        == 0
    )
    whole = capsys.readouterr().out
    assert streamed.strip()
    assert streamed == whole


@pytest.mark.parametrize("stream", [[], ["--no-stream"]])
def test_chat_json_prints_a_whole_completion(
    capsys: pytest.CaptureFixture[str], stream: list[str]
) -> None:
    assert main(["chat", "--simulate", "--json", *stream, "hi"]) == 0
    completion = ChatCompletion.model_validate_json(capsys.readouterr().out)
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None


def test_chat_sends_the_system_message_and_persona(capsys: pytest.CaptureFixture[str]) -> None:
    main(["chat", "--simulate", "--json", "--no-stream", "hi"])
    plain = json.loads(capsys.readouterr().out)
    main(["chat", "--simulate", "--json", "--no-stream", "--system", "Be brief and kind.", "hi"])
    with_system = json.loads(capsys.readouterr().out)
    main(["chat", "--simulate", "--json", "--no-stream", "--persona", "technical_expert", "hi"])
    with_persona = json.loads(capsys.readouterr().out)
    assert with_system["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    assert (
        with_persona["choices"][0]["message"]["content"]
        != plain["choices"][0]["message"]["content"]
    )


# -- exit codes and errors, through the real entry point -------------------------------------


def test_the_version_flag() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("ctgt-async ")


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("ctgt")
    result = subprocess.run(
        [str(script), "chat", "--simulate", "hi"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip()


def test_a_missing_key_is_one_line_and_exit_2() -> None:
    result = run("chat", "hi")
    assert result.returncode == 2
    assert result.stderr.startswith("ctgt: error: No API key given")
    assert "CTGT_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_invalid_argument_is_exit_2() -> None:
    result = run("chat", "--simulate", "--temperature", "9", "hi")
    assert result.returncode == 2
    assert "temperature" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_key_is_one_line_and_exit_1(server: str) -> None:
    result = run("chat", "hi", CTGT_API_KEY="sk-wrong-secret", CTGT_BASE_URL=server)
    assert result.returncode == 1
    assert "401" in result.stderr
    assert "Invalid API key" in result.stderr
    assert "sk-wrong-secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_chat_against_a_served_simulator(server: str) -> None:
    result = run("chat", "--temperature", "0", "hi", CTGT_API_KEY="sk-cli", CTGT_BASE_URL=server)
    offline = run("chat", "--simulate", "--temperature", "0", "hi")
    assert result.returncode == 0
    assert result.stdout == offline.stdout


def test_ctrl_c_stops_a_stream_with_exit_130() -> None:
    with serve("--token-delay", "30") as base_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTGT_")}
        env.update(CTGT_API_KEY="sk-test", CTGT_BASE_URL=base_url)
        with subprocess.Popen(
            [*CTGT, "chat", "hi"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as chat:
            assert chat.stdout is not None
            assert chat.stderr is not None
            # The first word comes at once, the next only after 30 s: interrupt in between.
            assert chat.stdout.read(1)
            chat.send_signal(signal.SIGINT)
            assert chat.wait(timeout=30) == 130
            assert "Traceback" not in chat.stderr.read()
