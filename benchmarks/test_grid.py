"""The retrievers × model sizes × folds × top-k grid.

Each cell scores one fold's held-out questions (folds grouped by article, seed 0), so the
gate pools a cell's folds and reports mean ± std over them. Ids read like
``dense-minilm-L2/default/fold=3/k=20``.

Quick profile (CI): the embedded ``default`` sample, all five folds, k 5 and 20, with bm25 and
tfidf (Kiwi tokens), dense / hybrid / sequential on MiniLM L2, and DPR on a tiny random
encoder trained a few steps per fold (proves training, caching and determinism, not quality).
Full profile (marker ``full``, ``tox -e full``): KorQuAD 1.0 dev (964 paragraphs, 5,774
questions; the issue's grid), k 5/10/20/30, zero-shot MiniLM L2/L4/L6 and e5-small L3/L6/L12
for dense, hybrid and sequential (passages at 256 tokens), and DPR trained per fold: MiniLM
L2/L4/L6 fully fine-tuned and e5-small L3 with LoRA r=8, ``FULL_DPR_STEPS`` steps of 16
questions with passages cut to 128 tokens (a CPU budget; ``ODQA_DPR_EPOCHS=N`` trains N
whole epochs instead). korquad-open's
dense cells are in ``test_open_domain.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache

import pytest

from odqa_core.baseline.settings import retriever_settings
from odqa_core.bench import cached_dataset
from odqa_core.data.folds import kfold_by_group
from odqa_core.metrics import answer_hits, evaluate
from odqa_core.retrieval import Run, get_retriever, retrieve

N_FOLDS, FOLD_SEED, DEPTH = 5, 0, 100
SPARSE_TOKENIZER = "kiwi"
QUICK_DPR_STEPS = 30
FULL_DATASET = "korquad-dev"
FULL_DPR_STEPS = 50
FULL_MAX_LENGTH = 256
FULL_DPR_MAX_LENGTH = 128        # passages in DPR training and in its index: the CPU budget
FULL_ZERO_SHOT = [("minilm", "L2"), ("minilm", "L4"), ("minilm", "L6"), ("e5-small", "L3"), ("e5-small", "L6"),
                  ("e5-small", "L12")]
FULL_DENSE_ONLY = [("use-m", "-")]   # USE-multilingual: one size, numpy, no training path
FULL_DPR = [("minilm", "L2"), ("minilm", "L4"), ("minilm", "L6"), ("e5-small", "L3")]
LORA = {"e5-small": 8}           # DPR on e5-small trains LoRA adapters of this rank; MiniLM trains fully
LORA_LR = 5e-4


def _cells():
    quick = [("bm25", "-", "-"), ("tfidf", "-", "-"), ("dense", "minilm", "L2"), ("hybrid", "minilm", "L2"),
             ("sequential", "minilm", "L2"), ("dpr", "tiny", "L2")]
    for r, m, s in quick:
        for fold in range(1, N_FOLDS + 1):
            for k in (5, 20):
                yield pytest.param(r, m, s, "default", fold, k, id=_id(r, m, s, "default", fold, k))
    full = [("bm25", "-", "-"), ("tfidf", "-", "-")] + [
        (r, m, s) for r in ("dense", "hybrid", "sequential") for m, s in FULL_ZERO_SHOT] + [
        ("dense", m, s) for m, s in FULL_DENSE_ONLY] + [("dpr", m, s) for m, s in FULL_DPR]
    for r, m, s in full:
        for fold in range(1, N_FOLDS + 1):
            for k in (5, 10, 20, 30):
                yield pytest.param(r, m, s, FULL_DATASET, fold, k, id=_id(r, m, s, FULL_DATASET, fold, k),
                                   marks=(pytest.mark.full, pytest.mark.realdata))


def _id(r: str, m: str, s: str, d: str, fold: int, k: int) -> str:
    name = f"{r}-{SPARSE_TOKENIZER}" if m == "-" else f"{r}-{m}-{s}"
    return f"{name}/{d}/fold={fold}/k={k}"


def _params(retriever: str, model: str, size: str, dataset: str, fold: int) -> dict:
    quick = dataset == "default"
    length = {} if quick else {"max_length": FULL_MAX_LENGTH}
    if retriever in ("bm25", "tfidf"):
        return {"tokenizer": SPARSE_TOKENIZER}
    if retriever == "dense" and size == "-":
        return {"model": model}  # a family without sizes or a token limit to set
    if retriever == "dense":
        return {"model": model, "size": size, **length}
    if retriever in ("hybrid", "sequential"):
        return {"tokenizer": SPARSE_TOKENIZER, "dense_model": model, "size": size, **length}
    epochs = int(os.environ.get("ODQA_DPR_EPOCHS", "0") or 0)
    lora = {} if quick or model not in LORA else {"lora_r": LORA[model], "lr": LORA_LR}
    return {"dataset": cached_dataset(dataset), "fold": fold, "n_folds": N_FOLDS, "fold_seed": FOLD_SEED,
            "base": model, "size": size, "steps": QUICK_DPR_STEPS if quick else (None if epochs else FULL_DPR_STEPS),
            "epochs": max(epochs, 1), "bm25_tokenizer": SPARSE_TOKENIZER, "batch_size": 8 if quick else 16,
            "max_length_p": 128 if quick else FULL_DPR_MAX_LENGTH, **lora,
            **({} if quick else {"dense": {"max_length": FULL_DPR_MAX_LENGTH}})}


@dataclass(frozen=True)
class Built:
    """A run and the resolved settings of the retriever that made it (encoder backend, max
    length, fingerprint; empty for sparse retrievers), which the cell's baseline records."""

    run: Run
    settings: dict[str, str] = field(default_factory=dict)


@cache
def grid_run(retriever: str, model: str, size: str, dataset: str, fold: int) -> Built:
    """One run per retriever setting; DPR's weights depend on the fold, so its run covers only
    that fold's held-out questions (encoding the rest would be thrown away)."""
    ds = cached_dataset(dataset)
    r = get_retriever(retriever, **_params(retriever, model, size, dataset, fold)).index(ds.corpus)
    if retriever == "dpr":
        ds = ds.subset_queries(_folds(dataset)[fold - 1].test_query_ids)
    return Built(retrieve(r, ds, DEPTH), retriever_settings(r))


def _run_for(retriever: str, model: str, size: str, dataset: str, fold: int) -> Built:
    return grid_run(retriever, model, size, dataset, fold if retriever == "dpr" else 0)


@cache
def _folds(dataset: str):
    return kfold_by_group(cached_dataset(dataset), N_FOLDS, FOLD_SEED)


@pytest.mark.parametrize("retriever,model,size,dataset,fold,k", list(_cells()))
def test_grid(retriever, model, size, dataset, fold, k, odqa_record, odqa_dataset):
    ds = odqa_dataset(dataset)
    built = _run_for(retriever, model, size, dataset, fold)
    run = built.run
    test_q = _folds(dataset)[fold - 1].test_query_ids
    qrels = {q: ds.qrels[q] for q in test_q}
    odqa_record.dataset(ds)
    odqa_record.settings(built.settings)
    gold = evaluate(run, qrels, [f"hit@{k}", f"mrr@{k}"])
    ans = evaluate(run, qrels, [f"hit@{k}"], hits=answer_hits(run, ds.corpus.texts, ds.answers))
    odqa_record.scores(gold)
    odqa_record(f"answer_hit@{k}", per_query=ans[f"hit@{k}"], query_ids=ans.query_ids)
    assert len(gold.query_ids) > 0
    # the gold paragraph holds an answer string, so answer hits include gold hits
    assert ans[f"hit@{k}"].mean() >= gold[f"hit@{k}"].mean() - 1e-12
