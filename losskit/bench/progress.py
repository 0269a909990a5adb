"""The progress bar of a bench run (tqdm, from the ``tools`` extra), or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from losskit.extras import require

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(steps: int, progress: bool) -> Iterator[Callable[[str], None]]:
    """A step callback updating a tqdm bar on stderr (shown only on a terminal), or a no-op."""
    if not progress:
        yield lambda _msg: None
        return
    require("losskit bench's progress bar", ("tqdm",))
    from tqdm.auto import tqdm

    with tqdm(total=steps, disable=None, unit="impl", desc="losskit bench", leave=False) as bar:

        def on_step(msg: str) -> None:
            bar.set_postfix_str(msg, refresh=False)
            bar.update(1)

        yield on_step
