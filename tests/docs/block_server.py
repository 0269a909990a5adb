"""Fork server that runs the docs' Python code without paying torch's import every time.

Started once per test worker by ``test_doc_blocks.py`` as ``python block_server.py SOCKET``.
It imports the heavy, side-effect-free modules (torch, torchvision, numpy, pydantic, yaml
and the ``losskit`` package — not its plugins: the registry loads lazily, inside each
run, under that run's environment), then forks one child per run. A child starts a new
session, takes the run's working directory, environment and standard streams, runs the
code in a fresh ``__main__`` and exits with its status — what ``python ...`` would do,
minus the imports already done.

Two ways in:

- stdin, one JSON request per line, for ``python`` blocks::

      {"script": PATH, "cwd": DIR, "env": {...}, "stdout": PATH, "stderr": PATH, "timeout": SECONDS}

  answered on stdout with ``{"returncode": N}`` (plus ``"timeout": true`` when the
  block's process group had to be killed).
- the Unix socket ``SOCKET``, for the ``losskit`` / ``python`` commands of ``bash`` blocks
  (see ``block_client.py``): a request with the client's stdin/stdout/stderr passed as
  file descriptors, answered with the exit status. A client that goes away (its block
  timed out) gets its run killed.
"""

from __future__ import annotations

import atexit
import builtins
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass

PRELOAD = ("numpy", "torch", "torchvision", "pydantic", "yaml", "losskit", "losskit.cli")
HEADER = struct.Struct("!Q")  # length of the JSON body that follows the client's file descriptors


# ----------------------------------------------------------------------------- the child
def _setup(cwd: str, env: dict[str, str], fds: tuple[int, int, int]) -> None:
    os.setsid()  # the run and anything it starts form one process group, killed together
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # recomputed from the run's TMPDIR
    for target, fd in zip(fds, (0, 1, 2)):
        if target != fd:
            os.dup2(target, fd)


def _run(kind: str, target: str, argv: list[str]) -> int:
    """Run like ``python script`` / ``python -c code`` / ``python -m module`` / ``losskit``; return the status."""
    sys.argv = list(argv)
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    code = 0
    try:
        if kind == "script":
            sys.path[0] = os.path.dirname(os.path.abspath(target))
            runpy.run_path(target, run_name="__main__")
        elif kind == "code":
            sys.path[0] = ""
            sys.modules["__main__"] = main
            exec(compile(target, "<string>", "exec"), main.__dict__)  # noqa: S102 - it is `python -c`
        elif kind == "module":
            sys.path[0] = os.getcwd()
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:  # the losskit console script
            from losskit.cli import main as cli_main

            code = cli_main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:  # noqa: BLE001 - reported like the interpreter would
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, "<frozen runpy>", runpy.__file__):
            tb = tb.tb_next  # the server's own frames: `python script` would not show them
        traceback.print_exception(type(exc), exc, tb)
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _fork(setup_and_run) -> int:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = setup_and_run()
        finally:
            os._exit(code)
    return pid


# ---------------------------------------------------------------------------- the server
@dataclass
class _Job:
    conn: socket.socket | None = None  # a client's connection, or None for a stdin block
    deadline: float | None = None


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _block_request(request: dict) -> tuple[int, _Job]:
    def run() -> int:
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _setup(request["cwd"], request["env"], (os.open(os.devnull, os.O_RDONLY), out, err))
        return _run("script", request["script"], [request["script"]])

    return _fork(run), _Job(deadline=time.monotonic() + request["timeout"])


def _client_request(conn: socket.socket) -> tuple[int, _Job]:
    header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
    (size,) = HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client closed mid-request")
        body += chunk
    request = json.loads(body)

    def run() -> int:
        _setup(request["cwd"], request["env"], tuple(fds))
        return _run(request["kind"], request["target"], request["argv"])

    pid = _fork(run)
    for fd in fds:
        os.close(fd)
    return pid, _Job(conn=conn)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    sel.register(listener, selectors.EVENT_READ, "listen")
    jobs: dict[int, _Job] = {}
    pending = b""
    print(json.dumps({"ready": True}), flush=True)
    while True:
        for key, _ in sel.select(timeout=0.02):
            if key.data == "stdin":
                data = os.read(sys.stdin.fileno(), 1 << 16)
                if not data:  # the test worker is done
                    for pid in jobs:
                        _kill(pid)
                    return
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    pid, job = _block_request(json.loads(line))
                    jobs[pid] = job
            elif key.data == "listen":
                conn, _ = listener.accept()
                try:
                    pid, job = _client_request(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                jobs[pid] = job
                sel.register(conn, selectors.EVENT_READ, pid)
            else:  # a client's connection became readable: it went away
                pid = key.data
                sel.unregister(key.fileobj)
                _kill(pid)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            job = jobs.pop(pid, None)
            if job is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if job.conn is None:
                print(json.dumps({"returncode": code}), flush=True)
            else:
                try:
                    sel.unregister(job.conn)
                except KeyError:
                    pass
                try:
                    job.conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
                except OSError:
                    pass
                job.conn.close()
        now = time.monotonic()
        for pid, job in list(jobs.items()):
            if job.deadline is not None and now > job.deadline:
                _kill(pid)
                os.waitpid(pid, 0)
                del jobs[pid]
                print(json.dumps({"returncode": -signal.SIGKILL, "timeout": True}), flush=True)


if __name__ == "__main__":
    main()
