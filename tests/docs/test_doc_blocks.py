"""Executable documentation: every ```python and ```bash block in README.md and docs/**/*.md runs.

One pytest case per block, named after its place, e.g. ``docs/tokens.md:42`` (the line
of the opening fence), so a broken example says where it is. The convention (also in
docs/plugin-authors.md, "Writing docs"):

- ```python blocks run as standalone scripts: ``python FILE`` with the repository root
  as working directory, in this interpreter's environment. Each block stands alone
  (its own imports); blocks do not share state. The script file is padded with blank
  lines so traceback line numbers are the line numbers in the Markdown file.
- ```bash blocks run with ``bash -euo pipefail`` from the repository root, with this
  interpreter's ``bin/`` first on ``PATH`` (so ``python`` and ``losskit`` are the
  installed ones). Every command must succeed.
- Blocks write scratch files under ``$TMPDIR`` (a fresh folder per block), never into
  the repository.
- ```text is for output and for commands that must not run inside the test suite
  (``pip install``, multi-GPU ``torchrun`` launches); ```yaml, ```json and ```toml are
  data (YAML and JSON blocks must parse). An unlabelled fence fails the test.
- A bash block that runs the test suite (``pytest``) cannot run inside it: each of its
  lines that runs pytest must be, word for word, a command of ``.ci/run``, which is what
  CI executes (README's set-up block also holds the ``losskit train`` line; the trainer's
  own tests run that job at a small size).

Speed: importing torch, torchvision and the plugins costs seconds per process, and the
docs start a hundred of them. Each test worker therefore starts ``block_server.py``
once: python blocks, and the ``losskit``/``python`` commands of bash blocks (through
``block_client.py`` first on their PATH), run in forks of it — fresh ``__main__``, the
block's own cwd, environment and streams, the registry loaded inside the run. Set
``LOSSKIT_DOCS_NO_FORK=1`` to run every block in brand-new processes instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
#: Markdown files whose blocks are executed, repository-relative.
DOC_FILES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")], key=lambda p: p.relative_to(REPO).as_posix())

RUN_LANGUAGES = {"python": "python", "py": "python", "python3": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
DATA_LANGUAGES = {"yaml", "yml", "json", "toml"}
INERT_LANGUAGES = {"text", "console", "ini", "diff", "mermaid", "markdown", "md", "html"}
KNOWN_LANGUAGES = set(RUN_LANGUAGES) | DATA_LANGUAGES | INERT_LANGUAGES

#: Seconds one block may run; the docs ask for < 15 s, this bound only stops a hang.
BLOCK_TIMEOUT_S = 180
#: Set in a block's environment; a nested run of this file fails instead of recursing.
NESTED_ENV = "LOSSKIT_DOCS_BLOCK"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # repository-relative, posix
    line: int  # 1-based line of the opening fence
    language: str  # first word of the info string, lower case ("" when unlabelled)
    code: str  # the content, dedented by the fence's indentation

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


class FenceError(ValueError):
    """A fence that never closes."""


def parse_blocks(text: str, path: str = "<string>") -> list[Block]:
    """Fenced code blocks of ``text`` (CommonMark fences, any indentation, ``` or ~~~).

    A fence closes on a line holding only the same character repeated at least as many
    times. Content lines lose the opening fence's indentation (fences nested in lists
    or admonitions are indented). Raises :class:`FenceError` for an unclosed fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        words = m["info"].strip().lstrip("{").split()
        language = words[0].lstrip(".").rstrip("}").lower() if words else ""
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(_dedent(lines[j], indent))
            j += 1
        if j == len(lines):
            raise FenceError(f"{path}:{i + 1}: fence {fence!r} is never closed")
        blocks.append(Block(path, i + 1, language, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    strip = 0
    while strip < indent and strip < len(line) and line[strip] in " \t":
        strip += 1
    return line[strip:]


def _collect() -> tuple[list[Block], list[tuple[str, str]]]:
    blocks, errors = [], []
    for file in DOC_FILES:
        rel = file.relative_to(REPO).as_posix()
        try:
            blocks.extend(parse_blocks(file.read_text(encoding="utf-8"), rel))
        except FenceError as exc:
            errors.append((rel, str(exc)))
    return blocks, errors


BLOCKS, FENCE_ERRORS = _collect()


PYTEST = re.compile(r"\bpytest\b")


def runs_test_suite(block: Block) -> bool:
    """A shell block that invokes pytest: CI runs it, the suite cannot run itself."""
    return RUN_LANGUAGES.get(block.language) == "bash" and PYTEST.search(block.code) is not None


def _ci_commands() -> set[str]:
    ci = REPO / ".ci" / "run"
    return {ln.strip() for ln in ci.read_text(encoding="utf-8").splitlines()} if ci.exists() else set()


def _commands(code: str) -> list[str]:
    return [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]


RUNNABLE = [b for b in BLOCKS if b.language in RUN_LANGUAGES and not runs_test_suite(b)]
SUITE_COMMANDS = [b for b in BLOCKS if runs_test_suite(b)]


def base_env() -> dict[str, str]:
    """This interpreter's ``bin/`` first on PATH, hub offline, headless plots."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        NO_MKDOCS_2_WARNING="1",
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def block_env(tmp: Path, block: Block, server: BlockServer | None = None) -> dict[str, str]:
    """The environment one block runs in: :func:`base_env`, scratch files in ``tmp``, the server's commands."""
    env = {**base_env(), "TMPDIR": str(tmp), NESTED_ENV: block.id}
    if server is not None:
        env.update(server.env)
    return env


class BlockServer:
    """Runs the docs' Python in forks of one process that imported torch once (``block_server.py``).

    ``python`` blocks are sent on the server's stdin; ``bash`` blocks find ``losskit``,
    ``python`` and ``python3`` first on their PATH as ``block_client.py``, which forwards
    the command to the server's socket.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lkdocs"))  # short: a socket path has ~100 bytes
        socket_path, bin_dir = self.dir / "sock", self.dir / "bin"
        bin_dir.mkdir()
        client = Path(__file__).with_name("block_client.py").read_text(encoding="utf-8")
        for name in ("losskit", "python", "python3"):
            (bin_dir / name).write_text(f"#!{sys.executable} -IS\n{client}", encoding="utf-8")
            (bin_dir / name).chmod(0o755)
        real_bin = str(Path(sys.executable).parent)
        self.env = {
            "PATH": os.pathsep.join([str(bin_dir), real_bin, os.environ.get("PATH", "")]),
            "LOSSKIT_DOCS_SERVER": str(socket_path),
            "LOSSKIT_DOCS_REAL_BIN": real_bin,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("block_server.py")), str(socket_path)],
            cwd=REPO,
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}  # type: ignore[union-attr]

    def run(self, script: Path, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
        out, err = tmp / "stdout.txt", tmp / "stderr.txt"
        request = {"script": str(script), "cwd": str(REPO), "env": env, "stdout": str(out), "stderr": str(err),
                   "timeout": BLOCK_TIMEOUT_S}
        self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        reply = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired([str(script)], BLOCK_TIMEOUT_S)
        return subprocess.CompletedProcess([str(script)], reply["returncode"], out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_block(block: Block, tmp: Path, server: BlockServer | None = None) -> subprocess.CompletedProcess[str]:
    """Run one block as the docs promise a reader can: a script from the repository root.

    ``python`` blocks go through ``server`` when given (same semantics, torch already
    imported), else ``python FILE``; ``bash`` blocks always run with ``bash``.
    """
    kind = RUN_LANGUAGES[block.language]
    stem = re.sub(r"[^A-Za-z0-9]+", "_", block.path)
    env = block_env(tmp, block, server)
    if kind == "python":
        # pad so that the script's line numbers are the Markdown file's
        script = tmp / f"{stem}.py"
        script.write_text("\n" * block.line + block.code, encoding="utf-8")
        if server is not None:
            return server.run(script, env, tmp)
        cmd = [sys.executable, str(script)]
    else:
        script = tmp / f"{stem}.sh"
        script.write_text(block.code, encoding="utf-8")
        cmd = ["bash", "-euo", "pipefail", str(script)]
    # own session: on timeout the whole group goes, not only bash (its children would hold the pipes open)
    with subprocess.Popen(
        cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="session")
def block_server():
    """One fork server per test worker; ``LOSSKIT_DOCS_NO_FORK=1`` runs every block as a fresh ``python FILE``."""
    if os.environ.get("LOSSKIT_DOCS_NO_FORK", "") not in ("", "0"):
        yield None
        return
    server = BlockServer()
    yield server
    server.close()


def _tail(text: str, n: int = 6000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_doc_block_runs(block: Block, tmp_path: Path, block_server: BlockServer | None) -> None:
    if NESTED_ENV in os.environ:
        pytest.fail(f"the docs block {os.environ[NESTED_ENV]} runs the docs tests (recursion)")
    try:
        proc = run_block(block, tmp_path, block_server)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id}: {block.language} block still running after {BLOCK_TIMEOUT_S} s")
    if proc.returncode != 0:
        pytest.fail(
            f"{block.id}: {block.language} block exited with status {proc.returncode}\n"
            f"--- block ---\n{block.code}--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}",
            pytrace=False,
        )


DOC_PATHS = [f.relative_to(REPO).as_posix() for f in DOC_FILES]


@pytest.mark.parametrize("path", DOC_PATHS)
def test_fences_are_closed_and_labelled(path: str) -> None:
    errors = [msg for rel, msg in FENCE_ERRORS if rel == path]
    assert not errors, errors[0]
    bad = [
        f"{b.id}: fence language {b.language or '(none)'!r}; use python/bash to run it, text for output"
        for b in BLOCKS
        if b.path == path and b.language not in KNOWN_LANGUAGES
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", DOC_PATHS)
def test_test_suite_commands_are_what_ci_runs(path: str) -> None:
    ci = _ci_commands()
    missing = [
        f"{b.id}: {c}"
        for b in SUITE_COMMANDS
        if b.path == path
        for c in _commands(b.code)
        if PYTEST.search(c) and c not in ci
    ]
    assert not missing, "these commands run the test suite, so CI must run them word for word; not in .ci/run:\n" + (
        "\n".join(missing)
    )


@pytest.mark.parametrize("path", DOC_PATHS)
def test_yaml_and_json_blocks_parse(path: str) -> None:
    for block in BLOCKS:
        if block.path != path or block.language not in {"yaml", "yml", "json"}:
            continue
        try:
            json.loads(block.code) if block.language == "json" else list(yaml.safe_load_all(block.code))
        except (ValueError, yaml.YAMLError) as exc:
            pytest.fail(f"{block.id}: {block.language} block does not parse: {exc}")


def test_docs_exist_and_have_runnable_examples() -> None:
    paths = {f.relative_to(REPO).as_posix() for f in DOC_FILES}
    assert {"README.md", "docs/index.md", "docs/getting-started.md"} <= paths
    assert {b.path for b in RUNNABLE} >= {"docs/index.md", "docs/getting-started.md"}


# ---------------------------------------------------------------- the extractor itself
def test_parse_blocks_fences_languages_and_lines() -> None:
    text = (
        "# Title\n"  # 1
        "```python\n"  # 2
        "x = 1\n"
        "```\n"
        "- item\n"  # 5
        "    ~~~~bash title=\"run\"\n"  # 6
        "    echo hi\n"
        "      indented\n"
        "    ~~~~\n"
        "````text\n"  # 10
        "```python\n"
        "not a block of its own\n"
        "```\n"
        "````\n"
        "``` {.yaml}\n"  # 15
        "a: 1\n"
        "```\n"
        "```\n"  # 18
        "bare\n"
        "```\n"
        "inline ```code``` is no fence\n"
    )
    blocks = parse_blocks(text, "x.md")
    assert [(b.line, b.language) for b in blocks] == [(2, "python"), (6, "bash"), (10, "text"), (15, "yaml"), (18, "")]
    assert blocks[0].code == "x = 1\n"
    assert blocks[1].code == "echo hi\n  indented\n"
    assert blocks[2].code == "```python\nnot a block of its own\n```\n"
    assert blocks[0].id == "x.md:2"


def test_parse_blocks_unclosed_fence_names_its_line() -> None:
    with pytest.raises(FenceError, match=r"x\.md:3: fence '```' is never closed"):
        parse_blocks("a\n\n```python\nprint(1)\n~~~\n", "x.md")


@pytest.fixture(params=["fork", "fresh"])
def runner(request, block_server):
    return block_server if request.param == "fork" else None


def test_run_block_reports_markdown_line_numbers(tmp_path: Path, runner) -> None:
    block = Block("docs/fake.md", 40, "python", "import sys\nprint('out', sys.argv[0].endswith('.py'))\nraise SystemExit(1/0)\n")
    proc = run_block(block, tmp_path, runner)
    assert proc.returncode == 1
    assert proc.stdout == "out True\n"
    assert 'fake_md.py", line 43' in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert "block_server" not in proc.stderr and "runpy" not in proc.stderr


def test_run_block_python_is_a_fresh_script(tmp_path: Path, runner) -> None:
    code = (
        "import os, pathlib, tempfile, sys\n"
        "assert __name__ == '__main__'\n"
        "assert 'np' not in globals() and 'torch' not in globals()  # nothing leaks into the namespace\n"
        "assert pathlib.Path.cwd() == pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else os.environ['EXPECT_CWD'])\n"
        "assert tempfile.gettempdir() == os.environ['TMPDIR']\n"
        "assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
        "print(os.environ['" + NESTED_ENV + "'])\n"
        "raise SystemExit(3)\n"
    )
    os.environ["EXPECT_CWD"] = str(REPO)
    try:
        proc = run_block(Block("docs/fake.md", 7, "python", code), tmp_path, runner)
    finally:
        del os.environ["EXPECT_CWD"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "docs/fake.md:7\n", "")


@pytest.mark.parametrize("language", ["python", "bash"])
def test_run_block_times_out(tmp_path: Path, runner, monkeypatch, language: str) -> None:
    monkeypatch.setitem(globals(), "BLOCK_TIMEOUT_S", 2)
    code = "import time\ntime.sleep(60)\n" if language == "python" else "python -c 'import time; time.sleep(60)' | cat\n"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_block(Block("docs/fake.md", 1, language, code), tmp_path, runner)
    assert time.monotonic() - start < 30


def test_run_block_bash_fails_on_first_failing_command(tmp_path: Path, runner) -> None:
    code = 'test "$PWD" = "' + str(REPO) + '"\npython -c "import sys; print(sys.executable)"\n'
    ok = run_block(Block("docs/fake.md", 1, "bash", code), tmp_path, runner)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == sys.executable + "\n"  # the venv's interpreter, first on PATH
    bad = run_block(Block("docs/fake.md", 1, "bash", "python -c 'raise SystemExit(3)'\necho not reached\n"), tmp_path, runner)
    assert bad.returncode == 3 and "not reached" not in bad.stdout


def test_run_block_bash_commands_behave_as_the_real_ones(tmp_path: Path, block_server: BlockServer) -> None:
    """The server's ``losskit``/``python``: arguments, stdin, pipes, environment, exit status, fallback."""
    code = (
        "losskit --version\n"
        "losskit show no_such_loss || echo \"status $?\"\n"
        "echo hi | python -c 'import sys; print(sys.stdin.read().strip().upper(), sys.argv[1:])' a b\n"
        "losskit schema focal | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"title\"])'\n"
        "LOSSKIT_DISABLE_PLUGINS=focal python -m losskit list > \"$TMPDIR/list.txt\"\n"
        "grep -q focal \"$TMPDIR/list.txt\" || echo 'no focal'\n"
        "printf 'import sys\\nprint(sys.argv, __name__)\\nsys.exit(4)\\n' > \"$TMPDIR/s.py\"\n"
        "python \"$TMPDIR/s.py\" x || echo \"status $?\"\n"
        "python -X utf8 -c 'print(\"fallback\")'\n"
    )
    proc = run_block(Block("docs/fake.md", 1, "bash", code), tmp_path, block_server)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("losskit ") and lines[1] == "status 1"
    assert "unknown loss 'no_such_loss'" in proc.stderr
    lines = lines[2:]
    assert lines[0] == "HI ['a', 'b']"
    assert lines[1].startswith("Focal")
    assert lines[2] == "no focal"
    assert lines[3] == f"['{tmp_path}/s.py', 'x'] __main__"
    assert lines[4:] == ["status 4", "fallback"]
