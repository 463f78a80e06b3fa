"""The gate's false-alarm rate and power, simulated on real BM25 per-query vectors (KorQuAD dev
hit@k, SciFact nDCG@10), plus the building blocks of the simulation on synthetic vectors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from odqa_core.baseline import GateConfig, Record, build_baseline, load_config, records_to_cells, run_gate
from odqa_core.baseline.simulate import (
    apply_drop,
    decide,
    format_table,
    perturb,
    quality_comparisons,
    sign_flip_pvalues,
    simulate_gate,
)
from odqa_core.baseline.stats import paired_test
from odqa_core.errors import OdqaBenchError

ROOT = Path(__file__).resolve().parents[1]
QUICK_BASELINE = ROOT / "baselines" / "quick" / "retrieval.json"


def _binary(n: int, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(np.float64)


def test_perturb_keeps_the_mean_in_expectation() -> None:
    x = np.random.default_rng(0).beta(0.5, 0.5, 500)
    cols = perturb(x, churn=0.2, size=4000, rng=np.random.default_rng(1))
    assert cols.shape == (500, 4000)
    changed = np.mean(cols != x[:, None])
    assert changed == pytest.approx(0.2 * (1 - 1 / 500), abs=0.01)
    deltas = cols.mean(axis=0) - x.mean()
    # zero mean: the average of 4000 candidates' deltas is within a few standard errors of 0
    assert abs(deltas.mean()) < 4 * deltas.std(ddof=1) / math.sqrt(4000)
    assert deltas.std(ddof=1) > 0


def test_apply_drop_removes_exactly_the_effect() -> None:
    rng = np.random.default_rng(2)
    b = _binary(5774, 0.9, seed=3)
    out = apply_drop(b, -0.02, rng)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert b.sum() - out.sum() == round(0.02 * 5774)
    assert np.all(out <= b)
    c = np.random.default_rng(4).random(300)
    out = apply_drop(c, -0.01, rng)
    assert c.mean() - out.mean() == pytest.approx(0.01, abs=1e-12)
    assert np.all(out >= 0) and np.all(out <= c)
    with pytest.raises(OdqaBenchError, match="exceeds"):
        apply_drop(np.full(10, 0.01), -0.5, rng)


def test_sign_flip_pvalues_match_the_gates_test() -> None:
    rng = np.random.default_rng(5)
    b = _binary(2000, 0.7, seed=6)
    cands = perturb(b, 0.1, 3, rng)
    cands[:, 1] = apply_drop(cands[:, 1], -0.01, rng)
    cands[:, 2] = b  # unchanged column
    perms = 20000
    p = sign_flip_pvalues(b, cands, perms, np.random.default_rng(7))
    assert p[2] == 1.0
    for j in (0, 1):
        gate = paired_test(b, cands[:, j], permutations=perms, bootstrap=1, seed=j).p_value
        d = cands[:, j] - b
        exact = binom.cdf(int((d > 0).sum()), int((d != 0).sum()), 0.5)
        sd = math.sqrt(max(exact * (1 - exact), 1e-6) / perms)
        assert abs(p[j] - exact) < 5 * sd + 2 / perms
        assert abs(gate - exact) < 5 * sd + 2 / perms
    # continuous values take the explicit sign-flip path
    x = np.random.default_rng(8).random(300)
    cx = perturb(x, 0.2, 2, rng)
    cx[:, 1] = apply_drop(cx[:, 1], -0.02, rng)
    px = sign_flip_pvalues(x, cx, perms, np.random.default_rng(9))
    for j in (0, 1):
        gate = paired_test(x, cx[:, j], permutations=perms, bootstrap=1, seed=10 + j).p_value
        sd = math.sqrt(max(gate * (1 - gate), 1e-4) / perms)
        assert abs(px[j] - gate) < 7 * sd + 2 / perms


def test_decide_is_the_gates_rule() -> None:
    """Fed the gate's own p-values, ``decide`` reproduces ``run_gate``'s verdicts."""
    rng = np.random.default_rng(11)
    cfg = GateConfig(permutations=4000, bootstrap=100)
    qids = [f"q{i}" for i in range(400)]
    old, new = [], []
    for i, drop in enumerate([0.0, 0.0, 0.0, -0.005, -0.01, -0.01, -0.02, -0.03, -0.05, 0.0, -0.015, -0.04]):
        b = _binary(400, 0.6, seed=100 + i)
        c = apply_drop(perturb(b, 0.1, 1, rng)[:, 0], drop, rng)
        cell = f"test_r[c{i:02d}]"
        old.append(Record("retrieval", cell, "hit@5", float(b.mean()), per_query=b.tolist(), query_ids=qids))
        new.append(Record("retrieval", cell, "hit@5", float(c.mean()), per_query=c.tolist(), query_ids=qids))
    baseline = build_baseline("quick", "retrieval", records_to_cells(old))
    for corr in ("none", "holm", "bh"):
        res = run_gate(new, {"retrieval": baseline}, cfg, correction=corr)
        comps = res.comparisons
        verdict = decide(np.array([c.baseline for c in comps]), np.array([c.current for c in comps]),
                         np.array([c.p_value for c in comps]), cfg.tolerance("retrieval", "", "hit@5"), cfg.alpha, corr)
        assert list(verdict) == [c.status == "regressed" for c in comps]
        assert verdict.any() and not verdict.all()


def test_single_cell_false_alarm_rate_is_calibrated() -> None:
    """One cell, no tolerance, no correction: a zero-effect change fails about alpha of the time."""
    x = np.random.default_rng(12).random(300) ** 2
    r = simulate_gate(x, effects=[-0.05], runs=400, grid=1, correction="none", tolerance=0.0, seed=13,
                      churn=0.3, permutations=1000)
    assert 0.02 <= r["false_alarm"]["none"] <= 0.09
    assert r["power"]["none"][-0.05] > 0.5


def test_simulate_gate_is_deterministic_and_monotone() -> None:
    x = _binary(3000, 0.8, seed=14)
    kw = dict(effects=[-0.005, -0.01, -0.02], runs=60, grid=40, tolerance=0.005, seed=15, churn=0.1)
    a, b = simulate_gate(x, **kw), simulate_gate(x, **kw)
    assert a == b
    for corr in ("none", "holm", "bh"):
        powers = [a["power"][corr][e] for e in (-0.005, -0.01, -0.02)]
        assert powers == sorted(powers)
        assert a["false_alarm"][corr] <= a["false_alarm"]["none"]
    assert a["realised_drop"][-0.02] == pytest.approx(round(0.02 * 3000) / 3000)
    assert "power 2pt" in format_table([("synthetic hit", a)])


@pytest.mark.parametrize("bad", [dict(per_query=[-1.0, 1.0]), dict(per_query=[1.0]), dict(effects=[0.01]),
                                 dict(churn=0.0), dict(grid=0), dict(correction="bonferroni")])
def test_simulate_gate_rejects_bad_input(bad: dict) -> None:
    args = dict(per_query=[0.0, 1.0, 1.0, 0.0], effects=[-0.01], runs=2, grid=2) | bad
    with pytest.raises(OdqaBenchError, match="simulate"):
        simulate_gate(**args)


def test_quality_comparisons_groups_folds() -> None:
    cells = {
        "test_r[a/x/k=5]": {"metrics": {"hit@5": {"value": 0.5}, "gold_rank": {"value": 3.0, "kind": "info"}}},
        "test_f[a/x/fold=1]": {"metrics": {"hit@5": {"value": 0.5}}},
        "test_f[a/x/fold=2]": {"metrics": {"hit@5": {"value": 0.5}}},
        "test_p[a]": {"metrics": {"qps_ratio": {"value": 2.0, "kind": "speed"}}},
    }
    assert quality_comparisons({"cells": cells}) == 2


# ---------------------------------------------------------------------------------------------
# real per-query vectors


def _grid() -> int:
    if QUICK_BASELINE.exists():
        return quality_comparisons(json.loads(QUICK_BASELINE.read_text(encoding="utf-8")))
    return 160


@pytest.fixture(scope="module")
def real_vectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    from odqa_core.bench import require_dataset
    from odqa_core.metrics import evaluate
    from odqa_core.retrieval import get_retriever, retrieve

    out: dict[str, np.ndarray] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODQA_CACHE_DIR", str(tmp_path_factory.mktemp("odqa_cache")))
        kq, sf = require_dataset("korquad-dev"), require_dataset("scifact")
        run = retrieve(get_retriever("bm25", tokenizer="regex").index(kq.corpus), kq, 20)
        m = evaluate(run, kq.qrels, ["hit@5", "hit@20"])
        out["korquad-dev hit@5"], out["korquad-dev hit@20"] = m["hit@5"], m["hit@20"]
        run = retrieve(get_retriever("bm25", tokenizer="regex-stem").index(sf.corpus), sf, 10)
        out["scifact ndcg@10"] = evaluate(run, sf.qrels, ["ndcg@10"])["ndcg@10"]
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("name,runs", [("korquad-dev hit@5", 200), ("korquad-dev hit@20", 200),
                                       ("scifact ndcg@10", 100)])
def test_false_alarms_and_power_on_real_vectors(real_vectors: dict[str, np.ndarray], name: str, runs: int) -> None:
    cfg = load_config(ROOT / "pyproject.toml")
    metric = name.split()[-1]
    tol = cfg.tolerance("retrieval", f"test_retrieval[bm25-regex/{name.split()[0]}/k=5]", metric)
    r = simulate_gate(real_vectors[name], effects=[-0.005, -0.01, -0.02], runs=runs, grid=_grid(),
                      correction=("none", "holm", "bh"), tolerance=tol, alpha=cfg.alpha, seed=2024,
                      churn=0.1, permutations=cfg.permutations, power=cfg.power, mde_rho=cfg.mde_rho)
    print("\n" + format_table([(name, r)]))
    print(f"changed per null candidate {r['changed_fraction']:.4f}, null delta sd {r['null_delta_sd']:.4f}, "
          f"MDE {r['mde']:.4f}")
    slack = 3 * math.sqrt(cfg.alpha * (1 - cfg.alpha) / runs)
    assert r["false_alarm"]["holm"] <= cfg.alpha + slack
    assert r["false_alarm"]["bh"] <= cfg.alpha + slack
    assert r["false_alarm"]["holm"] <= r["false_alarm"]["none"]
    for e in (-0.005, -0.01, -0.02):
        assert r["realised_drop"][e] == pytest.approx(-e, abs=1 / r["n"])
    if name == "korquad-dev hit@5":
        assert r["power"][cfg.correction][-0.02] >= 0.8
