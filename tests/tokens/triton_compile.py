"""Compile the token row kernel for an H100/H200 (sm_90) on a machine without a GPU.

Triton lowers it to PTX and its bundled ``ptxas`` assembles the cubin, so whatever the
CPU interpreter lets through but the real compiler rejects (type changes of loop-carried
values, constexpr misuse, unsupported ops) fails here. Run by
``test_triton_compiles.py`` in a subprocess without ``TRITON_INTERPRET``; prints the
register count and spills ptxas reports for each variant, at the block size and warp
count the launcher picks for Qwen2's vocabulary (V = 151936) and for V = 4096.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from losskit_plugins.tokens.triton_kernel import _token_rows_kernel, launch_config

TARGET = GPUTarget("cuda", 90, 32)


def _boxes_helper():
    """``tests/boxes/triton_compile.py``, whose ``ptxas_report`` assembles PTX with Triton's ptxas."""
    path = Path(__file__).resolve().parents[1] / "boxes" / "triton_compile.py"
    spec = importlib.util.spec_from_file_location("boxes_triton_compile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ptxas_report = _boxes_helper().ptxas_report


def types(logits: str, acc: str) -> dict[str, str]:
    return {"x_ptr": f"*{logits}", "x_stride": "i64", "g_ptr": f"*{logits}", "g_stride": "i64", "index_ptr": "*i64",
            "scale_ptr": f"*{acc}", "cw_ptr": f"*{acc}", "loss_ptr": f"*{acc}", "ce_ptr": f"*{acc}",
            "lse_ptr": f"*{acc}", "correct_ptr": "*i8", "V": "i32", "eps": "fp32", "zc": "fp32", "softcap": "fp32"}


def build(logits: str, acc: str, flags: dict[str, bool], num_classes: int):
    import triton.language as tl

    block, num_warps = launch_config(num_classes)
    constants = {"ACC": tl.float64 if acc == "fp64" else tl.float32, "BLOCK": block, **flags}
    names = _token_rows_kernel.arg_names
    signature = {name: "constexpr" if name in constants else types(logits, acc)[name] for name in names}
    source = ASTSource(fn=_token_rows_kernel, signature=signature, constexprs={(names.index(k),): v for k, v in constants.items()})
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps})


def main() -> None:
    assert os.environ.get("TRITON_INTERPRET", "0") != "1", "compile without the interpreter"
    every = {"HAS_CW": True, "SMOOTH": True, "Z": True, "SOFTCAP": True, "WRITE_GRAD": True}
    plain = {"HAS_CW": False, "SMOOTH": False, "Z": False, "SOFTCAP": False, "WRITE_GRAD": True}
    forward_only = {**plain, "WRITE_GRAD": False}
    variants = [("bf16 every option", "bf16", every), ("bf16 plain", "bf16", plain),
                ("fp16 forward only", "fp16", forward_only), ("fp32 every option", "fp32", every)]
    for v in (151936, 4096):
        for name, logits, flags in variants:
            print(f"VARIANT={name} V={v}: {ptxas_report(build(logits, 'fp32', flags, v).asm['ptx'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
