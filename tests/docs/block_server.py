"""Fork server that runs documentation ``python`` blocks as scripts, without paying torch's import each time.

Started once per test worker by ``test_doc_blocks.py`` (``python block_server.py``). It
imports the heavy, side-effect-free modules (torch, torchvision, numpy, pydantic, yaml and
the ``losskit`` package — not its plugins: the registry loads lazily, inside each block),
then serves one request per line on stdin, a JSON object::

    {"script": PATH, "cwd": DIR, "env": {...}, "stdout": PATH, "stderr": PATH, "timeout": SECONDS}

For each it forks; the child starts a new session, takes the block's working directory
and environment, sends its stdout/stderr to the given files and runs the script with
``runpy.run_path(script, run_name="__main__")`` in fresh globals — what ``python script``
does, minus the imports already done. The server answers one JSON line
``{"returncode": N}`` (``"timeout": true`` when it had to kill the block's process group).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback

PRELOAD = ("numpy", "torch", "torchvision", "pydantic", "yaml", "losskit")


def _child(request: dict) -> int:
    os.setsid()  # the block and anything it starts form one process group, killed together on timeout
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # recomputed from the block's TMPDIR
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    script = request["script"]
    sys.argv = [script]
    sys.path[0] = os.path.dirname(script)  # as `python script` sets it
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like the interpreter would
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return {"returncode": -signal.SIGKILL, "timeout": True}
        time.sleep(0.02)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                os._exit(code)
        print(json.dumps(_wait(pid, request["timeout"])), flush=True)


if __name__ == "__main__":
    main()
