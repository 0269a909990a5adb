"""Reading the stderr of a trainer subprocess."""

import re


def own_lines(stderr: str) -> list[str]:
    """The lines of a subprocess's stderr without torch's own log lines (``W1204 12:00:00.0 ... file.py:183] ...``,
    e.g. its "No CUDA runtime is found" notice on machines without CUDA)."""
    return [line for line in stderr.splitlines() if line.strip() and not re.match(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d", line)]
