"""Size, device and dtype resolution; out-of-memory detection on real allocator errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

import losskit
from losskit.bench import is_oom, parse_size, resolve_device
from losskit.bench.cases import check_size_keys, resolve_size, throughput_keys


@pytest.mark.parametrize(
    "text, expected",
    [
        ("small", ("small", {})),
        ("B=512,D=128", (None, {"B": 512, "D": 128})),
        ("medium, B=1_024", ("medium", {"B": 1024})),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text, msg",
    [("small,medium", "two presets"), ("B=x", "integer"), ("B=0", ">= 1"), ("small,", "empty item")],
)
def test_parse_size_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_size(text)


def test_resolve_size_applies_overrides_on_the_preset():
    spec = losskit.get_spec("focal")
    assert resolve_size(spec, "small") == ("small", dict(spec.bench.sizes["small"]))
    label, dims = resolve_size(spec, "medium,N=7,B=3")  # B is not a focal key: ignored for it
    assert dims == {**spec.bench.sizes["medium"], "N": 7} and label == "medium,N=7"
    assert resolve_size(spec, {"N": 2, "C": 3}) == ("N=2,C=3", {"N": 2, "C": 3})


def test_resolve_size_errors_name_the_loss_and_choices():
    spec = losskit.get_spec("focal")
    with pytest.raises(ValueError, match="focal has no size preset 'huge'; presets: tiny, small"):
        resolve_size(spec, "huge")
    with pytest.raises(ValueError, match=r"missing \['C'\]"):
        resolve_size(spec, {"N": 2})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['Q'\]"):
        check_size_keys([spec], "Q=3")


def test_throughput_keys_default_to_B_then_N():
    spec = losskit.get_spec("focal")  # declares no throughput_keys
    assert throughput_keys(spec, {"B": 2, "D": 3}) == ("B",)
    assert throughput_keys(spec, {"N": 2, "C": 3}) == ("N",)
    assert throughput_keys(spec, {"T": 2}) is None


_RESOLVE_WITHOUT_CUDA = """
import torch
from losskit.bench import resolve_device

assert not torch.cuda.is_available()
assert resolve_device("auto") == torch.device("cpu")
try:
    resolve_device("cuda")
except ValueError as exc:
    print(exc)
"""


def test_cuda_without_cuda_is_a_clear_error(no_cuda_env):
    proc = subprocess.run(
        [sys.executable, "-c", _RESOLVE_WITHOUT_CUDA], capture_output=True, text=True, timeout=120, env=no_cuda_env
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"CUDA is not available.*use --device cpu or auto", proc.stdout), proc.stdout


def test_unknown_device():
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_is_oom_recognises_the_cpu_allocator_failure():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**50, dtype=torch.uint8)
    assert is_oom(info.value)
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))  # only allocator errors count


def test_busy_warning_compares_load_and_threads_with_the_cpus():
    from losskit.bench.machine import busy_warning, machine_info

    info = machine_info(torch.device("cpu"))
    idle = info.model_copy(update={"load_average": [0.0, 0.0, 0.0], "cpu_count": 4, "torch_threads": 2})
    busy = idle.model_copy(update={"load_average": [7.5, 5.0, 3.0]})
    assert busy_warning(idle) is None
    assert "load average 7.5 on 4 CPUs, 2 torch threads" in busy_warning(busy)
    assert busy_warning(busy).endswith("or use --threads 1")
    assert "--threads" not in busy_warning(busy.model_copy(update={"torch_threads": 1}))
    assert busy_warning(busy.model_copy(update={"device": "cuda:0"})) is None
