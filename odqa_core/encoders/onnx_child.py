"""The child process of :mod:`odqa_core.encoders.onnx_export`'s isolated steps: trace a module the
caller saved with ``torch.save`` to ONNX, or call one of its graph functions (optimise, quantise
and probe, compress) on files, so the transient memory of those steps leaves with this process
instead of staying mapped in a long-lived caller (a test worker, a CLI run).

Usage: ``python -m odqa_core.encoders.onnx_child MODEL.pt OUT.onnx OPSET`` (export) or
``python -m odqa_core.encoders.onnx_child --call JOB.pkl RESULT.pkl`` (a pickled
``(function, args)`` from the caller's private temporary folder; the result is pickled back)."""
from __future__ import annotations

import pickle
import sys

USAGE = ("usage: python -m odqa_core.encoders.onnx_child MODEL.pt OUT.onnx OPSET\n"
         "       python -m odqa_core.encoders.onnx_child --call JOB.pkl RESULT.pkl")


def _call(job: str, result: str) -> int:
    from ..errors import OdqaBenchError

    with open(job, "rb") as f:
        func, args = pickle.load(f)  # the caller's own job file, written a moment ago
    try:
        out = func(*args)
    except OdqaBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with open(result, "wb") as f:
        pickle.dump(out, f)
    return 0


def main(argv: list[str]) -> int:
    """Export the module saved in ``argv[0]`` to ``argv[1]`` at opset ``argv[2]``, or run a job."""
    if len(argv) == 3 and argv[0] == "--call":
        return _call(argv[1], argv[2])
    if len(argv) != 3:
        print(USAGE, file=sys.stderr)
        return 2
    import torch

    from .onnx_export import export_onnx

    # the file is the caller's own module, written a moment ago into its private temporary folder
    model = torch.load(argv[0], map_location="cpu", mmap=True, weights_only=False)
    export_onnx(model, argv[1], opset=int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
