"""What a reader of a bench report needs: untrustworthy ratios flagged, a title that fits, no CUDA noise on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from losskit.bench import CaseResult, ImplResult, Ratios, Timing, markdown_table, text_table
from losskit.bench.plot import make_figure
from losskit.bench.table import NOISY_MARK, WIDE_IQR, noisy_ratio
from losskit.cli import main


def _timing(median: float, iqr: float) -> Timing:
    return Timing(median_s=median, iqr_s=iqr, times_s=[median - iqr / 2, median, median + iqr / 2], number=1, warmup=0)


def _case(loss_iqr: float, base_iqr: float) -> CaseResult:
    rows = [
        ImplResult(impl="losskit", status="ok", forward=_timing(1e-3, 0.0), forward_backward=_timing(2e-3, loss_iqr * 2e-3)),
        ImplResult(impl="ref", status="ok", forward=_timing(1e-3, 0.0), forward_backward=_timing(4e-3, base_iqr * 4e-3)),
    ]
    return CaseResult(
        loss="focal", qualified_name="focal:focal", config={}, size_label="tiny", size={"N": 5}, dtype="fp32",
        device="cpu", seed=0, status="ok", impls=rows, ratios={"ref": Ratios(forward=1.0, forward_backward=0.5)},
    )


@pytest.mark.parametrize(("loss_iqr", "base_iqr", "noisy"), [(0.05, 0.1, False), (0.6, 0.1, True), (0.05, 0.4, True)])
def test_a_ratio_from_a_wide_iqr_is_marked_and_explained(loss_iqr, base_iqr, noisy):
    case = _case(loss_iqr, base_iqr)
    assert noisy_ratio(case, "ref") is noisy
    text, md = text_table([case]), markdown_table([case])
    ratio_cell = "0.50x" + (NOISY_MARK if noisy else "")
    assert f"{ratio_cell}  " in text.splitlines()[3] + "  " and f"| {ratio_cell} |" in md
    footer = f"interquartile range is over {WIDE_IQR:.0%} of its median"
    assert (footer in text) is noisy and (footer in md) is noisy


def test_the_png_title_fits_the_figure():
    title = (
        "losskit bench: AMD EPYC 7B13 64-Core Processor (cpu), fp32, torch 2.14.1+cu130, 2 threads, "
        "load average 1.99, 2.07, 1.53 at start"
    )
    fig = make_figure([_case(0.1, 0.1)], title=title)
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert "\n" in fig.axes[0].get_title()


def test_min_run_time_must_be_seconds(capsys):
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as info:
            main(["bench", "focal", "--min-run-time", bad])
        assert info.value.code == 2
        assert "argument --min-run-time: expected seconds" in capsys.readouterr().err
    with pytest.raises(ValueError, match="min_run_time: expected a finite number of seconds >= 0, got -1"):
        from losskit.bench import run_case

        run_case("focal", size="tiny", min_run_time=-1)


def test_no_cuda_runtime_warning_on_a_cpu_run(tmp_path):
    # a CUDA toolkit folder without a usable GPU: torch.utils.cpp_extension would log "No CUDA runtime is found"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "CUDA_HOME": str(tmp_path)}
    code = "import logging, sys\nlogging.basicConfig()\nfrom losskit.bench import time_callable\ntime_callable(lambda: None, repeat=1, warmup=0, min_run_time=0.0)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "No CUDA runtime" not in proc.stderr
    control = subprocess.run(
        [sys.executable, "-c", "import logging\nlogging.basicConfig()\nimport torch.utils.cpp_extension"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert "No CUDA runtime is found" in control.stderr  # the warning this test guards against exists
