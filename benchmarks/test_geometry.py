"""Embedding geometry per encoder family and size, before and after DPR fine-tuning.

Cells read ``<family>-<size>/<dataset>/<stage>``: stage ``zero-shot`` is the pretrained encoder,
``dpr-fold=<f>`` the DPR checkpoint test_grid trains on fold f (same settings, so the checkpoint
and embeddings come from the cache). Every cell scores held-out questions fold by fold
(test_grid's folds): a fold's questions, their gold passages (from the qrels) and one seeded
sample of random passages shared by all cells. A zero-shot cell runs all folds, so it and the
pooled DPR folds of the same model see the same questions and the same random pairs and differ
only in the encoder.

Recorded: ``alignment`` (E||q - p+||^2, lower is better), ``uniformity`` (over a fold's questions
and the random passages, mean over folds, lower is better) and ``cosine_gap`` (positive minus
random cosine per question, higher is better) are gated; ``pos_cosine`` (equal to
1 - alignment / 2) and ``rand_cosine`` (a shift of every cosine moves it without changing any
ranking) are kind ``info``. With ``--odqa-report DIR`` the cosine histograms go to
``DIR/geometry_<dataset>.png``.

Quick profile: the embedded ``default`` sample with MiniLM L2 zero-shot and the tiny random
encoder before and after test_grid's quick DPR training. Full profile (``full``, ``realdata``):
KorQuAD dev with test_grid's zero-shot models at 256 tokens and its DPR models per fold.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import test_grid as grid
from odqa_core.bench import cached_dataset
from odqa_core.data.types import Dataset
from odqa_core.errors import OdqaBenchError
from odqa_core.metrics.geometry import geometry, pair_cosines
from odqa_core.report.geometry_plot import ZERO_SHOT, pool_panels, write_geometry_plots
from odqa_core.retrieval import get_retriever

log = logging.getLogger(__name__)

QUICK_DATASET = "default"
N_RANDOM = 1000   # random passages per dataset (all of them when the corpus is smaller)
SEED = 0
# the tiny encoder has random weights: it is the DPR starting point, not an encoder to hold to a geometry
UNTRAINED = {"tiny"}


def _grid_models(retriever: str, dataset: str) -> list[tuple[str, str]]:
    """(family, size) of test_grid's ``retriever`` cells on ``dataset``, in grid order."""
    return list(dict.fromkeys((p.values[1], p.values[2]) for p in grid._cells()
                              if p.values[0] == retriever and p.values[3] == dataset))


def _cells() -> Iterator[Any]:
    for dataset, marks in ((QUICK_DATASET, ()), (grid.FULL_DATASET, (pytest.mark.full, pytest.mark.realdata))):
        dpr = _grid_models("dpr", dataset)
        for m, s in dict.fromkeys(_grid_models("dense", dataset) + dpr):
            yield pytest.param(m, s, dataset, ZERO_SHOT, id=f"{m}-{s}/{dataset}/{ZERO_SHOT}", marks=marks)
        for m, s in dpr:
            for fold in range(1, grid.N_FOLDS + 1):
                stage = f"dpr-fold={fold}"
                yield pytest.param(m, s, dataset, stage, id=f"{m}-{s}/{dataset}/{stage}", marks=marks)


@dataclass(frozen=True)
class Embedded:
    """One encoder's vectors for a dataset: every question, every passage, row-aligned with
    ``dataset.query_ids`` and ``dataset.corpus.ids``."""

    queries: np.ndarray
    passages: np.ndarray


@dataclass(frozen=True)
class FoldGeometry:
    """Per-question cosines and the uniformity of one fold."""

    query_ids: list[str]
    positive: np.ndarray
    random: np.ndarray
    uniformity: float
    alignment: float


def _fold_of(stage: str) -> int | None:
    return None if stage == ZERO_SHOT else int(stage.rpartition("=")[2])


def _dense_retriever(model: str, size: str, dataset: str, fold: int | None) -> Any:
    """test_grid's dense retriever for the zero-shot encoder, or the one its DPR retriever
    builds over the fold's checkpoint (trained only when the cache lacks it)."""
    ds = cached_dataset(dataset)
    if fold is None:
        return get_retriever("dense", **grid._params("dense", model, size, dataset, 0))
    dpr = get_retriever("dpr", **grid._params("dpr", model, size, dataset, fold)).index(ds.corpus)
    return dpr.dense_retriever  # the DenseRetriever over the checkpoint, with the grid's encoder settings


def embed(dense: Any, ds: Dataset) -> Embedded:
    """All questions and passages through the retriever's own cached paths (the embeddings
    test_grid's run of the same retriever stored)."""
    return Embedded(dense.embed_queries(list(ds.query_texts)), dense.passage_embeddings(ds.corpus.joined()))


def gold_rows(ds: Dataset, query_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Questions with a gold passage in the corpus and each one's gold row (highest grade,
    then the earliest passage)."""
    row = {d: i for i, d in enumerate(ds.corpus.ids)}
    kept, rows = [], []
    for q in query_ids:
        golds = [(-g, row[d]) for d, g in ds.qrels.get(q, {}).items() if g > 0 and d in row]
        if golds:
            kept.append(q)
            rows.append(min(golds)[1])
    return kept, np.asarray(rows, dtype=np.int64)


@cache
def random_rows(dataset: str) -> np.ndarray:
    """The fixed seeded sample of random passages (rows), shared by every cell of a dataset."""
    n = len(cached_dataset(dataset).corpus)
    return np.sort(np.random.default_rng(SEED).choice(n, size=min(N_RANDOM, n), replace=False))


def fold_geometry(emb: Embedded, ds: Dataset, query_ids: list[str], rand: np.ndarray) -> FoldGeometry:
    """Geometry of one fold's held-out questions against their gold and the random passages."""
    kept, gold = gold_rows(ds, query_ids)
    if not kept:
        raise OdqaBenchError(f"{ds.name}: none of the fold's {len(query_ids)} questions has a gold passage in the corpus")
    qrow = {q: i for i, q in enumerate(ds.query_ids)}
    q = emb.queries[[qrow[x] for x in kept]]
    p = emb.passages[gold]
    r = emb.passages[rand]
    g = geometry(q, p, r, seed=SEED)
    pos, neg = pair_cosines(q, p, r, seed=SEED)
    return FoldGeometry(kept, pos, neg, g.uniformity, g.alignment)


@cache
def _folds(dataset: str) -> list[list[str]]:
    """Each of test_grid's folds as its held-out question ids."""
    return [f.test_query_ids for f in grid._folds(dataset)]




@pytest.fixture(scope="module")
def cosine_cells(odqa_report_dir: Path | None) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Cell id -> (positive, random) cosines; the histogram PNGs are drawn once, at module end,
    when ``--odqa-report`` asks for them."""
    cells: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    yield cells
    if cells and odqa_report_dir is not None:
        for path in write_geometry_plots(pool_panels(cells), odqa_report_dir):
            log.info("wrote %s", path)


@pytest.mark.parametrize("model,size,dataset,stage", list(_cells()))
def test_geometry(model: str, size: str, dataset: str, stage: str, odqa_record: Any, odqa_dataset: Any,
                  cosine_cells: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    ds = odqa_dataset(dataset)
    fold = _fold_of(stage)
    folds = _folds(dataset)
    if fold is not None:
        # a fold's DPR model only meets its held-out questions (the grid cached exactly those)
        ds = ds.subset_queries(folds[fold - 1])
    dense = _dense_retriever(model, size, dataset, fold)
    odqa_record.settings(dense)
    emb = embed(dense, ds)
    parts = [fold_geometry(emb, ds, ids, random_rows(dataset)) for ids in (folds if fold is None else [folds[fold - 1]])]
    qids = [q for p in parts for q in p.query_ids]
    pos = np.concatenate([p.positive for p in parts])
    rand = np.concatenate([p.random for p in parts])
    align = 2.0 - 2.0 * pos   # ||q - p||^2 of unit vectors, per question
    uni = float(np.mean([p.uniformity for p in parts]))

    odqa_record.dataset(ds)
    odqa_record("alignment", per_query=align, query_ids=qids, higher_is_better=False)
    odqa_record("uniformity", uni, higher_is_better=False)
    odqa_record("cosine_gap", per_query=pos - rand, query_ids=qids)
    odqa_record("pos_cosine", per_query=pos, query_ids=qids, kind="info")
    odqa_record("rand_cosine", per_query=rand, query_ids=qids, higher_is_better=False, kind="info")
    cosine_cells[f"{model}-{size}/{dataset}/{stage}"] = (pos, rand)

    n_expected = sum(len(gold_rows(ds, ids)[0]) for ids in (folds if fold is None else [folds[fold - 1]]))
    assert len(qids) == n_expected > 0 and len(set(qids)) == len(qids)
    # the per-question alignment agrees with the library's pairwise definition, fold by fold
    for p in parts:
        assert abs(float(np.mean(2.0 - 2.0 * p.positive)) - p.alignment) < 1e-6
    assert np.isfinite(uni) and -8.0 - 1e-9 <= uni <= 1e-9   # t = 2, squared distances in [0, 4]
    if model not in UNTRAINED or fold is not None:
        assert pos.mean() > rand.mean(), (
            f"{model}-{size} {stage}: gold passages sit no closer than random ones "
            f"(mean cosine {pos.mean():.4f} vs {rand.mean():.4f})")
