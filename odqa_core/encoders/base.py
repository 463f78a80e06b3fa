"""The encoder contract shared by the dense retriever, DPR training and the perf suites."""
from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

__all__ = ["Encoder", "Kind"]

Kind = Literal["query", "passage"]


class Encoder(Protocol):
    """Texts in, L2-normalised float32 embeddings out.

    ``fingerprint`` names the weights and every setting that changes the vectors (family,
    size, pooling, max length, backend), so embedding caches and baselines key on it."""

    name: str

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], kind: Kind = "passage", batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray: ...
