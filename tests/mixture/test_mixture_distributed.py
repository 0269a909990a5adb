"""DWA over torch.distributed (gloo, 2 real processes): every rank uses the rank-averaged window means."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    import losskit

    rank, world, init_file, out_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mixture = losskit.build({
        "name": "mixture",
        "terms": {"a": {"name": "focal"}, "b": {"name": "focal", "gamma": 0.0}},
        "weighting": "dwa",
        "dwa": {"window": 3, "temperature": 1.5},
    })
    g = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
    local, lambdas = [], []
    for step in range(9):
        x = torch.randn(6, 4, generator=g) * (1 + rank + step)
        y = (torch.rand(6, 4, generator=g) < 0.5).float()
        out = mixture.compute(a=(x, y), b=(x, y))
        local.append([out.parts["a"].item(), out.parts["b"].item()])
        lambdas.append([out.metrics["dwa_lambda/a"].item(), out.metrics["dwa_lambda/b"].item()])
    json.dump({"local": local, "lambdas": lambdas, "means": mixture.weighting.window_means.tolist()}, open(out_file, "w"))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_dwa_window_means_are_averaged_over_ranks(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init = tmp_path / "init"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), "2", str(init), str(tmp_path / f"rank{r}.json")])
        for r in range(2)
    ]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["local"] != ranks[1]["local"]
    # windows of 3 calls: 3 windows closed; window_means holds the last two, averaged over ranks
    for slot, window in ((0, 1), (1, 2)):
        for term in range(2):
            want = sum(sum(r["local"][3 * window + i][term] for i in range(3)) / 3 for r in ranks) / 2
            assert ranks[0]["means"][slot][term] == pytest.approx(want, rel=1e-6)
    assert ranks[0]["means"] == ranks[1]["means"]
    assert ranks[0]["lambdas"] == ranks[1]["lambdas"]  # hence the same weights on every rank
    assert ranks[0]["lambdas"][-1] != [1.0, 1.0]
