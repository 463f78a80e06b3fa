"""End-to-end QA: BM25 top-k passages -> extractive reader trained on the fold's training side ->
EM/F1 (max over gold answers, KorQuAD character F1) on the fold's test questions. Cells read
``bm25/<dataset>/k=<k>/fold=<f>``; ``gold_em``/``gold_f1`` (the reader given only the gold
passage) and ``answer_hit`` (an answer string is in the top k) are recorded beside, ungated.

Quick: a tiny random BERT trained 24 steps on ``default`` (fold 1 of 2): proves the path,
the cache and determinism; its numbers are low by design. Full (marker ``full``): multilingual
e5-small (12 layers), one epoch per fold on korquad-dev, 5 folds: hours on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pytest

from odqa_core.bench import cached_dataset, cached_run

pytest.importorskip("torch")
pytest.importorskip("transformers")

KS = (1, 5, 10, 20)


@dataclass(frozen=True)
class Setup:
    dataset: str
    n_folds: int
    folds: tuple[int, ...]
    tokenizer: str
    profile: str
    marks: tuple = field(default=(), compare=False)


SETUPS = (
    Setup("default", 2, (1,), "regex", "quick"),
    Setup("korquad-dev", 5, (1, 2, 3, 4, 5), "kiwi", "full", (pytest.mark.full, pytest.mark.realdata)),
)
CELLS = [pytest.param(s, f, k, id=f"bm25/{s.dataset}/k={k}/fold={f}", marks=s.marks)
         for s in SETUPS for f in s.folds for k in KS]


@cache
def e2e_results(setup: Setup, fold_index: int) -> dict:
    """Train (or reuse) the fold's reader, read the test questions' top 20 BM25 passages once,
    and score every k."""
    from odqa_core.data.folds import get_fold
    from odqa_core.e2e import run_e2e_sweep
    from odqa_core.reader.train import PROFILES, trained_reader

    ds = cached_dataset(setup.dataset)
    fold = get_fold(ds, fold_index, setup.n_folds)
    config = PROFILES[setup.profile]
    reader = trained_reader(ds, fold, config, threads=config.threads)
    qids = [q for q in fold.test_query_ids if ds.answers.get(q)]
    run = cached_run("bm25", setup.tokenizer, setup.dataset)
    return run_e2e_sweep(ds, run, reader, KS, "auto", query_ids=qids)


@pytest.mark.parametrize("setup,fold,k", CELLS)
def test_reader(setup, fold, k, odqa_record):
    ds = cached_dataset(setup.dataset)
    res = e2e_results(setup, fold)[k]
    odqa_record.dataset(ds)
    qids = res["query_ids"]
    odqa_record("em", per_query=res["em"], query_ids=qids)
    odqa_record("f1", per_query=res["f1"], query_ids=qids)
    odqa_record("gold_em", per_query=res["gold_em"], query_ids=qids, kind="info")
    odqa_record("gold_f1", per_query=res["gold_f1"], query_ids=qids, kind="info")
    odqa_record(f"answer_hit@{k}", per_query=res["answer_hit"], query_ids=qids, kind="info")
    assert np.all(res["f1"] >= res["em"]), "an exact match must have F1 = 1"
    # every answer is text of one of the top-k passages it was read from
    run = cached_run("bm25", setup.tokenizer, setup.dataset)
    pos = {q: i for i, q in enumerate(run.query_ids)}
    for q, p in zip(qids, res["predictions"]):
        if p.passage_index < 0:  # BM25 found no passage sharing a word with the question
            assert p.text == "" and run.indices[pos[q], 0] < 0, (q, p)
            continue
        assert p.passage_index < k, (q, p)
        j = run.indices[pos[q], p.passage_index]
        assert p.text == ds.corpus.texts[j][p.start_char : p.end_char]
    if setup.profile == "full":
        # a trained e5 reader must read gold passages far better than chance
        assert float(np.mean(res["gold_f1"])) > 0.3, "the reader did not learn to extract answers"
