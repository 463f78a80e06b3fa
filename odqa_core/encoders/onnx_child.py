"""The child process of :func:`odqa_core.encoders.onnx_export.export_isolated`: load a module the
caller saved with ``torch.save`` and trace it to ONNX here, so the tracer's transient memory
leaves with this process instead of staying mapped in a long-lived caller (a test worker, a CLI
run).

Usage: ``python -m odqa_core.encoders.onnx_child MODEL.pt OUT.onnx OPSET``."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Export the module saved in ``argv[0]`` to ``argv[1]`` at opset ``argv[2]``."""
    if len(argv) != 3:
        print("usage: python -m odqa_core.encoders.onnx_child MODEL.pt OUT.onnx OPSET", file=sys.stderr)
        return 2
    import torch

    from .onnx_export import export_onnx

    # the file is the caller's own module, written a moment ago into its private temporary folder
    model = torch.load(argv[0], map_location="cpu", mmap=True, weights_only=False)
    export_onnx(model, argv[1], opset=int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
