"""Compile the fused ``bbox`` kernels for an H100/H200 (sm_90) on a machine without a GPU.

Triton lowers them to PTX and its bundled ``ptxas`` assembles the cubin, so whatever the
CPU interpreter lets through but the real compiler rejects (non-constexpr globals,
type mismatches between branches, unsupported ops) fails here. Run by
``test_boxes_triton.py`` in a subprocess without ``TRITON_INTERPRET``; prints the
register count and spills ptxas reports for each kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from losskit_plugins.boxes.triton_kernels import bbox_backward, bbox_forward

TARGET = GPUTarget("cuda", 90, 32)
FORWARD = {"pred_ptr": "*fp32", "target_ptr": "*fp32", "weight_ptr": "*fp32", "l1_ptr": "*fp32", "term_ptr": "*fp32",
           "partial_ptr": "*fp32", "n": "i32", "eps": "fp32", "beta": "fp32"}
BACKWARD = {"pred_ptr": "*bf16", "target_ptr": "*fp32", "weight_ptr": "*fp16", "g_l1_ptr": "*fp32", "g_l1_stride": "i32",
            "g_term_ptr": "*fp32", "g_term_stride": "i32", "d_pred_ptr": "*bf16", "d_target_ptr": "*fp32",
            "d_weight_ptr": "*fp16", "n": "i32", "eps": "fp32", "beta": "fp32", "P_MAX": "fp32", "T_MAX": "fp32"}


def build(fn, types: dict[str, str], constants: dict[str, object]):
    names = fn.arg_names
    signature = {name: "constexpr" if name in constants else types[name] for name in names}
    source = ASTSource(fn=fn, signature=signature, constexprs={(names.index(k),): v for k, v in constants.items()})
    return triton.compile(source, target=TARGET, options={"num_warps": 8})


def ptxas_report(ptx: str) -> str:
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    arch = "sm_90a" if ".target sm_90a" in ptx else "sm_90"
    done = subprocess.run([str(ptxas), f"-arch={arch}", "-v", f.name, "-o", os.devnull], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return " ".join(line.split(":", 1)[-1].strip() for line in done.stderr.splitlines() if "registers" in line or "spill" in line)


def main() -> None:
    assert os.environ.get("TRITON_INTERPRET", "0") != "1", "compile without the interpreter"
    for kind, fmt, clamp, l1, smooth, weighted in [(4, 2, True, True, True, True), (2, 0, False, False, False, False)]:
        common = {"FMT": fmt, "CLAMP": clamp, "KIND": kind, "L1": l1, "SMOOTH": smooth, "HAS_W": weighted, "BLOCK": 512}
        fwd = build(bbox_forward, FORWARD, {**common, "PER_BOX": not weighted})
        bwd = build(bbox_backward, BACKWARD, {**common, "NEED_P": True, "NEED_T": True, "NEED_W": weighted})
        for name, kernel in (("forward", fwd), ("backward", bwd)):
            print(f"KIND={kind} {name}: {ptxas_report(kernel.asm['ptx'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
