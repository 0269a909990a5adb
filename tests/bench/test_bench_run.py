"""run_case on real registered losses (tiny sizes): structure, ratios, memory, OOM rows."""

from __future__ import annotations

import sys

import pytest

import losskit
from losskit.bench import LOSS_IMPL, BenchSpec, plot_cases, run_case, run_cases, text_table

FAST = {"repeat": 2, "warmup": 1, "min_run_time": 0.001}


def _benchable() -> list[str]:
    return [n for n in losskit.list_losses() if losskit.get_spec(n).bench.example_inputs is not None]


@pytest.mark.parametrize("name", _benchable())
def test_every_registered_loss_is_timed_on_cpu_with_its_baselines(name):
    spec = losskit.get_spec(name)
    case = run_case(name, size="tiny", memory=False, **FAST)
    assert case.qualified_name == spec.qualified_name and case.size == dict(spec.bench.sizes["tiny"])
    assert [r.impl for r in case.impls] == [LOSS_IMPL, *spec.bench.baselines]
    for r in case.impls:
        assert r.status == "ok", f"{r.impl}: {r.error}"
        assert r.forward is not None and r.forward_backward is not None
        assert len(r.forward.times_s) == len(r.forward_backward.times_s) == FAST["repeat"]
        assert r.memory is None
    assert set(case.ratios) == set(spec.bench.baselines)


def test_memory_of_every_registered_loss_in_one_isolated_process():
    names = _benchable()
    cases = run_cases(names, sizes=["tiny"], **FAST)
    assert [c.loss for c in cases] == names
    for case in cases:
        for r in case.impls:
            assert r.status == "ok", f"{case.loss} {r.impl}: {r.error}"
            assert r.memory is not None and r.memory.status == "ok", f"{case.loss} {r.impl}: {r.memory}"
            assert r.memory.peak_bytes >= 0 and r.memory.method in ("rss_hwm", "ru_maxrss")


def test_ratios_throughput_and_config_come_from_the_same_run():
    case = run_case("focal", size="tiny", config={"gamma": 1.5}, memory=False, **FAST)
    main, base = case.main, case.impl("torchvision.sigmoid_focal_loss")
    ratio = case.ratios[base.impl]
    assert ratio.forward == pytest.approx(main.forward.median_s / base.forward.median_s)
    assert ratio.forward_backward == pytest.approx(main.forward_backward.median_s / base.forward_backward.median_s)
    assert case.throughput_keys == ["N"] and case.throughput_unit == "samples"
    assert main.throughput == pytest.approx(case.size["N"] / main.forward_backward.median_s)
    assert case.config == {"reduction": "mean", "alpha": 0.25, "gamma": 1.5}
    with pytest.raises(KeyError, match="no implementation 'nope'"):
        case.impl("nope")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the exact RSS peak needs /proc (Linux)")
def test_cpu_memory_sees_a_known_allocation(probe):
    case = run_case("bench_probe:alloc", size="tiny", baselines=False, **FAST)
    mem = case.main.memory
    expected = probe.ALLOC_K * 4  # one [K] float32 scratch tensor per forward
    assert mem.method == "rss_hwm"
    assert 0.95 * expected <= mem.peak_bytes <= 1.25 * expected


def test_oom_and_errors_are_rows_not_crashes(probe, tmp_path):
    case = run_case("bench_probe:alloc", size="tiny", memory=False, **FAST)
    rows = {r.impl: r for r in case.impls}
    assert rows[LOSS_IMPL].status == "ok"
    assert rows["hog"].status == "oom" and "allocate" in rows["hog"].error
    assert rows["broken"].status == "error" and rows["broken"].error == "ValueError: broken baseline"
    assert case.ratios == {}  # nothing to compare with
    table = text_table([case])
    assert "OOM" in table and "ERROR" in table and "! bench_probe:alloc broken: ValueError: broken baseline" in table
    png = plot_cases([case], tmp_path / "oom.png")  # rows without timings are labelled, not dropped
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_memory_process_killed_by_sigkill_is_reported_as_oom(probe):
    case = run_case("bench_probe:killer", size="tiny", **FAST)
    assert case.status == "oom" and case.main.memory.status == "oom"
    assert "SIGKILL" in case.main.error
    assert case.main.forward is not None  # the timing itself had succeeded


def test_inputs_that_do_not_fit_make_every_row_oom():
    case = run_case("focal", size="N=100000000,C=10000000", memory=False, **FAST)
    assert [r.status for r in case.impls] == ["oom", "oom"]
    assert case.status == "oom"


def test_declared_throughput_keys_multiply_and_name_the_unit(probe):
    case = run_case("bench_probe:killer", size="tiny,B=6", memory=False, **FAST)
    assert case.throughput_keys == ["B", "K"] and case.throughput_unit == "cells"
    assert case.main.throughput == pytest.approx(6 * probe.ALLOC_K / case.main.forward_backward.median_s)
    assert " cells/s" in text_table([case])


def test_throughput_keys_must_exist_in_every_size_preset():
    class Plugin:
        @losskit.hookimpl
        def register_losses(self, register):
            spec = losskit.get_spec("focal")
            bench = BenchSpec(sizes=spec.bench.sizes, throughput_keys=("N", "T"))
            register("bad_keys", spec.loss_class, config=spec.config_class, bench=bench)

    with pytest.raises(ValueError, match=r"throughput_keys: \('N', 'T'\) must be keys of every size preset \(missing in"):
        BenchSpec(sizes={"tiny": {"N": 2}}, throughput_keys=("N", "T"))
    with pytest.warns(losskit.errors.PluginWarning, match=r"throughput_keys: .*missing in"):
        with losskit.temporary_plugin(Plugin(), "bench_bad_keys") as info:
            assert info.status == "failed"


def test_single_case_rejects_unknown_size_keys():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['B'\]"):
        run_case("focal", size="tiny,B=3")


def test_run_cases_covers_names_and_sizes_and_checks_keys():
    cases = run_cases(["focal"], sizes=["tiny", "tiny,N=7"], memory=False, **FAST)
    assert [(c.loss, c.size["N"]) for c in cases] == [("focal", 5), ("focal", 7)]
    with pytest.raises(ValueError, match="unknown key"):
        run_cases(["focal"], sizes=["Z=3"], memory=False, **FAST)


def test_bad_arguments_raise_before_running():
    with pytest.raises(ValueError, match="dtype"):
        run_case("focal", dtype="fp64")
    with pytest.raises(losskit.errors.UnknownLossError):
        run_case("no_such_loss_xyz")
    with pytest.raises(losskit.errors.ConfigError, match="gamma"):
        run_case("focal", size="tiny", config={"gamma": -1})
