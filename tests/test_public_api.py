"""The public surface: exactly what ``__all__`` says, under the public module name."""

from __future__ import annotations

import subprocess
import sys
import types

import ctgt_async


def test_all_is_sorted_and_matches_the_public_namespace() -> None:
    public = {
        name
        for name, value in vars(ctgt_async).items()
        # Public subpackages (``ctgt_async.testing``) are namespaces of their own.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    exported = set(ctgt_async.__all__) - {"__version__"}
    assert public == exported
    assert ctgt_async.__all__ == sorted(ctgt_async.__all__, key=lambda n: (n != "NOT_GIVEN", n))


def test_public_classes_show_the_public_module() -> None:
    for name in ctgt_async.__all__:
        value = getattr(ctgt_async, name)
        if isinstance(value, type):
            assert value.__module__ == "ctgt_async", name


def test_the_version_is_a_string() -> None:
    major, minor, patch = ctgt_async.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


FIRST_USE = """
import json
import anyio, httpx
from ctgt_async import AsyncCTGT, ChatCompletion, ChatCompletionChunk

chunk = {"id": "c", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
body = b"data: " + json.dumps(chunk).encode() + b"\\n\\ndata: [DONE]\\n\\n"

def handler(request):
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

async def main():
    async with AsyncCTGT(api_key="k", transport=httpx.MockTransport(handler)) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        completion = await stream.get_final_completion()
    assert isinstance(completion, ChatCompletion)
    print(completion.choices[0].message.content)

anyio.run(main)
"""


def test_models_build_their_validators_on_first_use_in_a_fresh_process() -> None:
    # Validators are deferred to first use (import time); a fresh interpreter proves that
    # the stream builds the chunk model's before binding it.
    result = subprocess.run(
        [sys.executable, "-c", FIRST_USE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hi"
