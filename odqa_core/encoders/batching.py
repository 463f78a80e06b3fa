"""Length bucketing for encoders: texts sorted by token length and cut into batches by a token
budget (rows x padded length), so short texts never pay for a long one's padding; embeddings
come back in input order. The one place where token ids are padded into model inputs and token
states are pooled: encoders, the DPR trainer and the reader all batch through it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OdqaBenchError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "POOLINGS",
    "Tokenized",
    "token_batches",
    "pad_batch",
    "to_torch",
    "pool",
    "pool_torch",
    "tokenize",
    "gives_types",
    "encode_batched",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 8192
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class Tokenized:
    """Unpadded token ids of a list of texts (``type_ids`` None when the model takes none)."""

    ids: Sequence[Sequence[int]]
    type_ids: Sequence[Sequence[int]] | None
    pad_id: int

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def _positive_int(label: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OdqaBenchError(f"{label} must be a positive integer, got {value!r}")
    return int(value)


def token_batches(lengths: Sequence[int] | np.ndarray, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                  max_batch: int | None = None, sort: bool = True) -> list[np.ndarray]:
    """Row positions of each batch. With ``sort`` the rows go longest first (ties in input
    order) and a batch grows while rows x its longest length stays within ``max_tokens``; a
    text longer than the budget gets a batch of its own. ``max_batch`` caps the rows;
    ``max_tokens`` None sets no budget (fixed batches of ``max_batch`` rows)."""
    if max_tokens is not None:
        max_tokens = _positive_int("max_tokens", max_tokens)
    if max_batch is not None:
        max_batch = _positive_int("max_batch", max_batch)
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if (lens < 0).any():
        raise OdqaBenchError("token_batches: lengths must be >= 0")
    order = np.argsort(-lens, kind="stable") if sort else np.arange(lens.size)
    batches: list[np.ndarray] = []
    start, width = 0, 0
    for pos in range(order.size):
        length = max(int(lens[order[pos]]), 1)
        rows, w = pos - start + 1, max(width, length)
        if pos > start and ((max_tokens is not None and rows * w > max_tokens)
                            or (max_batch is not None and rows > max_batch)):
            batches.append(order[start:pos])
            start, width = pos, length
        else:
            width = w
    if start < order.size:
        batches.append(order[start:])
    return batches


def pad_batch(tok: Tokenized, rows: np.ndarray) -> dict[str, np.ndarray]:
    """int64 ``input_ids``, ``attention_mask`` (and ``token_type_ids``) for ``rows``, right-padded
    to the longest of them."""
    lens = [len(tok.ids[i]) for i in rows]
    width = max(max(lens, default=1), 1)
    input_ids = np.full((len(rows), width), tok.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64) if tok.type_ids is not None else None
    for r, (i, n) in enumerate(zip(rows, lens)):
        input_ids[r, :n] = tok.ids[i]
        mask[r, :n] = 1
        if types is not None:
            types[r, :n] = tok.type_ids[i]  # type: ignore[index]
    out = {"input_ids": input_ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


def to_torch(feed: dict[str, np.ndarray], device: str = "cpu", non_blocking: bool = False) -> dict[str, Any]:
    """A padded batch (:func:`pad_batch`) as int64 torch tensors on ``device``, keyed as the
    model's keyword arguments."""
    import torch

    return {k: torch.from_numpy(v).to(device, non_blocking=non_blocking) for k, v in feed.items()}


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """L2-normalised float32 sentence vectors from ``(batch, seq, dim)`` token states: the mean
    over unmasked tokens, or the first token (``cls``)."""
    if pooling not in POOLINGS:
        raise OdqaBenchError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    hidden = np.asarray(hidden, dtype=np.float32)
    if pooling == "cls":
        vec = hidden[:, 0, :].copy()
    else:
        m = np.asarray(mask, dtype=np.float32)[:, :, None]
        vec = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    return (vec / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def pool_torch(hidden: Any, mask: Any, pooling: str = "mean") -> Any:
    """:func:`pool` on torch tensors where they live (float32 ``(batch, dim)``, L2-normalised)."""
    import torch

    if pooling not in POOLINGS:
        raise OdqaBenchError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    hidden = hidden.float()
    if pooling == "cls":
        vec = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(vec, p=2, dim=1)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, prefix: str = "",
             with_types: bool = True) -> Tokenized:
    """Token ids of ``prefix + text`` truncated to ``max_length``, no padding."""
    enc = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length, padding=False)
    types = enc.get("token_type_ids") if with_types else None
    if with_types and types is None:
        types = [[0] * len(x) for x in enc["input_ids"]]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Tokenized(list(enc["input_ids"]), list(types) if types is not None else None, int(pad_id))


def gives_types(tokenizer: Any) -> bool:
    """Whether ``tokenizer(texts)`` returns ``token_type_ids`` (they are among its model inputs)."""
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


def encode_batched(tok: Tokenized, forward: Callable[[dict[str, np.ndarray]], np.ndarray], dim: int, *,
                   pooling: str = "mean", max_tokens: int | None = DEFAULT_MAX_TOKENS, max_batch: int | None = None,
                   sort: bool = True, show_progress: bool = False, desc: str = "encode",
                   forward_pools: bool = False) -> np.ndarray:
    """Run ``forward(padded batch) -> (batch, seq, dim)`` token states over the batches
    :func:`token_batches` cuts, pool each batch and put its rows back in input order. With
    ``forward_pools`` the forward returns L2-normalised ``(batch, dim)`` vectors itself (pooling
    where the states live: on a GPU, copying every token state back to the host costs more than
    the model)."""
    from ..progress import progress_bar

    n = len(tok.ids)
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0:
        return out
    batches = token_batches(tok.lengths, max_tokens=max_tokens, max_batch=max_batch, sort=sort)
    for rows in progress_bar(batches, desc=desc, unit="batch", show=show_progress):
        feed = pad_batch(tok, rows)
        hidden = forward(feed)
        if hidden.shape[0] != len(rows) or hidden.shape[-1] != dim or hidden.ndim != (2 if forward_pools else 3):
            raise OdqaBenchError(f"{desc}: the model returned shape {tuple(hidden.shape)} for a batch of "
                                 f"{len(rows)} (expected width {dim})")
        out[rows] = hidden if forward_pools else pool(hidden, feed["attention_mask"], pooling)
    return out
