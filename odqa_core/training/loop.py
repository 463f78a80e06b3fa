"""What trainers compute with: pooled embeddings with gradients, inference embeddings, and the
in-batch contrastive loss. Base models come from :mod:`odqa_core.encoders.load`; the step loop
is in ``steps``."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..encoders.batching import gives_types, pad_batch, pool_torch, to_torch, tokenize

if TYPE_CHECKING:
    import torch

__all__ = ["embed", "encode", "contrastive_loss", "trainable_parameters"]

log = logging.getLogger(__name__)


def trainable_parameters(model: Any) -> int:
    """Number of parameters the optimizer updates (LoRA adapters only, under LoRA)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def embed(model: Any, tokenizer: Any, texts: list[str], max_length: int, pooling: str, device: str = "cpu") -> torch.Tensor:
    """L2-normalised embeddings of ``texts`` as one batch padded to its longest (with gradients
    when the caller is training)."""
    tok = tokenize(tokenizer, texts, max_length, with_types=gives_types(tokenizer))
    inputs = to_torch(pad_batch(tok, np.arange(len(texts))), device)
    hidden = model(**inputs).last_hidden_state
    return pool_torch(hidden, inputs["attention_mask"], pooling)


def encode(model: Any, tokenizer: Any, texts: list[str], *, pooling: str = "mean", max_length: int = 256,
           prefix: str = "", batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Inference embeddings as float32 ``(n, dim)``, batches sorted by length."""
    import torch

    model.eval()
    dim = model.config.hidden_size
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = embed(model, tokenizer, [prefix + texts[i] for i in idx], max_length, pooling, device).float().cpu().numpy()
    return out


def contrastive_loss(q: torch.Tensor, p: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of query i against column i of ``scale * q @ p.T``; ``mask`` (True = drop)
    hides columns that are another copy of query i's gold passage."""
    import torch
    import torch.nn.functional as F

    logits = scale * q @ p.T
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
