"""DPR bi-encoder training per fold (one shared encoder for questions and passages, optional
LoRA), cached and resumable, plus the ``dpr`` retriever that trains on a fold and then
searches with the ``dense`` retriever over the trained model folder.

A finished checkpoint is a plain HF model folder (LoRA merged in) with sentence-transformers
metadata (pooling, prompts) and a ``DONE`` marker written last; ``path:<dir>`` loads it.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from ..data.folds import Fold, check_leakage, get_fold
from ..data.types import Corpus, Dataset
from ..encoders.batching import POOLINGS
from ..encoders.load import BaseModel, base_fingerprint, load_base, resolve_size, saved_prompts
from ..encoders.models import TRAINED_INFO_FILES, quiet_transformers
from ..errors import OdqaBenchError
from ..io import atomic_write_json, atomic_write_text
from ..retrieval import get_retriever
from .checkpoint import DONE_FILE, fold_checkpoint_key, is_trained, key_settings, locked
from .loop import contrastive_loss, embed, trainable_parameters
from .negatives import Example, build_examples
from .steps import Schedule, freeze_word_embeddings, train_steps

__all__ = ["TrainConfig", "train_fold", "is_trained", "checkpoint_key", "trainable_parameters", "DPRRetriever",
           "dpr_retriever", "STATE_FILE", "INFO_FILE"]

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
INFO_FILE = TRAINED_INFO_FILES["dpr"]
_NOT_IN_KEY = {"save_every"}  # settings that never change the trained weights
_KEYED_WHEN_SET = {"freeze_embeddings": False}  # settings added later: in a key only off their default


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights. ``max_steps`` (when set) overrides
    ``epochs``; ``warmup`` is a fraction of all steps; ``lora_r=None`` is full fine-tuning."""

    base: str = "minilm"               # minilm | e5-small | tiny | path:<dir>
    size: str | None = None            # minilm L2/L4/L6, e5-small L3/L6/L12; None: the family default
    pooling: str = "mean"              # mean | cls
    max_length_q: int = 32
    max_length_p: int = 256
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.0
    epochs: int = 1
    max_steps: int | None = None
    warmup: float = 0.1
    hard_negatives: int = 1            # BM25 negatives per question (0: in-batch only)
    negative_depth: int = 30           # BM25 candidates scanned for clean negatives
    bm25_tokenizer: str = "kiwi"
    scale: float = 20.0                # 1 / temperature
    seed: int = 0
    lora_r: int | None = None          # 4, 8 or 16 typically
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "value")
    grad_accum: int = 1
    max_grad_norm: float = 2.0
    device: str = "cpu"
    save_every: int = 50               # steps between resumable training states
    freeze_embeddings: bool = False    # keep the word-embedding matrix as the base has it

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> OdqaBenchError:
            return OdqaBenchError(f"dpr {name}={getattr(self, name)!r}: {why}")

        if self.pooling not in POOLINGS:
            raise bad("pooling", f"choose one of {', '.join(POOLINGS)}")
        for name in ("max_length_q", "max_length_p", "batch_size", "epochs", "grad_accum", "save_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be a positive integer")
        if self.max_length_q < 3 or self.max_length_p < 3:
            raise OdqaBenchError(f"dpr max_length_q/max_length_p must be >= 3 (got {self.max_length_q}, {self.max_length_p})")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise bad("max_steps", "must be a positive integer or None")
        if self.lora_r is not None and (isinstance(self.lora_r, bool) or not isinstance(self.lora_r, int) or self.lora_r < 1):
            raise bad("lora_r", "must be a positive integer (4, 8, 16) or None for full fine-tuning")
        if not isinstance(self.hard_negatives, int) or self.hard_negatives < 0:
            raise bad("hard_negatives", "must be an integer >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise bad("warmup", "must be a fraction in [0, 1)")
        if not self.lr > 0 or not self.scale > 0:
            raise OdqaBenchError(f"dpr lr={self.lr!r}, scale={self.scale!r}: both must be > 0")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise bad("device", "use cpu or cuda[:N]")
        if not isinstance(self.freeze_embeddings, bool):
            raise bad("freeze_embeddings", "must be true or false")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "size", resolve_size(self.base, self.size))

    def key_fields(self) -> dict[str, Any]:
        """The settings a checkpoint's key covers (``freeze_embeddings`` only when set, so
        checkpoints trained before it existed keep their keys)."""
        return key_settings(self, _NOT_IN_KEY, _KEYED_WHEN_SET)

    def schedule(self) -> Schedule:
        """The settings the shared step loop runs on."""
        return Schedule(lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, max_steps=self.max_steps,
                        warmup=self.warmup, weight_decay=self.weight_decay, grad_accum=self.grad_accum,
                        max_grad_norm=self.max_grad_norm, seed=self.seed, device=self.device,
                        save_every=self.save_every)


def checkpoint_key(dataset: Dataset, fold: Fold, config: TrainConfig) -> str:
    """Cache key of a fold's checkpoint: dataset sha256, fold identity, settings, base weights."""
    return fold_checkpoint_key("dpr", dataset, fold, config.key_fields(), base_fingerprint(config.base, config.size, config.seed))


def _check_device(device: str) -> list[int]:
    """The CUDA device indices training touches (for RNG forking); a user error without CUDA."""
    import torch

    if not device.startswith("cuda"):
        return []
    if not torch.cuda.is_available():
        raise OdqaBenchError(f"dpr device={device!r}: CUDA is not available on this machine; use device='cpu'")
    return [int(device[5:]) if device[5:].isdigit() else torch.cuda.current_device()]


def _wrap_lora(model: Any, config: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise OdqaBenchError("dpr lora_r needs the peft package (pip install peft)") from None
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in config.lora_targets if t not in names]
    if missing:
        raise OdqaBenchError(f"dpr lora_targets: module {missing[0]!r} is not in base {config.base!r}")
    lcfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), bias="none")
    return get_peft_model(model, lcfg)


def _write_st_metadata(folder: Path, dim: int, config: TrainConfig, query_prefix: str, passage_prefix: str) -> None:
    """sentence-transformers files, so pooling and prompts travel with the weights."""
    atomic_write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    atomic_write_json(folder / "sentence_bert_config.json", {"max_seq_length": config.max_length_p, "do_lower_case": False})
    atomic_write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": config.pooling == "cls",
        "pooling_mode_mean_tokens": config.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    (folder / "2_Normalize").mkdir(exist_ok=True)
    prompts = ({"query": query_prefix, "document": passage_prefix, "passage": passage_prefix}
               if (query_prefix or passage_prefix) else {})
    atomic_write_json(folder / "config_sentence_transformers.json", {"prompts": prompts, "default_prompt_name": None})


def _save_final(model: Any, base: Any, config: TrainConfig, folder: Path, info: dict[str, Any]) -> None:
    """Write the HF folder into a temp folder, move each entry in, then ``DONE`` last."""
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=folder))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            base.tokenizer.save_pretrained(tmp)
        _write_st_metadata(tmp, int(model.config.hidden_size), config, base.query_prefix, base.passage_prefix)
        atomic_write_json(tmp / INFO_FILE, info)
        for entry in sorted(tmp.iterdir()):
            dest = folder / entry.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(folder / DONE_FILE, f"{info['key']}\n")


def train_fold(dataset: Dataset, fold: Fold, config: TrainConfig | None = None, out_dir: str | os.PathLike[str] | None = None,
               *, stop_after: int | None = None, progress: bool | None = None) -> Path:
    """Train DPR on ``fold``'s training side and return the checkpoint folder.

    The folder is ``out_dir`` or ``cache_dir()/dpr/<key>``; a finished one (``DONE``) is
    returned without training, an unfinished one resumes from its saved state.
    ``stop_after`` halts after that many steps with the state saved and no ``DONE`` (an
    interruption on purpose); calling again resumes. The caller's torch RNG is left as it was."""
    config = config or TrainConfig()
    key = checkpoint_key(dataset, fold, config)
    folder = Path(out_dir) if out_dir is not None else cache_dir() / "dpr" / key
    check_leakage(fold, dataset)  # never train on what the fold evaluates
    if is_trained(folder):
        log.info("dpr %s: using the finished checkpoint %s", fold.name, folder)
        return folder
    devices = _check_device(config.device)
    import torch

    with locked(folder):
        if not is_trained(folder):
            folder.mkdir(parents=True, exist_ok=True)
            with torch.random.fork_rng(devices=devices):
                _train_into(folder, key, dataset, fold, config, stop_after, progress)
    return folder


def _batch_loss(model: Any, base: BaseModel, batch: list[Example], passages: dict[str, str], config: TrainConfig) -> Any:
    """In-batch contrastive loss of questions against their gold and hard-negative passages."""
    import torch

    cols = [ex.positive_id for ex in batch] + [n for ex in batch for n in ex.hard_negative_ids]
    q = embed(model, base.tokenizer, [base.query_prefix + ex.question for ex in batch], config.max_length_q,
              config.pooling, config.device)
    p = embed(model, base.tokenizer, [base.passage_prefix + passages[c] for c in cols], config.max_length_p,
              config.pooling, config.device)
    mask = torch.tensor([[c == ex.positive_id and j != i for j, c in enumerate(cols)] for i, ex in enumerate(batch)],
                        device=q.device)
    return contrastive_loss(q, p, config.scale, mask)


def _train_into(folder: Path, key: str, dataset: Dataset, fold: Fold, config: TrainConfig,
                stop_after: int | None, progress: bool | None) -> None:
    import torch

    t0 = time.perf_counter()
    examples = build_examples(dataset, fold, config.hard_negatives, config.bm25_tokenizer, config.negative_depth)
    joined = dict(zip(dataset.corpus.ids, dataset.corpus.joined()))
    needed = {ex.positive_id for ex in examples} | {d for ex in examples for d in ex.hard_negative_ids}
    passages = {d: joined[d] for d in needed}
    torch.manual_seed(config.seed)
    base = load_base(config.base, config.size, config.seed)
    model = base.model
    total_params = trainable_parameters(model)
    if config.freeze_embeddings:
        freeze_word_embeddings(model)
    if config.lora_r is not None:
        model = _wrap_lora(model, config)
    n_train = trainable_parameters(model)
    log.info("dpr %s: %d examples, %d trainable of %d parameters", fold.name, len(examples), n_train, total_params)
    outcome = train_steps(model, len(examples), lambda idx: _batch_loss(model, base, [examples[i] for i in idx], passages, config),
                          config.schedule(), folder / STATE_FILE, key, stop_after=stop_after, progress=progress, desc="dpr")
    if not outcome.finished:
        return
    if config.lora_r is not None:
        model = model.merge_and_unload()
    model.to("cpu")
    info = {
        "key": key,
        "dataset": dataset.name,
        "dataset_sha256": dataset.sha256,
        "fold": fold.index,
        "n_folds": fold.n_folds,
        "fold_seed": fold.seed,
        "config": config.key_fields(),
        "base_fingerprint": base.fingerprint,
        "examples": len(examples),
        "hard_negatives_found": sum(len(ex.hard_negative_ids) for ex in examples),
        "trainable_parameters": n_train,
        "total_parameters": total_params,
        "steps": outcome.step,
        "resumed_from_step": outcome.resumed_from,
        "losses": [round(x, 6) for x in outcome.losses],
        "seconds_this_run": round(time.perf_counter() - t0, 2),
    }
    _save_final(model, base, config, folder, info)
    (folder / STATE_FILE).unlink(missing_ok=True)


@dataclass
class DPRRetriever:
    """Trains (or loads) the fold's DPR checkpoint on ``dataset`` when indexing, then delegates
    to the ``dense`` retriever with ``model='path:<checkpoint>'``. ``index(corpus)`` receives
    only a corpus, so the training dataset comes in as the ``dataset`` parameter."""

    dataset: Dataset | None
    config: TrainConfig
    fold: int = 1
    n_folds: int = 5
    fold_seed: int = 0
    index_kind: str = "flat"
    dense: dict[str, Any] = field(default_factory=dict)
    name: str = "dpr"
    checkpoint: Path | None = None
    _dense: Any = field(default=None, repr=False)

    @property
    def dense_retriever(self) -> Any:
        """The ``dense`` retriever over the trained checkpoint (after ``index``): its encoder and
        cached embeddings serve diagnostics such as the geometry suite."""
        if self._dense is None:
            raise OdqaBenchError(f"{self.name}: search before index")
        return self._dense

    def train(self) -> Path:
        """Train (or load the cached) checkpoint for this fold; its folder."""
        if self.dataset is None:
            raise OdqaBenchError("retriever 'dpr' needs dataset=<the Dataset to train on>: get_retriever('dpr', dataset=ds, fold=1, ...)")
        fold = get_fold(self.dataset, self.fold, self.n_folds, self.fold_seed)
        self.checkpoint = train_fold(self.dataset, fold, self.config)
        return self.checkpoint

    def index(self, corpus: Corpus) -> DPRRetriever:
        ckpt = self.checkpoint if self.checkpoint is not None and is_trained(self.checkpoint) else self.train()
        q, p = saved_prompts(ckpt)
        params = {"device": self.config.device, **({"query_prefix": q, "passage_prefix": p} if (q or p) else {}),
                  **self.dense}
        self._dense = get_retriever("dense", model=f"path:{ckpt}", index=self.index_kind, **params).index(corpus)
        return self

    def search(self, queries: list[str], k: int) -> tuple[Any, Any]:
        if self._dense is None:
            raise OdqaBenchError("dpr: search before index")
        return self._dense.search(queries, k)


def dpr_retriever(dataset: Dataset | None = None, fold: int = 1, n_folds: int = 5, fold_seed: int = 0,
                  base: str = "minilm", size: str | None = None, lora_r: int | None = None, steps: int | None = None,
                  epochs: int = 1, index: str = "flat", dense: dict[str, Any] | None = None, **train: Any) -> DPRRetriever:
    """``get_retriever('dpr', dataset=ds, fold=1, n_folds=5, base='minilm', size='L2', lora_r=8,
    steps=200, index='flat')``; any other :class:`TrainConfig` field may be passed too, and
    ``dense`` holds extra parameters for the ``dense`` retriever."""
    if not isinstance(fold, int) or not 1 <= fold <= n_folds:
        raise OdqaBenchError(f"dpr fold={fold!r}: must be an integer in 1..{n_folds}")
    config = TrainConfig(base=base, size=size, lora_r=lora_r, max_steps=steps, epochs=epochs, **train)
    return DPRRetriever(dataset, config, fold, n_folds, fold_seed, index, dict(dense or {}))
