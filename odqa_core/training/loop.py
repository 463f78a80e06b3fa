"""What trainers start from: base models by name with their fingerprints and prompts, pooled
embeddings with gradients, and the in-batch contrastive loss. The step loop is in ``steps``."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..encoders.models import quiet_transformers
from ..errors import OdqaBenchError

if TYPE_CHECKING:
    import torch

__all__ = ["BaseModel", "load_base", "base_fingerprint", "embed", "encode", "contrastive_loss",
           "trainable_parameters", "resolve_size", "saved_prompts"]

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    """A trainable HF encoder with its tokenizer and the prompts its family expects."""

    model: Any
    tokenizer: Any
    fingerprint: str
    query_prefix: str = ""
    passage_prefix: str = ""


def resolve_size(base: str, size: str | None) -> str | None:
    """The size a base family trains at (its registry default when None); None for folders."""
    from ..encoders.registry import DEFAULT_SIZE, FAMILIES

    if base.startswith("path:"):
        if size is not None:
            raise OdqaBenchError(f"base {base!r}: a saved model folder has no sizes (got size={size!r})")
        return None
    if base not in FAMILIES or base == "use-m":
        raise OdqaBenchError(f"unknown base {base!r}; use minilm, e5-small, tiny or path:<dir>")
    size = size or DEFAULT_SIZE.get(base)
    if size not in FAMILIES[base]:
        raise OdqaBenchError(f"unknown size {size!r} for base {base!r}; known: {', '.join(FAMILIES[base])}")
    return size


def _path_dir(base: str) -> Path:
    folder = Path(base[len("path:"):]).expanduser()
    if not (folder / "config.json").is_file():
        raise OdqaBenchError(f"base {base!r}: {folder} is not a saved HF model folder (no config.json)")
    return folder


def saved_prompts(folder: Path) -> tuple[str, str]:
    """Query/passage prompts from a sentence-transformers ``config_sentence_transformers.json``."""
    p = folder / "config_sentence_transformers.json"
    if not p.is_file():
        return "", ""
    prompts = json.loads(p.read_text(encoding="utf-8")).get("prompts") or {}
    return str(prompts.get("query", "")), str(prompts.get("passage", prompts.get("document", "")))


def base_fingerprint(base: str, size: str | None = None, seed: int = 0) -> str:
    """Identity of the starting weights for the checkpoint cache key, from file hashes where
    the weights are files (no model load on a cache hit)."""
    from ..encoders.minilm import minilm_dir
    from ..encoders.models import folder_weights_sha

    size = resolve_size(base, size)
    if base == "minilm":
        return f"minilm:{size}:{(folder_weights_sha(minilm_dir()) or '')[:16]}"
    if base == "e5-small":
        from ..encoders.e5 import e5_fingerprint

        return e5_fingerprint(int(str(size)[1:]))
    if base == "tiny":
        from ..encoders import get_encoder

        return str(get_encoder("tiny", size, seed=seed).weights_id)
    folder = _path_dir(base)
    cfg = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:12]
    sha = folder_weights_sha(folder)
    if sha is None:
        raise OdqaBenchError(f"base {base!r}: {folder} has no model.safetensors or pytorch_model.bin")
    return f"path:{sha[:16]}:{cfg}"


def load_base(base: str, size: str | None = None, seed: int = 0) -> BaseModel:
    """The starting encoder through :func:`odqa_core.encoders.get_encoder`: ``minilm``
    (L2/L4/L6), ``e5-small`` (L3/L6/L12, with its query/passage prefixes), ``tiny`` (random,
    seeded) or ``path:<dir>`` (a saved HF folder, e.g. an earlier DPR checkpoint)."""
    from ..encoders import get_encoder

    fp = base_fingerprint(base, size, seed)
    size = resolve_size(base, size)
    with quiet_transformers():
        enc: Any = get_encoder("tiny", size, seed=seed) if base == "tiny" else get_encoder(base, size)
    q, p = saved_prompts(_path_dir(base)) if base.startswith("path:") else (enc.query_prefix, enc.passage_prefix)
    return BaseModel(enc.model, enc.tokenizer, fp, q, p)


def trainable_parameters(model: Any) -> int:
    """Number of parameters the optimizer updates (LoRA adapters only, under LoRA)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def embed(model: Any, tokenizer: Any, texts: list[str], max_length: int, pooling: str, device: str = "cpu") -> torch.Tensor:
    """L2-normalised embeddings (with gradients when the caller is training)."""
    import torch.nn.functional as F

    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    hidden = model(**enc).last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return F.normalize(pooled, p=2, dim=-1)


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
