"""Extractive reader training per fold: (question, gold passage, answer span) examples from the
fold's training queries plus BM25-retrieved negatives labelled no-answer, a seeded resumable
step loop, and one cached checkpoint per fold (``cache_dir()/reader/<key>`` with ``DONE``).

Answer positions: ``Dataset.answers`` keeps only answer texts, so the annotated
``answer_start`` is re-read from the dataset's SQuAD/KorQuAD JSON file when ``dataset.source``
is one (and checked against the passage); otherwise the first occurrence of the answer text in
the gold passage (``str.find``) is used. Negatives are the top BM25 passages among the fold's
training documents that are not gold and contain no answer string; their label is the [CLS]
position (start = end = 0), which teaches the no-answer score the reader uses to reject passages.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_dir
from ..data.folds import Fold, check_leakage
from ..data.types import Dataset
from ..encoders.batching import Tokenized, pad_batch, to_torch
from ..errors import OdqaBenchError
from ..io import atomic_write_text
from ..training.checkpoint import DONE_FILE, fold_checkpoint_key, is_trained, key_settings, locked
from ..training.steps import AUTOCAST_DTYPES, Schedule, freeze_lower_layers, freeze_word_embeddings, train_steps
from .extractive import READER_INFO, ExtractiveReader, build_qa_model, encode_windows, load_reader

__all__ = ["TrainConfig", "PROFILES", "ReaderExample", "Feature", "answer_starts", "build_reader_examples", "config_overrides",
           "make_features", "span_loss", "checkpoint_key", "is_trained", "train_reader", "trained_reader", "read_info", "STATE_FILE"]

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
_NOT_IN_KEY = {"save_every"}
_KEYED_WHEN_SET = {"autocast": None, "frozen_layers": 0, "negative_share": 1.0, "negative_windows": 0}  # settings added later: in a key only off their default


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained reader. ``max_steps`` (when set) overrides ``epochs``;
    ``warmup`` is a fraction of all steps; ``negatives`` BM25 no-answer passages per question."""

    base: str = "e5-small"            # e5-small | minilm | tiny | path:<dir>
    size: str | None = "L12"
    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    lr: float = 3e-5
    weight_decay: float = 0.01
    epochs: int = 1
    max_steps: int | None = None
    warmup: float = 0.1
    batch_size: int = 16
    negatives: int = 1
    negative_depth: int = 20
    negative_share: float = 1.0       # the seeded share of training questions that get negatives
    negative_windows: int = 0         # windows kept per negative passage (0: all), most question tokens first
    bm25_tokenizer: str = "kiwi"
    seed: int = 0
    max_grad_norm: float = 1.0
    device: str = "cpu"
    threads: int | None = None        # CPU threads while training (None: torch's default)
    save_every: int = 50
    grad_accum: int = 1
    freeze_embeddings: bool = True    # the word-embedding matrix stays as the base has it
    group_by_length: bool = True      # batches of similar window lengths, padded to their longest
    autocast: str | None = None       # "bfloat16": forward and loss in bfloat16 (weights and AdamW float32)
    frozen_layers: int = 0            # embeddings and this many lowest encoder layers stay as the base has them

    def __post_init__(self) -> None:
        for name in ("max_length", "max_query_length", "max_answer_length", "batch_size", "epochs", "save_every",
                     "negative_depth", "grad_accum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OdqaBenchError(f"reader {name}={v!r}: must be a positive integer")
        for name in ("doc_stride", "negatives", "frozen_layers", "negative_windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise OdqaBenchError(f"reader {name}={v!r}: must be an integer >= 0")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise OdqaBenchError(f"reader max_steps={self.max_steps!r}: must be a positive integer or None")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise OdqaBenchError(f"reader threads={self.threads!r}: must be a positive integer or None")
        if isinstance(self.negative_share, bool) or not isinstance(self.negative_share, (int, float)) \
                or not 0.0 < self.negative_share <= 1.0:
            raise OdqaBenchError(f"reader negative_share={self.negative_share!r}: must be a fraction in (0, 1]")
        if not self.lr > 0:
            raise OdqaBenchError(f"reader lr={self.lr!r}: must be > 0")
        if not 0.0 <= self.warmup < 1.0:
            raise OdqaBenchError(f"reader warmup={self.warmup!r}: must be a fraction in [0, 1)")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise OdqaBenchError(f"reader device={self.device!r}: use cpu or cuda[:N]")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise OdqaBenchError(f"reader autocast={self.autocast!r}: use {' or '.join(AUTOCAST_DTYPES)}, or None")

    def key_fields(self) -> dict[str, Any]:
        """The settings a checkpoint's key covers (``autocast`` and ``frozen_layers`` only when
        set, so checkpoints trained before they existed keep their keys)."""
        return key_settings(self, _NOT_IN_KEY, _KEYED_WHEN_SET)

    def schedule(self) -> Schedule:
        """The settings the shared step loop runs on."""
        return Schedule(lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, max_steps=self.max_steps,
                        warmup=self.warmup, weight_decay=self.weight_decay, grad_accum=self.grad_accum,
                        max_grad_norm=self.max_grad_norm, seed=self.seed, device=self.device, threads=self.threads,
                        save_every=self.save_every, autocast=self.autocast)


PROFILES: dict[str, TrainConfig] = {
    # a tiny random BERT, a few steps: proves the path, the cache and determinism in seconds;
    # one thread, so the weights do not depend on the machine's core count; its random word
    # embeddings train, and batches are not length-grouped, as before the shared step loop
    "quick": TrainConfig(base="tiny", size="L2", max_length=128, doc_stride=32, max_query_length=48, lr=1e-3,
                         weight_decay=0.0, max_steps=24, warmup=0.0, batch_size=8, negatives=1,
                         bm25_tokenizer="regex", threads=1, save_every=8, freeze_embeddings=False,
                         group_by_length=False),
    # multilingual-e5-small, 12 layers at 384 tokens, the embeddings and the 4 lowest layers
    # frozen, one epoch per fold on two CPU cores (docs/reader.md: the sweep behind this choice)
    "full": TrainConfig(base="e5-small", size="L12", max_length=384, doc_stride=128, epochs=1, batch_size=16, lr=1e-4,
                        negatives=0, bm25_tokenizer="kiwi", threads=2, frozen_layers=4),
    # the same reader on a GPU: two epochs per fold, one BM25 no-answer passage per question
    "gpu": TrainConfig(base="e5-small", size="L12", max_length=384, doc_stride=128, epochs=2, batch_size=32, lr=1e-4,
                       negatives=1, bm25_tokenizer="kiwi", device="cuda"),
}


def config_overrides(text: str, base: TrainConfig) -> TrainConfig:
    """``base`` with the fields ``"lr=1e-4,negatives=1"`` sets, each value read as its field's
    type (``none`` for an optional one); an unknown field or a bad value is one error line."""
    import typing

    from ..retrieval.params import parse_value

    hints = typing.get_type_hints(TrainConfig)
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in hints:
            raise OdqaBenchError(f"reader setting {item!r}: expected FIELD=VALUE, FIELD one of {', '.join(hints)}")
        try:
            changes[key] = parse_value(value.strip(), hints[key])
        except ValueError as exc:
            raise OdqaBenchError(f"reader setting {key}: {exc}") from None
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class ReaderExample:
    """One training passage for a question; ``answer_start == -1`` marks a no-answer negative."""

    query_id: str
    question: str
    doc_id: str
    context: str
    answer_text: str = ""
    answer_start: int = -1

    @property
    def is_negative(self) -> bool:
        return self.answer_start < 0


@dataclass(frozen=True)
class Feature:
    """One training window with its span label (token positions; 0/0 is [CLS], no answer)."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    start: int
    end: int


def _squad_starts(path: Path) -> dict[str, list[tuple[str, int]]]:
    """qid -> [(answer text, answer_start)] from a SQuAD-format JSON file ({} if unreadable)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        out: dict[str, list[tuple[str, int]]] = {}
        for article in obj["data"]:
            for para in article["paragraphs"]:
                for qa in para.get("qas", []):
                    out[str(qa["id"])] = [(str(a["text"]), int(a["answer_start"])) for a in qa.get("answers", [])
                                          if "answer_start" in a]
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def answer_starts(dataset: Dataset) -> dict[str, list[tuple[str, int]]]:
    """Annotated answer starts where ``dataset.source`` is a SQuAD-format JSON file, else {}."""
    src = Path(dataset.source) if dataset.source else None
    if src is None or src.suffix.lower() != ".json" or not src.is_file():
        return {}
    return _squad_starts(src)


def _locate(context: str, answers: list[str], annotated: list[tuple[str, int]]) -> tuple[str, int] | None:
    for text, start in annotated:
        if text and context[start : start + len(text)] == text:
            return text, start
    for text in answers:
        if text:
            pos = context.find(text)
            if pos >= 0:
                return text, pos
    return None


def build_reader_examples(dataset: Dataset, fold: Fold, negatives: int = 1, tokenizer: str = "kiwi",
                          depth: int = 20, share: float = 1.0, seed: int = 0) -> list[ReaderExample]:
    """Positives (each training query's gold passages on the training side, with the answer
    span) followed, per query, by up to ``negatives`` BM25 no-answer passages; dataset order.
    ``share`` < 1 gives negatives to that share of the queries only, a pick seeded by ``seed``."""
    from ..training.negatives import mine_hard_negatives

    c = dataset.corpus
    pos = {d: i for i, d in enumerate(c.ids)}
    qpos = {q: i for i, q in enumerate(dataset.query_ids)}
    train_docs = set(fold.train_doc_ids)
    starts = answer_starts(dataset)
    positives: dict[str, list[ReaderExample]] = {}
    missing = 0
    for q in fold.train_query_ids:
        for d, g in sorted(dataset.qrels.get(q, {}).items()):
            if g <= 0 or d not in train_docs or d not in pos:
                continue
            ctx = c.texts[pos[d]]
            found = _locate(ctx, dataset.answers.get(q, []), starts.get(q, []))
            if found is None:
                missing += 1
                continue
            positives.setdefault(q, []).append(ReaderExample(q, dataset.query_texts[qpos[q]], d, ctx, found[0], found[1]))
    if missing:
        log.info("%s %s: %d gold passages do not contain their answer text; skipped", dataset.name, fold.name, missing)
    if not positives:
        raise OdqaBenchError(f"{dataset.name} {fold.name}: no training query has an answer span in a training-side gold passage")
    queries = list(positives)
    chosen = queries
    if share < 1.0:
        pick = np.random.default_rng([seed, 17]).permutation(len(queries))[: round(share * len(queries))]
        chosen = [queries[i] for i in sorted(pick)]
    negs = mine_hard_negatives(dataset, chosen, fold.train_doc_ids, negatives, tokenizer, depth) if negatives else {}
    out: list[ReaderExample] = []
    for q in queries:
        out.extend(positives[q])
        for d in negs.get(q, []):
            out.append(ReaderExample(q, dataset.query_texts[qpos[q]], d, c.texts[pos[d]]))
    return out


def _negative_keep(win: Any, examples: list[ReaderExample], per_passage: int) -> set[int]:
    """The windows of negative passages to train on: each passage's ``per_passage`` windows that
    hold the most distinct question tokens (ties: earlier window first)."""
    ranked: dict[int, list[tuple[int, int]]] = {}
    for w, ids in enumerate(win.input_ids):
        s = win.sample[w]
        if not examples[s].is_negative:
            continue
        question = {t for t, o in zip(ids, win.offsets[w]) if o is None}
        shared = len({t for t, o in zip(ids, win.offsets[w]) if o is not None} & question)
        ranked.setdefault(s, []).append((-shared, w))
    return {w for windows in ranked.values() for _, w in sorted(windows)[:per_passage]}


def make_features(tokenizer: Any, examples: list[ReaderExample], max_length: int, doc_stride: int,
                  max_query_length: int, negative_windows: int = 0) -> list[Feature]:
    """Windows of every example, labelled with the answer's token span when the window holds the
    whole answer and with [CLS] otherwise (negatives, and windows that miss the answer).
    ``negative_windows`` > 0 keeps only that many windows of each negative passage, the hardest."""
    win = encode_windows(tokenizer, [e.question for e in examples], [e.context for e in examples], max_length,
                         doc_stride, max_query_length)
    keep = _negative_keep(win, examples, negative_windows) if negative_windows else None
    feats = []
    for w, ids in enumerate(win.input_ids):
        ex = examples[win.sample[w]]
        if keep is not None and ex.is_negative and w not in keep:
            continue
        cls = win.cls_index[w]
        start = end = cls
        if not ex.is_negative:
            a0, a1 = ex.answer_start, ex.answer_start + len(ex.answer_text)
            ctx = [(t, o) for t, o in enumerate(win.offsets[w]) if o is not None]
            if ctx and ctx[0][1][0] <= a0 and ctx[-1][1][1] >= a1:
                start = next(t for t, o in ctx if o[1] > a0)
                end = [t for t, o in ctx if o[0] < a1][-1]
        types = tuple(win.token_type_ids[w]) if win.token_type_ids is not None else None
        feats.append(Feature(tuple(ids), types, start, end))
    return feats


def checkpoint_key(dataset: Dataset, fold: Fold, config: TrainConfig) -> str:
    """Cache key: dataset sha256, fold identity, training settings and the base weights."""
    from ..encoders.load import base_fingerprint

    return fold_checkpoint_key("reader", dataset, fold, config.key_fields(), base_fingerprint(config.base, config.size, config.seed))


def _collate(feats: list[Feature], pad: int, device: str) -> dict[str, Any]:
    """Model inputs of a micro-batch (padded to its longest window, token types zero where the
    tokenizer has none) with its span labels."""
    import torch

    types = [f.token_type_ids if f.token_type_ids is not None else (0,) * len(f.input_ids) for f in feats]
    batch = to_torch(pad_batch(Tokenized([f.input_ids for f in feats], types, pad), np.arange(len(feats))), device)
    batch["start_positions"] = torch.tensor([f.start for f in feats], device=device)
    batch["end_positions"] = torch.tensor([f.end for f in feats], device=device)
    return batch


def span_loss(model: Any, feats: list[Feature], pad: int, device: str) -> Any:
    """The span head's loss on one micro-batch of windows, padded to its longest window."""
    return model(**_collate(feats, pad, device)).loss


def _save_final(reader: ExtractiveReader, folder: Path, info: dict[str, Any]) -> None:
    """Save into a temp folder, move each entry in, then write ``DONE`` last."""
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=folder))
    try:
        reader.save(tmp, info)
        for entry in sorted(tmp.iterdir()):
            dest = folder / entry.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(folder / DONE_FILE, f"{info['key']}\n")


def train_reader(dataset: Dataset, fold: Fold, config: TrainConfig | None = None,
                 out_dir: str | os.PathLike[str] | None = None, *, stop_after: int | None = None,
                 progress: bool | None = None, on_step: Callable[[int, Any, list[float]], None] | None = None) -> Path:
    """Train the extractive reader on ``fold``'s training side and return its checkpoint folder.

    ``config`` defaults to ``TrainConfig()`` (the full e5-small profile; ``PROFILES['quick']`` is
    the seconds-long one). The folder is ``out_dir`` or ``cache_dir()/reader/<key>``; a finished
    one (``DONE``) is returned as is, an unfinished one resumes from its saved state.
    ``stop_after`` stops after that many steps with the state saved and no ``DONE`` (calling
    again resumes); ``on_step(step, model, losses)`` runs after every step (learning curves)."""
    from ..encoders.load import load_base
    from ..encoders.models import check_device

    config = config or TrainConfig()
    key = checkpoint_key(dataset, fold, config)
    folder = Path(out_dir) if out_dir is not None else cache_dir() / "reader" / key
    check_leakage(fold, dataset)  # never train on what the fold evaluates
    if is_trained(folder):
        log.info("reader %s: using the finished checkpoint %s", fold.name, folder)
        return folder
    check_device(config.device)
    with locked(folder):
        if is_trained(folder):
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        base = load_base(config.base, config.size, config.seed)
        limit = int(getattr(base.model.config, "max_position_embeddings", config.max_length))
        if config.max_length > limit:
            raise OdqaBenchError(f"reader max_length={config.max_length} exceeds the {limit} positions of base {config.base!r}")
        examples = build_reader_examples(dataset, fold, config.negatives, config.bm25_tokenizer, config.negative_depth,
                                         config.negative_share, config.seed)
        feats = make_features(base.tokenizer, examples, config.max_length, config.doc_stride, config.max_query_length,
                              config.negative_windows)
        model = build_qa_model(base.model, config.seed)
        if config.freeze_embeddings:
            freeze_word_embeddings(model)
        freeze_lower_layers(model, config.frozen_layers)
        log.info("reader %s: %d examples, %d windows", fold.name, len(examples), len(feats))
        pad = base.tokenizer.pad_token_id or 0
        lengths = [len(f.input_ids) for f in feats] if config.group_by_length else None
        outcome = train_steps(model, len(feats), lambda idx: span_loss(model, [feats[i] for i in idx], pad, config.device),
                              config.schedule(), folder / STATE_FILE, key, lengths=lengths, stop_after=stop_after,
                              progress=progress, desc="reader", on_step=on_step)
        if not outcome.finished:
            return folder
        step, resumed, losses = outcome.step, outcome.resumed_from, outcome.losses
        model.to("cpu")
        reader = ExtractiveReader(model, base.tokenizer, name=f"reader-{config.base}" + (f"-{config.size}" if config.size else ""),
                                  max_length=config.max_length, doc_stride=config.doc_stride,
                                  max_query_length=config.max_query_length, max_answer_length=config.max_answer_length)
        info = {"key": key, "dataset": dataset.name, "dataset_sha256": dataset.sha256, "fold": fold.index,
                "n_folds": fold.n_folds, "fold_seed": fold.seed, "config": config.key_fields(),
                "base_fingerprint": base.fingerprint, "examples": len(examples),
                "negatives": sum(1 for e in examples if e.is_negative), "windows": len(feats), "steps": step,
                "resumed_from_step": resumed, "losses": [round(x, 6) for x in losses],
                "seconds_this_run": round(time.perf_counter() - t0, 2)}
        _save_final(reader, folder, info)
        (folder / STATE_FILE).unlink(missing_ok=True)
        return folder


def trained_reader(dataset: Dataset, fold: Fold, config: TrainConfig | None = None, device: str = "cpu",
                   **overrides: Any) -> ExtractiveReader:
    """Train (or reuse) the fold's checkpoint and load it as a reader; a cached checkpoint that
    no longer loads (a torn or damaged file) is removed and trained again."""
    folder = train_reader(dataset, fold, config)
    try:
        return load_reader(folder, device=device, **overrides)
    except OdqaBenchError as exc:
        log.warning("%s; training it again", exc)
        with locked(folder):
            shutil.rmtree(folder, ignore_errors=True)
        return load_reader(train_reader(dataset, fold, config), device=device, **overrides)


def read_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record stored with a checkpoint (settings, losses, examples, steps)."""
    return json.loads((Path(folder) / READER_INFO).read_text(encoding="utf-8"))
