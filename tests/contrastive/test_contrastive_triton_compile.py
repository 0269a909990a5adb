"""The fused contrastive kernels compile for the GPU (Hopper, sm_90a) on a machine without one.

The interpreter tests run the kernels' logic; this compiles each kernel variant the losses
launch, with the block sizes of ``triton_sweep.blocks``, through Triton's whole pipeline to
PTX and assembles it with Triton's bundled ``ptxas -v``: it catches what only the compiler
rejects and register spills from block sizes that do not fit.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

assert os.environ.get("TRITON_INTERPRET", "0") != "1", "compile checks need the real Triton JIT"

from losskit_plugins.contrastive import triton_kernels as K  # noqa: E402
from losskit_plugins.contrastive.triton_sweep import blocks  # noqa: E402

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
VECTORS = ["ra_ptr", "rb_ptr", "scale_ptr", "bias_ptr", "in_ptr", "out_ptr", "out2_ptr", "out3_ptr", "gsum_ptr", "ca_ptr", "cb_ptr"]


def _compile(fn, dtype: str, consts: dict) -> str:
    cfg = blocks(torch.bfloat16 if dtype == "bf16" else torch.float32, consts["POS"] == 2)
    consts = {**consts, "BM": cfg["BM"], "BN": cfg["BN"], "BK": cfg["BK"], "UPCAST": False}
    types = {"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "ga_ptr": "*i64", "gb_ptr": "*i64", "mask_ptr": "*u8", "arg_ptr": "*i64"}
    signature = {
        name: "constexpr" if name in consts else types.get(name, "*fp32" if name in VECTORS else "i32")
        for name in fn.arg_names
    }
    src = ASTSource(fn, signature, constexprs=consts)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]})
    return kernel.asm["ptx"]


def _spills(ptx: str, tmp_path: Path) -> int:
    path = tmp_path / "kernel.ptx"
    path.write_text(ptx)
    run = subprocess.run([str(PTXAS), "-v", "--gpu-name=sm_90a", str(path), "-o", os.devnull], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return int(re.search(r"(\d+) bytes spill stores", run.stderr).group(1))


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize(
    "kernel, consts",
    [
        ("stats", {"KIND": 0, "POS": 1, "NEG": True, "ARGMAX": True}),  # clip rows with group ids and metrics
        ("stats", {"KIND": 3, "POS": 1, "NEG": False, "ARGMAX": False}),  # the positives' terms, group ids
        ("stats", {"KIND": 1, "POS": 0, "NEG": False, "ARGMAX": False}),  # siglip
        ("grad", {"KIND": 0, "POS": 2, "A_TERMS": True, "B_TERMS": True}),  # clip with a mask, both directions
        ("grad", {"KIND": 1, "POS": 0, "A_TERMS": False, "B_TERMS": True}),  # siglip's column sweep
    ],
    ids=["stats-softmax-groups", "stats-positives", "stats-sigmoid", "grad-softmax-mask", "grad-sigmoid"],
)
def test_kernels_compile_for_hopper_without_spilling(kernel, consts, dtype, tmp_path):
    fn = K.stats_kernel if kernel == "stats" else K.grad_kernel
    ptx = _compile(fn, dtype, {**consts, "PRECISION": "ieee"})
    assert ("wgmma" in ptx) == (dtype == "bf16")  # tensor cores for half operands; IEEE fp32 on the FMA units
    assert _spills(ptx, tmp_path) <= 128  # a few registers; BK = 64 or 4 warps spill 200-900 bytes


def test_tf32x3_precision_compiles_to_tensor_cores():
    ptx = _compile(K.grad_kernel, "fp32", {"KIND": 0, "POS": 1, "A_TERMS": True, "B_TERMS": True, "PRECISION": "tf32x3"})
    assert "wgmma" in ptx
