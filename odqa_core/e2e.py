"""End-to-end QA: retriever top-k passages -> extractive reader -> EM/F1 per query (max over the
gold answers; KorQuAD character F1 for ``ko``, SQuAD for ``en``), beside the gold-passage
baseline (the reader given only the gold passage), which shows what retrieval loses.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .data.types import Dataset
from .errors import OdqaBenchError
from .metrics import answer_hits, best_over_golds
from .reader.extractive import ExtractiveReader, Prediction, choose
from .retrieval import Run, retrieve

__all__ = ["LANGS", "read_gold_passages", "read_runs", "run_e2e", "run_e2e_sweep", "score_predictions"]

log = logging.getLogger(__name__)

LANGS = ("ko", "en", "auto")
_HANGUL = re.compile("[\uac00-\ud7a3]")


def _lang_of(golds: Sequence[str], lang: str) -> str:
    """``auto``: KorQuAD scoring for answers with Hangul, SQuAD scoring otherwise (bilingual data)."""
    if lang != "auto":
        return lang
    return "ko" if any(_HANGUL.search(g) for g in golds) else "en"


def score_predictions(predictions: Sequence[str], golds: Sequence[Sequence[str]], lang: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (EM, F1) vectors in [0, 1], each the maximum over that query's gold answers."""
    if lang not in LANGS:
        raise OdqaBenchError(f"unknown lang {lang!r}; choose {' or '.join(LANGS)}")
    if len(predictions) != len(golds):
        raise OdqaBenchError(f"{len(predictions)} predictions for {len(golds)} gold answer lists")
    pairs = [best_over_golds(p, list(g), _lang_of(g, lang)) for p, g in zip(predictions, golds)]
    em = np.array([e for e, _ in pairs], dtype=np.float64)
    f1 = np.array([f for _, f in pairs], dtype=np.float64)
    return em, f1


def _run_for(dataset: Dataset, retriever: Any, depth: int) -> Run:
    if isinstance(retriever, Run):
        missing = [q for q in dataset.query_ids if q not in set(retriever.query_ids)]
        if missing:
            raise OdqaBenchError(f"{dataset.name}: query {missing[0]!r} is not in the run {retriever.name!r}")
        if retriever.k < depth:
            raise OdqaBenchError(f"run {retriever.name!r} has depth {retriever.k}, fewer than k={depth}")
        pos = {q: i for i, q in enumerate(retriever.query_ids)}
        rows = [pos[q] for q in dataset.query_ids]
        return Run(list(dataset.query_ids), retriever.doc_ids, retriever.indices[rows], retriever.scores[rows], retriever.name)
    if not hasattr(retriever, "search"):
        raise OdqaBenchError(f"run_e2e: expected an indexed retriever or a Run, got {type(retriever).__name__}")
    return retrieve(retriever, dataset, depth)


def read_gold_passages(dataset: Dataset, reader: ExtractiveReader, query_ids: Sequence[str], lang: str,
                       show_progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[Prediction]]:
    """The reader given only each question's gold passages: per-query (EM, F1, prediction),
    the ceiling that retrieval can only lower."""
    ds = dataset.subset_queries(list(query_ids))
    texts, pos = dataset.corpus.texts, {d: i for i, d in enumerate(dataset.corpus.ids)}
    gold_passages = [[texts[pos[d]] for d, g in sorted(ds.qrels.get(q, {}).items()) if g > 0 and d in pos]
                     for q in ds.query_ids]
    preds = [choose(c) for c in reader.predict_passages(ds.query_texts, gold_passages, show_progress)]
    em, f1 = score_predictions([p.text for p in preds], [ds.answers.get(q, []) for q in ds.query_ids], lang)
    return em, f1, preds


PairKey = tuple[str, str]  # (query id, passage text)


def read_runs(reader: ExtractiveReader, jobs: Sequence[tuple[Dataset, Run]], query_ids: Sequence[str], depth: int,
              show_progress: bool = False) -> dict[PairKey, Prediction]:
    """Read each distinct (query, passage) pair in the top ``depth`` of every (dataset, run) once.

    Runs over one question set share most passages (bm25 and hybrid, a corpus and its superset),
    so cells read them once; the pairs are read in one fixed order (queries, then jobs, then
    rank), so an answer never depends on which cells ran. :func:`run_e2e_sweep` takes the result
    as ``candidates``."""
    pairs: dict[PairKey, str] = {}
    rows = [({x: i for i, x in enumerate(run.query_ids)}, {x: i for i, x in enumerate(ds.query_ids)}) for ds, run in jobs]
    for q in query_ids:
        for (ds, run), (pos, qpos) in zip(jobs, rows):
            if q not in pos:
                raise OdqaBenchError(f"{ds.name}: query {q!r} is not in the run {run.name!r}")
            for j in run.indices[pos[q], :depth]:
                if j >= 0:
                    pairs.setdefault((q, ds.corpus.texts[j]), ds.query_texts[qpos[q]])
    keys = list(pairs)
    read = reader.predict_passages([pairs[k] for k in keys], [[k[1]] for k in keys], show_progress)
    return {k: r[0] for k, r in zip(keys, read)}


def _pick(candidates: Mapping[PairKey, Prediction], qids: Sequence[str],
          passages: Sequence[Sequence[str]]) -> list[list[Prediction]]:
    """Each question's candidates from pairs read by :func:`read_runs`, indexed by rank."""
    out = []
    for q, ps in zip(qids, passages):
        row = []
        for p, text in enumerate(ps):
            c = candidates.get((q, text))
            if c is None:
                raise OdqaBenchError(f"query {q!r}: passage at rank {p + 1} was not read (candidates cover another run)")
            row.append(replace(c, passage_index=p) if c.passage_index >= 0 else c)
        out.append(row)
    return out


def run_e2e_sweep(dataset: Dataset, retriever: Any, reader: ExtractiveReader, ks: Sequence[int], lang: str,
                  weight: float = 0.0, *, query_ids: Sequence[str] | None = None, gold_baseline: bool = True,
                  show_progress: bool = False,
                  candidates: Mapping[PairKey, Prediction] | None = None) -> dict[int, dict[str, Any]]:
    """:func:`run_e2e` for several k at once: the reader reads the top ``max(ks)`` passages once
    and each k picks its answer among the first k of them (``candidates``: pairs already read
    by :func:`read_runs`)."""
    if lang not in LANGS:
        raise OdqaBenchError(f"unknown lang {lang!r}; choose {' or '.join(LANGS)}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise OdqaBenchError(f"k must be positive integers, got {list(ks)}")
    qids = list(query_ids) if query_ids is not None else [q for q in dataset.query_ids if dataset.answers.get(q)]
    if not qids:
        raise OdqaBenchError(f"{dataset.name}: no query with gold answers to read")
    ds = dataset.subset_queries(qids)
    if len(ds.query_ids) != len(qids):
        unknown = next(q for q in qids if q not in set(ds.query_ids))
        raise OdqaBenchError(f"{dataset.name}: unknown query id {unknown!r}")
    texts = dataset.corpus.texts
    run = _run_for(ds, retriever, ks[-1])
    depth = ks[-1]
    passages = [[texts[j] for j in run.indices[i, :depth] if j >= 0] for i in range(len(qids))]
    rscores = [[float(s) for j, s in zip(run.indices[i, :depth], run.scores[i, :depth]) if j >= 0] for i in range(len(qids))]
    if candidates is None:
        cands = reader.predict_passages(ds.query_texts, passages, show_progress)
    else:
        cands = _pick(candidates, qids, passages)
    golds = [ds.answers.get(q, []) for q in qids]
    hits = answer_hits(run, texts, ds.answers)
    gold_em = gold_f1 = None
    gold_preds: list[Prediction] | None = None
    if gold_baseline:
        gold_em, gold_f1, gold_preds = read_gold_passages(dataset, reader, qids, lang, show_progress)
    out: dict[int, dict[str, Any]] = {}
    for k in ks:
        preds = [choose(c[:k], r[:k], weight) for c, r in zip(cands, rscores)]
        em, f1 = score_predictions([p.text for p in preds], golds, lang)
        out[k] = {"k": k, "lang": lang, "weight": weight, "query_ids": qids, "em": em, "f1": f1,
                  "answer_hit": hits[:, :k].any(axis=1).astype(np.float64), "predictions": preds,
                  "gold_em": gold_em, "gold_f1": gold_f1, "gold_predictions": gold_preds}
        log.info("%s k=%d: EM %.4f F1 %.4f (gold passage: EM %s)", dataset.name, k, em.mean(), f1.mean(),
                 "-" if gold_em is None else f"{gold_em.mean():.4f}")
    return out


def run_e2e(dataset: Dataset, retriever: Any, reader: ExtractiveReader, k: int, lang: str, weight: float = 0.0,
            **kw: Any) -> dict[str, Any]:
    """Retrieve the top ``k`` passages per query (``retriever``: an indexed retriever or a
    :class:`Run`), read them, and score. Returns per-query ``em``/``f1`` vectors, the gold-passage
    baseline ``gold_em``/``gold_f1``, ``answer_hit`` (an answer string is in the top k), the
    predictions and the ``query_ids`` (queries with gold answers, unless ``query_ids`` is given)."""
    return run_e2e_sweep(dataset, retriever, reader, [k], lang, weight, **kw)[int(k)]
