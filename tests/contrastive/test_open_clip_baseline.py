"""The optional ``open_clip`` baselines of ``clip`` and ``siglip`` for ``losskit bench``:
declared when open_clip is installed (it is, by the dev extra) and equal to the loss on
its example inputs; open_clip is imported only when a baseline runs, and without it
losskit imports, lists its losses and declares no such baseline."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import losskit


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_open_clip_baseline_matches_the_loss_on_the_example_inputs(name):
    spec = losskit.get_spec(name)
    assert "open_clip" in spec.bench.baselines
    for size in ("tiny", "small"):
        inputs = spec.bench.example_inputs(
            spec.bench.sizes[size], dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0)
        )
        want = losskit.build(name, distributed="none")(*inputs.args, **inputs.kwargs)
        got = spec.bench.baselines["open_clip"](*inputs.args, **inputs.kwargs)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


_WITHOUT_OPEN_CLIP = textwrap.dedent(
    """
    import sys

    import losskit
    from losskit.cli import main
    from losskit.registry import Registry

    # installed: declared, but registering the losses does not import open_clip
    assert "open_clip" in Registry().get_spec("clip").bench.baselines
    assert "open_clip" not in sys.modules, "registration imported open_clip"

    sys.modules["open_clip"] = None  # from here on `import open_clip` fails: not installed
    registry = Registry()
    for name in ("clip", "siglip"):
        assert "open_clip" not in registry.get_spec(name).bench.baselines, name
    assert "dense_ce" in registry.get_spec("clip").bench.baselines
    assert main(["list"]) == 0
    """
)


def test_without_open_clip_losskit_lists_and_declares_no_open_clip_baseline():
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_OPEN_CLIP], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split()
    assert {"clip", "siglip", "infonce"} <= set(listed), proc.stdout
