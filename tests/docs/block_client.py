"""``losskit`` and ``python`` as seen by the docs' bash blocks: forwarded to the fork server.

``test_doc_blocks.py`` copies this file, with a ``#!PYTHON -IS`` line, under the names
``losskit``, ``python`` and ``python3`` into a folder put first on the blocks' ``PATH``.
Run as ``losskit ARGS``, ``python SCRIPT ARGS``, ``python -c CODE ARGS`` or
``python -m MODULE ARGS``, it hands the command, its working directory, environment and
standard streams (as file descriptors) to ``block_server.py`` over the socket named by
``LOSSKIT_DOCS_SERVER`` and exits with the status the server reports. Any other form
(options before the script, ``-`` for stdin, an interactive session), or no server, runs
the real interpreter or console script instead, unchanged.
"""

import json
import os
import socket
import struct
import sys

HEADER = struct.Struct("!Q")


def _request(name, argv):
    if name == "losskit":
        return {"kind": "losskit", "target": "", "argv": ["losskit", *argv]}
    if argv and argv[0] == "-c" and len(argv) >= 2:
        return {"kind": "code", "target": argv[1], "argv": ["-c", *argv[2:]]}
    if argv and argv[0] == "-m" and len(argv) >= 2:
        return {"kind": "module", "target": argv[1], "argv": [argv[1], *argv[2:]]}
    if argv and not argv[0].startswith("-"):
        return {"kind": "script", "target": argv[0], "argv": argv}
    return None


def _fallback(name, argv):
    real = os.environ["LOSSKIT_DOCS_REAL_BIN"]
    program = os.path.join(real, "losskit" if name == "losskit" else "python")
    os.execv(program, [program, *argv])


def main():
    name = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    request = _request(name, argv)
    address = os.environ.get("LOSSKIT_DOCS_SERVER")
    if request is None or not address:
        _fallback(name, argv)
    request.update(cwd=os.getcwd(), env=dict(os.environ))
    body = json.dumps(request).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except OSError:
        _fallback(name, argv)
    socket.send_fds(conn, [HEADER.pack(len(body))], [0, 1, 2])
    conn.sendall(body)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            sys.exit(f"{name}: the docs block server went away")
        reply += chunk
    code = json.loads(reply)["returncode"]
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
