"""The encoder contract shared by the dense retriever, DPR training and the perf suites."""
from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from ..errors import OdqaBenchError

__all__ = ["DENSE_MAX_LENGTH", "Encoder", "Kind", "check_encode_args"]

Kind = Literal["query", "passage"]

# Tokens kept per text when a dense encoder is not told otherwise: the length every README table
# and suite uses (MiniLM's own limit; e5-small and saved model folders are cut to it too).
DENSE_MAX_LENGTH = 256


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


def check_encode_args(name: str, texts: object, kind: str) -> None:
    """One clear error for the two usual misuses of ``encode``: a bare string, an unknown kind."""
    if isinstance(texts, str):
        raise OdqaBenchError(f"encoder {name}: encode takes a list of texts, not a single string")
    if kind not in ("query", "passage"):
        raise OdqaBenchError(f"encoder {name}: kind must be 'query' or 'passage', got {kind!r}")
