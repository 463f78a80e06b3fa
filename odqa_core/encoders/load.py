"""Starting weights by name, for the trainers and the reader: ``minilm``, ``e5-small``,
``tiny`` or a saved folder (``path:<dir>``), with the prompts the family expects and a
fingerprint of the weights for checkpoint cache keys."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OdqaBenchError
from .models import folder_weights_sha, quiet_transformers

__all__ = ["BaseModel", "load_base", "base_fingerprint", "resolve_size", "saved_prompts"]


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
    from .registry import DEFAULT_SIZE, FAMILIES

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
    from .minilm import minilm_dir

    size = resolve_size(base, size)
    if base == "minilm":
        return f"minilm:{size}:{(folder_weights_sha(minilm_dir()) or '')[:16]}"
    if base == "e5-small":
        from .e5 import e5_fingerprint

        return e5_fingerprint(int(str(size)[1:]))
    if base == "tiny":
        from .registry import get_encoder

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
    from .registry import get_encoder

    fp = base_fingerprint(base, size, seed)
    size = resolve_size(base, size)
    with quiet_transformers():
        enc: Any = get_encoder("tiny", size, seed=seed) if base == "tiny" else get_encoder(base, size)
    q, p = saved_prompts(_path_dir(base)) if base.startswith("path:") else (enc.query_prefix, enc.passage_prefix)
    return BaseModel(enc.model, enc.tokenizer, fp, q, p)
