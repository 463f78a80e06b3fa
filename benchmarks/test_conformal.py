"""Conformal top-k: calibrate k on fold 1 (articles grouped, seed 0), then measure on folds 2-5
how often the gold passage lands in the top k, and how large the set is. Ids read like
``bm25/korquad-dev/alpha=0.1``.

The guarantee is coverage >= 1 - alpha in expectation; one calibration fold and one test pool
scatter around it, so each cell asserts coverage >= 1 - alpha - slack with slack three standard
errors (calibration Beta spread plus the test binomial, :func:`odqa_core.conformal.coverage_slack`).
"""
from __future__ import annotations

import numpy as np
import pytest

from odqa_core.bench import cached_dataset, cached_run
from odqa_core.conformal import calibrate_k, coverage_slack, gold_ranks, quantile_index, set_sizes
from odqa_core.data.folds import kfold_by_group

ALPHAS = (0.05, 0.1, 0.2)
TOKENIZER = {"default": "regex", "korquad-dev": "kiwi"}
N_FOLDS, SEED = 5, 0
# The embedded sample's 16 calibration questions can only certify alpha >= 1/17: its cells
# stop at 0.2 rather than skip.
DATASET_ALPHAS = {"default": (0.2,), "korquad-dev": ALPHAS}
CELLS = [
    pytest.param(r, d, a, id=f"{r}/{d}/alpha={a}", marks=[pytest.mark.realdata] if d != "default" else [])
    for r in ("bm25", "tfidf")
    for d, alphas in DATASET_ALPHAS.items()
    for a in alphas
]


@pytest.mark.parametrize("retriever,dataset,alpha", CELLS)
def test_conformal(retriever, dataset, alpha, odqa_record):
    ds = cached_dataset(dataset)
    run = cached_run(retriever, TOKENIZER[dataset], dataset)
    odqa_record.dataset(ds)
    folds = kfold_by_group(ds, N_FOLDS, SEED)
    cal_q = folds[0].test_query_ids
    test_q = [q for f in folds[1:] for q in f.test_query_ids]
    n_cal, n_test = len(cal_q), len(test_q)
    if quantile_index(n_cal, alpha) > n_cal:
        pytest.fail(f"{n_cal} calibration questions cannot certify alpha={alpha}: "
                    f"split conformal needs at least {int(np.ceil(1 / alpha)) - 1}")
    cal_ranks = gold_ranks(run, ds.qrels, cal_q)
    k = calibrate_k(cal_ranks, alpha)
    if k is None:
        # the quantile falls on a gold passage the retriever never scores (no shared term):
        # only the whole corpus is certified, which measures nothing
        pytest.fail(f"{int(np.isinf(cal_ranks).sum())} of {n_cal} calibration golds are not retrieved at all; "
                    f"no finite k certifies alpha={alpha}")
    pos = {q: i for i, q in enumerate(run.query_ids)}
    covered = (gold_ranks(run, ds.qrels, test_q) <= k).astype(np.float64)
    sizes = set_sizes(run.scores[[pos[q] for q in test_q]], k=k).astype(np.float64)
    cov = odqa_record("coverage", per_query=covered, query_ids=test_q, alpha=alpha, n_cal=n_cal)
    odqa_record("set_size", per_query=sizes, query_ids=test_q, higher_is_better=False)
    odqa_record("k_hat", float(k), higher_is_better=False, kind="info")
    slack = coverage_slack(alpha, n_cal, n_test)
    assert cov >= 1 - alpha - slack, (
        f"coverage {cov:.3f} below 1 - alpha - slack = {1 - alpha - slack:.3f} (k={k}, n_cal={n_cal}, n_test={n_test})")
    # the calibrated k is the smallest that works on the calibration fold: k - 1 must fall short
    if k > 1:
        assert np.mean(cal_ranks <= k - 1) < quantile_index(n_cal, alpha) / n_cal
