"""Every code example in the documentation runs, and the API reference covers the public API.

Three checks:

(a) Each ``examples/*.py`` runs as a program, as a reader would run it: a fresh interpreter
    (with ``-W error``), ``CTGT_API_KEY=sk-test`` and ``CTGT_BASE_URL`` pointing at a
    `Simulator` that the test serves on loopback. It must end with ``anyio.run(main)`` (or
    ``trio.run(main)``), exit with 0 and print something. An example that is not a program
    that ends, such as a web server, is listed in `NOT_RUN_HERE` with the test that covers
    it. Every example is included by some page.
(b) The code blocks of ``docs/**/*.md`` and ``README.md`` run the same way, following these
    conventions:

    * A ``python`` block is a complete program (imports, ``async def main()``,
      ``anyio.run(main)``) and is run as one.
    * A ``python`` block that defines top-level ``test_*`` functions is a pytest module. It
      is run with ``python -m pytest`` in a directory of its own, whose ``pytest.ini`` turns
      warnings into errors, and must pass. The fixtures of ctgt-async's pytest plugin are
      there, as in any project that installs the package.
    * A ``python`` block that holds only ``--8<-- "examples/..."`` lines includes example
      files into the page (pymdownx.snippets). Those files are run by (a); here the test
      only checks that they exist.
    * ``<!-- fragment -->`` on the line before a block marks code that is not meant to run
      as it is (code for another library, say). A fragment is compiled, not run, and there
      may be at most `MAX_FRAGMENTS` of them.
    * In a ``console`` block, each ``$ ctgt chat ...`` command is run. When the lines after
      it show ``ctgt: error: ...``, the command must fail with exactly that on stderr;
      otherwise it must succeed and print something. Other commands (installs, exports,
      ``ctgt serve``, which never ends) are not run.

(c) Every name in ``ctgt_async.__all__`` has a ``::: ctgt_async.<name>`` directive in
    ``docs/reference.md``, and every directive there names an object that exists.

The programs only talk to the simulator; nothing here waits on a clock of its own.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

import ctgt_async
from ctgt_async.testing import Simulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
REFERENCE = DOCS / "reference.md"

# Examples that are not programs that run and end, and where each one is tested instead.
NOT_RUN_HERE = {
    "fastapi_chat.py": "a web server that runs until stopped; tests/test_fastapi.py tests it",
}

FRAGMENT_MARKER = "<!-- fragment -->"
MAX_FRAGMENTS = 3

# A bound on one program, so that a hung example fails the test instead of hanging CI.
PROGRAM_DEADLINE = 120.0

# Runs the `ctgt` command the way its console script does, whether or not one is installed.
CLI_RUNNER = "import sys; from ctgt_async._cli import main; sys.exit(main(sys.argv[1:]))"

# The configuration of a user's project in which a pytest block runs.
PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

# The async tests serve the simulator with Simulator.serve(): uvicorn, which needs asyncio.
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


# --- finding the code -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    language: str
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_pytest_module(self) -> bool:
        try:
            tree = ast.parse(self.code)
        except SyntaxError:
            return False  # Run as a program, to fail with the error where it is.
        return any(
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test_")
            for node in tree.body
        )

    @property
    def included_files(self) -> list[str]:
        """The files a snippets-only block includes, or ``[]`` for a block of code."""
        lines = [line.strip() for line in self.code.splitlines() if line.strip()]
        includes = [re.fullmatch(r'--8<-- "([^"]+)"', line) for line in lines]
        if not lines or not all(includes):
            return []
        # `file.py:section` includes one section of a file.
        return [match[1].split(":")[0] for match in includes if match]


_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[^\n]*$")


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, dedented (as inside content tabs)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{index + 1}: a code block that is never closed")
        body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
        before = [line.strip() for line in lines[:index] if line.strip()]
        blocks.append(
            Block(
                path=path,
                line=index + 1,
                language=opening["language"],
                code="\n".join(body) + "\n",
                fragment=bool(before) and before[-1] == FRAGMENT_MARKER,
            )
        )
        index = end + 1
    return blocks


def all_blocks() -> list[Block]:
    pages = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    return [block for page in [*pages, readme] for block in markdown_blocks(page)]


BLOCKS = all_blocks()
RUNNABLE = [
    block
    for block in BLOCKS
    if block.language == "python" and not block.fragment and not block.included_files
]
PYTHON_BLOCKS = [block for block in RUNNABLE if not block.is_pytest_module]
PYTEST_BLOCKS = [block for block in RUNNABLE if block.is_pytest_module]
FRAGMENTS = [block for block in BLOCKS if block.fragment]
INCLUDES = [block for block in BLOCKS if block.included_files]


@dataclasses.dataclass(frozen=True)
class Command:
    """A ``$ ctgt chat ...`` line of a console block, and the error it shows, if any."""

    block: Block
    argv: list[str]
    error: str | None

    @property
    def id(self) -> str:
        return f"{self.block.id}:{shlex.join(self.argv)}"


def cli_commands() -> list[Command]:
    commands: list[Command] = []
    for block in BLOCKS:
        if block.language != "console":
            continue
        lines = block.code.splitlines()
        for number, line in enumerate(lines):
            if not line.startswith("$ ctgt chat"):
                continue
            output: list[str] = []
            for following in lines[number + 1 :]:
                if following.startswith("$"):
                    break
                output.append(following)
            errors = [text for text in output if text.startswith("ctgt: error:")]
            argv = shlex.split(line.removeprefix("$ "), comments=True)
            commands.append(Command(block, argv, errors[0] if errors else None))
    return commands


COMMANDS = cli_commands()
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))
PROGRAMS = [path for path in EXAMPLE_FILES if path.name not in NOT_RUN_HERE]


# --- running it -----------------------------------------------------------------------------


async def run_program(
    arguments: Sequence[str], base_url: str, *, cwd: Path = ROOT
) -> tuple[int, str, str]:
    """Run ``python <arguments>`` from ``cwd`` (the repository root) against the simulator."""
    env = {**os.environ, "CTGT_API_KEY": "sk-test", "CTGT_BASE_URL": base_url}
    env.pop("CTGT_MODEL", None)
    with anyio.fail_after(PROGRAM_DEADLINE):
        result = await anyio.run_process(
            [sys.executable, *arguments], cwd=cwd, env=env, check=False
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def explain(returncode: int, stdout: str, stderr: str) -> str:
    return f"exit code {returncode}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"


# --- (a) the example programs ---------------------------------------------------------------


def test_there_are_examples() -> None:
    assert len(PROGRAMS) >= 5
    stale = sorted(set(NOT_RUN_HERE) - {path.name for path in EXAMPLE_FILES})
    assert not stale, f"NOT_RUN_HERE names examples that do not exist: {stale}"


@pytest.mark.parametrize("example", PROGRAMS, ids=[path.name for path in PROGRAMS])
def test_example_is_a_program_that_ends(example: Path) -> None:
    last_line = example.read_text(encoding="utf-8").strip().splitlines()[-1]
    assert re.fullmatch(r"(anyio|trio)\.run\(main\b.*\)", last_line), (
        f"{example.name} should end with anyio.run(main), as the other examples do; an "
        "example that does not end by itself (a server) belongs in NOT_RUN_HERE, with the "
        "test that covers it"
    )


@pytest.mark.anyio
@ASYNCIO_ONLY
@pytest.mark.parametrize("example", PROGRAMS, ids=[path.name for path in PROGRAMS])
async def test_example_runs(example: Path) -> None:
    async with Simulator().serve() as base_url:
        returncode, stdout, stderr = await run_program(["-W", "error", str(example)], base_url)
    assert returncode == 0, explain(returncode, stdout, stderr)
    assert stdout.strip(), explain(returncode, stdout, stderr)


def test_every_example_is_shown_in_the_docs() -> None:
    included = {name for block in INCLUDES for name in block.included_files}
    orphans = [path.name for path in EXAMPLE_FILES if f"examples/{path.name}" not in included]
    assert not orphans, f"examples that no page includes: {orphans}"


# --- (b) the code blocks of the pages -------------------------------------------------------


@pytest.mark.anyio
@ASYNCIO_ONLY
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.id for block in PYTHON_BLOCKS])
async def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    program = tmp_path / "block.py"
    program.write_text(block.code, encoding="utf-8")
    async with Simulator().serve() as base_url:
        returncode, stdout, stderr = await run_program(["-W", "error", str(program)], base_url)
    hint = (
        f"{block.id}: a python block must be a complete program that prints something; "
        f"mark code that is not with {FRAGMENT_MARKER} on the line before the block"
    )
    assert returncode == 0, f"{hint}\n{explain(returncode, stdout, stderr)}"
    assert stdout.strip(), f"{hint}\n{explain(returncode, stdout, stderr)}"


@pytest.mark.anyio
@ASYNCIO_ONLY
@pytest.mark.parametrize("block", PYTEST_BLOCKS, ids=[block.id for block in PYTEST_BLOCKS])
async def test_pytest_block_passes(block: Block, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    (tmp_path / "test_block.py").write_text(block.code, encoding="utf-8")
    async with Simulator().serve() as base_url:
        returncode, stdout, stderr = await run_program(
            ["-m", "pytest", "-p", "no:cacheprovider", "-q", "test_block.py"],
            base_url,
            cwd=tmp_path,
        )
    assert returncode == 0, f"{block.id}\n{explain(returncode, stdout, stderr)}"
    assert " passed" in stdout, f"{block.id}\n{explain(returncode, stdout, stderr)}"


@pytest.mark.parametrize("block", INCLUDES, ids=[block.id for block in INCLUDES])
def test_included_files_are_examples(block: Block) -> None:
    for name in block.included_files:
        path = ROOT / name
        assert path.parent == EXAMPLES, f"{block.id}: {name} is not in examples/"
        assert path.is_file(), f"{block.id}: {name} does not exist"


@pytest.mark.parametrize("block", FRAGMENTS, ids=[block.id for block in FRAGMENTS])
def test_fragment_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


def test_fragments_are_few() -> None:
    assert len(FRAGMENTS) <= MAX_FRAGMENTS, [block.id for block in FRAGMENTS]


def test_the_pages_have_code_to_run() -> None:
    assert PYTHON_BLOCKS
    assert INCLUDES
    assert COMMANDS


@pytest.mark.anyio
@ASYNCIO_ONLY
@pytest.mark.parametrize("command", COMMANDS, ids=[command.id for command in COMMANDS])
async def test_cli_command_runs(command: Command) -> None:
    assert command.argv[:2] == ["ctgt", "chat"]
    async with Simulator().serve() as base_url:
        returncode, stdout, stderr = await run_program(
            ["-W", "error", "-c", CLI_RUNNER, *command.argv[1:]], base_url
        )
    report = f"{command.id}\n{explain(returncode, stdout, stderr)}"
    if command.error is None:
        assert returncode == 0, report
        assert stdout.strip(), report
    else:
        assert returncode != 0, report
        assert stderr.strip() == command.error, report


# --- (c) the API reference ------------------------------------------------------------------


def reference_targets() -> list[str]:
    text = REFERENCE.read_text(encoding="utf-8")
    return re.findall(r"^::: (\S+)\s*$", text, flags=re.MULTILINE)


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise LookupError(dotted)


def test_reference_documents_every_public_name() -> None:
    documented = {
        target.removeprefix("ctgt_async.")
        for target in reference_targets()
        if target.startswith("ctgt_async.")
    }
    missing = sorted(set(ctgt_async.__all__) - documented)
    assert not missing, f"public names missing from docs/reference.md: {missing}"
    assert "testing" in documented


@pytest.mark.parametrize("target", reference_targets())
def test_reference_targets_exist(target: str) -> None:
    resolve(target)
