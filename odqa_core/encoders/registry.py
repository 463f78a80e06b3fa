"""Encoders by family and size: ``get_encoder('minilm', 'L4')``. Model code is imported only
when a family is asked for, so listing families costs nothing."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OdqaBenchError
from .base import DENSE_MAX_LENGTH, Encoder, Kind

if TYPE_CHECKING:
    from .backends import ProbeTexts

__all__ = ["FAMILIES", "DEFAULT_SIZE", "FunctionEncoder", "get_encoder", "encoder_families"]

# family -> sizes (empty: the family has one size)
FAMILIES: dict[str, tuple[str, ...]] = {
    "minilm": ("L2", "L4", "L6"),
    "e5-small": ("L3", "L6", "L12"),
    "use-m": (),
    "tiny": ("L1", "L2", "L4"),
}
DEFAULT_SIZE = {"minilm": "L6", "e5-small": "L12", "tiny": "L2"}
E5_PREFIXES = ("query: ", "passage: ")
HF_OPTIONS = {"pooling", "max_length", "query_prefix", "passage_prefix", "autocast_dtype", "sort_by_length"}
TINY_OPTIONS = {"seed", "hidden", "heads"}


@dataclass
class FunctionEncoder:
    """An :class:`Encoder` around a plain ``fn(texts, batch_size) -> (n, dim)`` function."""

    name: str
    fingerprint: str
    dim: int
    fn: Callable[..., np.ndarray]

    def encode(self, texts: list[str], kind: Kind = "passage", batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise OdqaBenchError(f"encoder {self.name}: encode takes a list of texts, not a single string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = np.asarray(self.fn(list(texts), batch_size=batch_size), dtype=np.float32)
        if emb.shape != (len(texts), self.dim):
            raise OdqaBenchError(f"encoder {self.name}: returned shape {emb.shape}, expected {(len(texts), self.dim)}")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)


def encoder_families() -> list[str]:
    """Known family names (plus the ``path:<dir>`` form for saved model folders)."""
    return sorted(FAMILIES) + ["path:<dir>"]


def get_encoder(family: str, size: str | None = None, device: str = "cpu", backend: str | None = None,
                probe_texts: ProbeTexts | Callable[[], ProbeTexts] | None = None, **kw: Any) -> Encoder:
    """Build an encoder. Options in ``kw`` (``max_length``, ``pooling``, ``query_prefix``,
    ``passage_prefix``, ``autocast_dtype``, ``sort_by_length``; ``seed``/``hidden`` for tiny)
    override the family's defaults (``max_length``: :data:`DENSE_MAX_LENGTH` for every dense family
    but the random ``tiny`` test encoder). ``backend`` (``auto``, ``torch-fp32``, ``openvino-int8``...)
    wraps a transformers encoder for inference; None keeps the trainable torch model. ``probe_texts``
    (:class:`~odqa_core.encoders.backends.ProbeTexts`, or a function returning them) feed the int8
    probe of an ``onnx-int8`` backend."""
    enc = _build(family, size, device, **kw)
    if backend is None or not hasattr(enc, "model"):  # use-m is numpy-only: nothing to wrap
        return enc
    from .backends import wrap_backend

    return wrap_backend(enc, backend, probe_texts=probe_texts)


def _build(family: str, size: str | None, device: str, **kw: Any) -> Encoder:
    if not isinstance(family, str):
        raise OdqaBenchError(f"encoder family must be a string, got {family!r}")
    if family.startswith("path:"):
        if size is not None:
            raise OdqaBenchError(f"encoder {family!r}: a saved model folder has no sizes (got size={size!r})")
        from .minilm import load_hf_folder

        _check_options(family, kw)
        return load_hf_folder(family[len("path:"):], device=device, **kw)
    if family not in FAMILIES:
        raise OdqaBenchError(f"unknown encoder family {family!r}; known: {', '.join(encoder_families())}")
    sizes = FAMILIES[family]
    if size is not None and size not in sizes:
        known = ", ".join(sizes) if sizes else "none (this family has one size)"
        raise OdqaBenchError(f"unknown size {size!r} for encoder {family!r}; known: {known}")
    size = size or DEFAULT_SIZE.get(family)
    if family != "use-m":
        _check_options(family, kw)
    if family == "minilm":
        from .minilm import load_minilm

        return load_minilm(size, device=device, **kw)
    if family == "tiny":
        from .tiny import tiny_bert

        return tiny_bert(layers=int(size[1:]), device=device, **kw)
    if family == "e5-small":
        return _e5(size, device, **kw)
    return _usem(device, **kw)


def _check_options(family: str, kw: dict[str, Any]) -> None:
    """Unknown options fail before any model is loaded, naming the known ones."""
    allowed = HF_OPTIONS | (TINY_OPTIONS if family == "tiny" else set())
    bad = sorted(set(kw) - allowed)
    if bad:
        raise OdqaBenchError(f"encoder {family!r}: unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(allowed))}")


def _e5(size: str, device: str, **kw: Any) -> Encoder:
    try:
        from .e5 import e5_fingerprint, load_e5
    except ImportError as exc:
        raise OdqaBenchError(f"encoder 'e5-small' is not available ({exc})") from None
    from .minilm import HFEncoder

    n = int(size[1:])
    model, tok = load_e5(num_layers=n)
    settings = {"pooling": "mean", "max_length": DENSE_MAX_LENGTH, "query_prefix": E5_PREFIXES[0],
                "passage_prefix": E5_PREFIXES[1], **kw}
    return HFEncoder(name=f"e5-small-{size}", model=model, tokenizer=tok, device=device,
                     weights_id=e5_fingerprint(n), **settings)


def _usem(device: str, **kw: Any) -> Encoder:
    try:
        from . import usem
    except ImportError as exc:
        raise OdqaBenchError(f"encoder 'use-m' is not available ({exc})") from None
    if kw:
        raise OdqaBenchError(f"encoder 'use-m': unknown option(s) {', '.join(sorted(kw))}")
    if device != "cpu":
        raise OdqaBenchError(f"encoder 'use-m' runs on the cpu only (got device={device!r})")
    fp = getattr(usem, "usem_fingerprint", None) or getattr(usem, "USEM_FINGERPRINT", None)
    fp = fp() if callable(fp) else fp
    if not fp:
        raise OdqaBenchError("encoder 'use-m': odqa_core.encoders.usem exposes no fingerprint")
    return FunctionEncoder(name="use-m", fingerprint=f"use-m:{fp}", dim=int(getattr(usem, "USEM_DIM", 512)),
                           fn=usem.usem_encode)
