"""Write an ONNX model with one large initializer streamed from memory.

The model is serialised with a 16-byte placeholder as that initializer's ``raw_data``, and the
file is written around it: the placeholder's field and the two enclosing length prefixes
(the initializer inside the graph, the graph inside the model) are rewritten, and the tensor's
bytes go to the file straight from their buffer. The file is byte for byte what
``onnx.save`` writes for the full model, without the two copies of the tensor it makes.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["save_with_streamed_initializer"]

_MARKER = b"\x00odqa-splice-raw\x00"[:16]
_RAW_DATA_TAG = b"\x4a"      # TensorProto.raw_data: field 9, length-delimited
_INITIALIZER_TAG = b"\x2a"   # GraphProto.initializer: field 5
_GRAPH_TAG = b"\x3a"         # ModelProto.graph: field 7


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _framed_at(outer: bytes, inner: bytes, tag: bytes) -> int:
    """Offset of ``inner`` in ``outer``, checked to be the one field ``tag`` + length + ``inner``."""
    at = outer.find(inner)
    head = tag + _varint(len(inner))
    if at < len(head) or outer[at - len(head) : at] != head or outer.find(inner, at + 1) != -1:
        raise ValueError("the placeholder's enclosing message is not where protobuf puts it")
    return at


def save_with_streamed_initializer(model: Any, name: str, array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` with initializer ``name`` holding ``array`` (of that
    initializer's element type; its shape becomes the initializer's dims)."""
    from onnx import helper

    init = next((t for t in model.graph.initializer if t.name == name), None)
    if init is None:
        raise ValueError(f"no initializer {name!r}")
    held = helper.tensor_dtype_to_np_dtype(init.data_type)
    if held != array.dtype:
        raise ValueError(f"initializer {name!r} holds {held}, not {array.dtype}")
    data = memoryview(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))).cast("B")
    init.ClearField("float_data")
    del init.dims[:]
    init.dims.extend(array.shape)
    init.raw_data = _MARKER
    whole, graph, tensor = model.SerializeToString(), model.graph.SerializeToString(), init.SerializeToString()
    if whole.count(_MARKER) != 1 or tensor.count(_MARKER) != 1:
        raise ValueError("the placeholder is not unique in the serialised model")
    raw_at = tensor.find(_MARKER)
    if tensor[raw_at - 2 : raw_at] != _RAW_DATA_TAG + _varint(len(_MARKER)):
        raise ValueError("the placeholder is not the initializer's raw_data")
    tensor_len = len(tensor) - len(_MARKER) - 1 + len(_varint(data.nbytes)) + data.nbytes
    graph_len = len(graph) - len(tensor) - len(_varint(len(tensor))) + len(_varint(tensor_len)) + tensor_len
    t_at = _framed_at(graph, tensor, _INITIALIZER_TAG)
    g_at = _framed_at(whole, graph, _GRAPH_TAG)
    with open(path, "wb") as fh:
        fh.write(whole[: g_at - len(_varint(len(graph)))])
        fh.write(_varint(graph_len))
        fh.write(graph[: t_at - len(_varint(len(tensor)))])
        fh.write(_varint(tensor_len))
        fh.write(tensor[: raw_at - 1])
        fh.write(_varint(data.nbytes))
        fh.write(data)
        fh.write(tensor[raw_at + len(_MARKER) :])
        fh.write(graph[t_at + len(tensor) :])
        fh.write(whole[g_at + len(graph) :])
