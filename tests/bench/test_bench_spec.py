"""BenchSpec: the one typed object a plugin gives ``register(..., bench=...)``, and the old keywords' deprecation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import losskit
from losskit.bench import BenchSpec, run_case
from losskit.errors import PluginWarning
from losskit.registry import Registry


def _inputs(size, *, dtype, device, generator) -> losskit.Inputs:
    return losskit.Inputs((torch.randn(size["N"], generator=generator, dtype=dtype).requires_grad_(True),), {})


def _square_loss():
    from losskit_focal import FocalConfig, FocalLoss

    return FocalLoss, FocalConfig


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sizes": {}}, TypeError, "sizes: expected a non-empty mapping"),
        ({"sizes": {"tiny": {"N": 0}}}, ValueError, r"sizes\['tiny'\]\['N'\]: expected an int >= 1, got 0"),
        ({"sizes": {"tiny": {"N": True}}}, ValueError, r"sizes\['tiny'\]\['N'\]: expected an int >= 1, got True"),
        ({"example_inputs": 3}, TypeError, "example_inputs: expected a callable input factory, got 3"),
        ({"baselines": {"ref": "not callable"}}, TypeError, r"baselines: expected a mapping of label \(str\) -> callable"),
        ({"throughput_keys": "N"}, TypeError, "throughput_keys: expected a non-empty tuple of size keys"),
        ({"throughput_unit": ""}, TypeError, "throughput_unit: expected a non-empty str"),
    ],
)
def test_bench_spec_rejects_bad_fields_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        BenchSpec(**kwargs)


def test_bench_spec_is_stored_on_the_loss_spec_and_drives_the_bench():
    loss_class, config_class = _square_loss()
    bench = BenchSpec(example_inputs=_inputs, sizes={"tiny": {"N": 5}}, baselines={"sum": lambda x: x.sum()})

    class Plugin:
        @losskit.hookimpl
        def register_losses(self, register):
            register("sq", loss_class, config=config_class, bench=bench)

    reg = Registry(autoload=False)
    reg.add_plugin(Plugin(), "benchy")
    spec = reg.get_spec("sq")
    assert spec.bench is bench and spec.bench.baselines.keys() == {"sum"}
    with pytest.warns(DeprecationWarning, match=r"LossSpec.sizes is deprecated; read spec.bench.sizes"):
        assert spec.sizes == {"tiny": {"N": 5}}


def test_old_register_keywords_warn_and_still_work():
    loss_class, config_class = _square_loss()

    class Legacy:
        @losskit.hookimpl
        def register_losses(self, register):
            register("old", loss_class, config=config_class, example_inputs=_inputs, sizes={"tiny": {"N": 3}})

    reg = Registry(autoload=False)
    with pytest.warns(DeprecationWarning, match=r"register\('old', \.\.\., example_inputs=, sizes=\) is deprecated") as rec:
        reg.add_plugin(Legacy(), "legacy")
    assert rec[0].filename == __file__  # points at the plugin's register(...) call
    assert reg.get_spec("old").bench == BenchSpec(example_inputs=_inputs, sizes={"tiny": {"N": 3}})


def test_mixing_bench_and_old_keywords_or_unknown_keywords_fails_the_plugin():
    loss_class, config_class = _square_loss()

    class Mixed:
        @losskit.hookimpl
        def register_losses(self, register):
            register("mixed", loss_class, config=config_class, bench=BenchSpec(), sizes={"tiny": {"N": 3}})

    class Typo:
        @losskit.hookimpl
        def register_losses(self, register):
            register("typo", loss_class, config=config_class, bench_spec=BenchSpec())

    class NotASpec:
        @losskit.hookimpl
        def register_losses(self, register):
            register("nas", loss_class, config=config_class, bench={"sizes": {}})

    reg = Registry(autoload=False)
    with pytest.warns(PluginWarning, match=r"got bench= and \['sizes'\]; use bench= only"):
        assert reg.add_plugin(Mixed(), "mixed").status == "failed"
    with pytest.warns(PluginWarning, match=r"unexpected keyword\(s\) \['bench_spec'\]; expected config=, summary=, bench="):
        assert reg.add_plugin(Typo(), "typo").status == "failed"
    with pytest.warns(PluginWarning, match=r"bench of 'nas' must be a losskit.bench.BenchSpec, got \{"):
        assert reg.add_plugin(NotASpec(), "nas").status == "failed"


def test_the_example_plugin_declares_a_bench_spec_and_runs():
    spec = losskit.get_spec("focal")
    assert isinstance(spec.bench, BenchSpec) and "torchvision.sigmoid_focal_loss" in spec.bench.baselines
    case = run_case("focal", size="tiny", repeat=1, warmup=0, min_run_time=0.0, memory=False)
    assert case.status == "ok" and set(case.ratios) == {"torchvision.sigmoid_focal_loss"}


def test_importing_bench_spec_does_not_load_the_timing_machinery():
    code = (
        "import sys\nfrom losskit.bench import BenchSpec\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('losskit.bench.') or m == 'torch.utils.benchmark')\n"
        "assert loaded == ['losskit.bench.spec'], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
