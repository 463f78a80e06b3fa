"""Ranking metrics against trec_eval (pytrec_eval) on real runs and ranx on graded qrels,
hypothesis properties of every metric, and hand-worked SQuAD/KorQuAD EM/F1 cases."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.data import Dataset, load_dataset
from odqa_core.errors import OdqaBenchError
from odqa_core.metrics import (
    answer_hits,
    best_over_golds,
    evaluate,
    exact_match,
    f1,
    judge,
    normalize_korquad,
    normalize_squad,
    parse_metric,
    rag_precision_at_k,
)
from odqa_core.retrieval import Run, get_retriever, retrieve

HYP = settings(max_examples=80, deadline=None, database=None, derandomize=True)

# trec_eval measure -> our metric. recip_rank has no cut-off; on a run of depth 100 it is mrr@100.
TREC_PAIRS = {
    "ndcg_cut_5": "ndcg@5", "ndcg_cut_10": "ndcg@10", "ndcg_cut_100": "ndcg@100",
    "P_5": "precision@5", "P_10": "precision@10",
    "recall_10": "recall@10", "recall_100": "recall@100",
    "map_cut_10": "map@10", "map_cut_100": "map@100",
    "success_1": "hit@1", "success_5": "hit@5", "success_10": "hit@10",
    "recip_rank": "mrr@100",
}
TREC_MEASURES = {"ndcg_cut.5,10,100", "P.5,10", "recall.10,100", "map_cut.10,100", "success.1,5,10", "recip_rank"}


def _judged(qrels: dict[str, dict[str, int]]) -> list[str]:
    return [q for q, g in qrels.items() if any(v > 0 for v in g.values())]


@pytest.fixture(scope="module")
def pytrec_eval() -> Any:
    """The trec_eval bindings; only the parity tests need them, so only they skip without them."""
    return pytest.importorskip("pytrec_eval")


def _trec_diffs(pytrec_eval: Any, run: Run, qrels: dict[str, dict[str, int]], pairs: dict[str, str] = TREC_PAIRS,
                measures: set[str] = TREC_MEASURES) -> dict[str, float]:
    """Largest per-query |ours - trec_eval| for each measure, over queries both report."""
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run.to_dict())
    ours = evaluate(run, qrels, list(pairs.values()))
    qids = _judged(qrels)
    both = [i for i, q in enumerate(qids) if q in ref]
    assert both, "no query in common with trec_eval"
    out = {}
    for trec_name, name in pairs.items():
        theirs = np.array([ref[qids[i]][trec_name] for i in both])
        out[trec_name] = float(np.abs(ours[name][both] - theirs).max())
    return out


# --- trec_eval parity on real runs -----------------------------------------------------------

@pytest.fixture(scope="module")
def scifact(module_cache: object, data_root: object) -> Dataset:
    return load_dataset("scifact")


@pytest.fixture(scope="module")
def korquad(module_cache: object, data_root: object) -> Dataset:
    return load_dataset("korquad-dev")


@pytest.mark.parametrize("retriever", ["bm25", "tfidf"])
def test_trec_eval_parity_scifact(pytrec_eval: Any, scifact: Dataset, retriever: str) -> None:
    run = retrieve(get_retriever(retriever, tokenizer="regex").index(scifact.corpus), scifact, 100)
    assert run.query_ids == scifact.query_ids and (run.indices[:, 99] >= 0).all()
    diffs = _trec_diffs(pytrec_eval, run, scifact.qrels)
    print(f"scifact {retriever}: largest per-query |ours - trec_eval| = {max(diffs.values()):.3g}")
    assert max(diffs.values()) <= 1e-12, diffs


@pytest.mark.parametrize("retriever", ["bm25", "tfidf"])
def test_trec_eval_parity_korquad_dev(pytrec_eval: Any, korquad: Dataset, retriever: str) -> None:
    run = retrieve(get_retriever(retriever, tokenizer="regex").index(korquad.corpus), korquad, 100)
    diffs = _trec_diffs(pytrec_eval, run, korquad.qrels)
    assert max(diffs.values()) <= 1e-12, diffs
    hit10 = evaluate(run, korquad.qrels, ["hit@10"])["hit@10"].mean()
    assert 0.3 < hit10 < 1.0  # a real run, neither empty nor perfect


# --- graded qrels: trec_eval and ranx --------------------------------------------------------

def _graded_case() -> tuple[dict[str, dict[str, int]], Run]:
    """Grades -1..3 with unjudged documents; integer scores, so ties are everywhere."""
    rng = np.random.default_rng(7)
    docs = [f"d{i:02d}" for i in range(40)]
    qrels: dict[str, dict[str, int]] = {}
    results: dict[str, dict[str, float]] = {}
    for q in range(25):
        judged = rng.choice(len(docs), 14, replace=False)
        qrels[f"q{q}"] = {docs[j]: int(rng.choice([-1, 0, 1, 2, 3])) for j in judged}
        ranked = rng.choice(len(docs), 18, replace=False)
        results[f"q{q}"] = {docs[j]: float(rng.integers(0, 6)) for j in ranked}
    qrels["q_nonrel"] = {"d00": -1, "d01": 0}  # judged, but nothing relevant
    results["q_nonrel"] = {"d00": 2.0, "d01": 1.0}
    qrels["q_absent"] = {"d05": 2}  # judged and relevant, but missing from the run
    return qrels, Run.from_dict(results)


def test_graded_trec_eval_parity(pytrec_eval: Any) -> None:
    qrels, run = _graded_case()
    assert any(v > 1 for g in qrels.values() for v in g.values()) and any(v < 0 for g in qrels.values() for v in g.values())
    pairs = {"ndcg_cut_5": "ndcg@5", "ndcg_cut_10": "ndcg@10", "P_5": "precision@5", "recall_10": "recall@10",
             "map_cut_10": "map@10", "success_1": "hit@1", "success_10": "hit@10", "recip_rank": "mrr@18"}
    diffs = _trec_diffs(pytrec_eval, run, qrels, pairs, {"ndcg_cut.5,10", "P.5", "recall.10", "map_cut.10", "success.1,10", "recip_rank"})
    assert max(diffs.values()) <= 1e-12, diffs
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"P.5"}).evaluate(run.to_dict())
    ours = evaluate(run, qrels, ["precision@5", "ndcg@10"])
    qids = _judged(qrels)
    # Policy differences: trec_eval reports a query with no relevant document (as 0), we leave it
    # out; trec_eval skips a judged query the run lacks, we score it 0 (trec_eval -c).
    assert "q_nonrel" in ref and "q_nonrel" not in qids
    assert "q_absent" not in ref and ours["ndcg@10"][qids.index("q_absent")] == 0.0


_RANX_CHILD = """
import json, sys
import ranx
qrels, run, metrics = json.load(sys.stdin)
out = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), metrics, return_mean=False, make_comparable=False)
print(json.dumps({"keys": list(ranx.Qrels(qrels).keys()), "scores": {m: [float(x) for x in v] for m, v in out.items()}}))
"""


def _ranx_in_child(qrels: dict, run: dict, metrics: list[str]) -> tuple[list[str], dict[str, list[float]]]:
    """ranx's per-query scores and query order, computed in a child process: ranx compiles its
    metrics with numba on first use, memory that would otherwise stay in the xdist worker for
    the rest of the session."""
    proc = subprocess.run([sys.executable, "-c", _RANX_CHILD], input=json.dumps([qrels, run, metrics]),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    return out["keys"], out["scores"]


def test_graded_ranx_parity() -> None:
    """ranx's definitions, checked in its source (0.3.x): ``ndcg`` is Järvelin's linear gain
    (= trec_eval ndcg_cut, ours); ``ndcg_burges`` uses 2**grade - 1 and differs on graded qrels;
    relevant = grade >= rel_lvl (1), so 0 and negative grades count nothing, also in the ideal
    DCG; ``map@k`` divides by all relevant documents like trec_eval's map_cut (not min(k, R));
    ``hit_rate@k`` is trec_eval's success_k; ``mrr@k`` is recip_rank cut at k; queries without
    relevant documents score 0 in ranx where we leave them out. Ties: ranx orders equal scores
    with numba's unstable argsort, not by doc id as trec_eval does, so on tied runs its values
    drift from trec_eval's. ranx is therefore given our trec_eval order as distinct scores."""
    pytest.importorskip("ranx")
    qrels, run = _graded_case()
    qrels = {q: g for q, g in qrels.items() if q != "q_absent"}  # ranx wants run and qrels to share queries
    by_rank = {q: {d: float(run.k - r) for r, d in enumerate(run.ranked(i))} for i, q in enumerate(run.query_ids)}
    np.testing.assert_array_equal(Run.from_dict(by_rank).indices, run.indices)
    pairs = {"ndcg@10": "ndcg@10", "map@10": "map@10", "mrr@10": "mrr@10", "precision@5": "precision@5",
             "recall@10": "recall@10", "hit_rate@10": "hit@10", "ndcg_burges@10": None}
    keys, ref = _ranx_in_child(qrels, by_rank, list(pairs))
    pos = {q: i for i, q in enumerate(keys)}
    qids = _judged(qrels)
    ours = evaluate(run, qrels, [m for m in pairs.values() if m])
    for theirs, mine in pairs.items():
        if mine:
            got = np.array([ref[theirs][pos[q]] for q in qids])
            np.testing.assert_allclose(ours[mine], got, rtol=0, atol=1e-12, err_msg=theirs)
    assert ref["ndcg@10"][pos["q_nonrel"]] == 0.0
    # ndcg_burges = the same ranking with exponential gains
    j = judge(run, qrels)
    disc = 1.0 / np.log2(np.arange(2, 12))
    gain = lambda g: (2.0 ** np.clip(g, 0, None) - 1.0)  # noqa: E731
    rel, ideal = j.rel[:, :10], np.pad(j.ideal, ((0, 0), (0, 10)))[:, :10]
    burges = (gain(rel) @ disc[: rel.shape[1]]) / (gain(ideal) @ disc)
    got = np.array([ref["ndcg_burges@10"][pos[q]] for q in qids])
    np.testing.assert_allclose(burges, got, atol=1e-12)
    assert np.abs(burges - ours["ndcg@10"]).max() > 1e-3  # the two gains really differ here


# --- hypothesis properties -------------------------------------------------------------------

ALL_METRICS = ["hit", "precision", "recall", "mrr", "ndcg", "map"]
KS = [1, 2, 3, 5, 10, 20]


@st.composite
def qrels_and_results(draw: st.DrawFn) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    n_docs = draw(st.integers(1, 12))
    docs = st.sampled_from([f"d{i}" for i in range(n_docs)])
    n_q = draw(st.integers(1, 4))
    qrels = {f"q{i}": draw(st.dictionaries(docs, st.integers(-1, 3), max_size=n_docs)) for i in range(n_q)}
    results = {f"q{i}": draw(st.dictionaries(docs, st.integers(0, 3).map(float), max_size=n_docs)) for i in range(n_q)}
    return qrels, results


@HYP
@given(qrels_and_results())
def test_metrics_bounded_and_monotone(case: tuple[dict, dict]) -> None:
    qrels, results = case
    run = Run.from_dict(results)
    names = [f"{m}@{k}" for m in ALL_METRICS for k in KS]
    out = evaluate(run, qrels, names)
    n = len(_judged(qrels))
    for name, v in out.items():
        assert v.shape == (n,) and np.all((v >= 0) & (v <= 1 + 1e-12)), name
    for m in ["hit", "recall", "mrr", "map"]:
        stack = np.vstack([out[f"{m}@{k}"] for k in KS])
        assert np.all(np.diff(stack, axis=0) >= -1e-12), m


@HYP
@given(qrels_and_results())
def test_metrics_match_trec_eval_with_ties(pytrec_eval: Any, case: tuple[dict, dict]) -> None:
    qrels, results = case
    run = Run.from_dict(results, k=12)
    if not _judged(qrels) or not any(results.values()):
        return
    pairs = {"ndcg_cut_3": "ndcg@3", "ndcg_cut_10": "ndcg@10", "P_5": "precision@5", "recall_5": "recall@5",
             "map_cut_10": "map@10", "success_1": "hit@1", "recip_rank": "mrr@12"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.3,10", "P.5", "recall.5", "map_cut.10", "success.1",
                                                 "recip_rank"}).evaluate(run.to_dict())
    ours = evaluate(run, qrels, list(pairs.values()))
    for i, q in enumerate(_judged(qrels)):
        if q in ref:
            for t, m in pairs.items():
                assert abs(ours[m][i] - ref[q][t]) <= 1e-12, (q, t)


@HYP
@given(qrels_and_results(), st.randoms(use_true_random=False))
def test_ties_deterministic_and_input_order_free(case: tuple[dict, dict], rnd) -> None:
    qrels, results = case
    names = [f"{m}@{k}" for m in ALL_METRICS for k in (1, 3, 10)]
    shuffled = {}
    for q, r in results.items():
        items = list(r.items())
        rnd.shuffle(items)
        shuffled[q] = dict(items)
    a = evaluate(Run.from_dict(results), qrels, names)
    b = evaluate(Run.from_dict(results), qrels, names)
    c = evaluate(Run.from_dict(shuffled), qrels, names)
    for name in names:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])


@HYP
@given(st.lists(st.integers(1, 3), min_size=1, max_size=8), st.integers(0, 6), st.integers(0, 4))
def test_perfect_ranking_scores_one(grades: list[int], n_nonrel: int, n_neg: int) -> None:
    rel = {f"r{i}": g for i, g in enumerate(grades)}
    qrels = {"q": {**rel, **{f"n{i}": 0 for i in range(n_nonrel)}, **{f"x{i}": -1 for i in range(n_neg)}}}
    results = {"q": {**{d: 10.0 + g for d, g in rel.items()}, **{f"n{i}": 1.0 for i in range(n_nonrel)},
                     **{f"x{i}": 0.5 for i in range(n_neg)}}}
    run = Run.from_dict(results)
    R = len(grades)
    out = evaluate(run, qrels, [*(f"ndcg@{k}" for k in KS), f"map@{R}", "map@20", "mrr@1", f"recall@{R}", "hit@1",
                                f"precision@{R}"])
    for name, v in out.items():
        assert v[0] == pytest.approx(1.0, abs=1e-12), name
    if R > 1:
        assert evaluate(run, qrels, ["map@1"])["map@1"][0] == pytest.approx(1 / R)  # AP@k divides by all R


def test_precision_and_ndcg_are_not_monotone() -> None:
    run = Run.from_dict({"q": {"a": 2.0, "x": 1.0}})
    out = evaluate(run, {"q": {"a": 1, "b": 1}}, ["precision@1", "precision@2", "ndcg@1", "ndcg@2"])
    assert out["precision@1"][0] == 1.0 and out["precision@2"][0] == 0.5
    assert out["ndcg@1"][0] == 1.0
    assert out["ndcg@2"][0] == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))


def test_query_policy_and_order() -> None:
    run = Run.from_dict({"qa": {"d1": 1.0}, "qb": {"d2": 1.0}, "qc": {"d9": 3.0}})
    qrels = {"qb": {"d2": 1}, "qz": {"d2": 1}, "qc": {"d9": 0, "d8": -1}, "qa": {"d0": 1}}
    out = evaluate(run, qrels, ["hit@1", "ndcg@5"])
    assert out["hit@1"].tolist() == [1.0, 0.0, 0.0]  # qb, qz (absent: 0), qa; qc has no relevant doc
    assert out["ndcg@5"].tolist() == [1.0, 0.0, 0.0]


def test_parse_metric() -> None:
    assert str(parse_metric("NDCG@10")) == "ndcg@10"
    assert parse_metric("p@5").name == "precision" and parse_metric("success@3").name == "hit"
    for bad, match in [("ndcg10", "bad metric 'ndcg10'"), ("bleu@4", "unknown metric 'bleu'"), ("ndcg@0", "k must be >= 1")]:
        with pytest.raises(OdqaBenchError, match=match):
            parse_metric(bad)


def test_empty_run_scores_zero() -> None:
    out = evaluate(Run.from_dict({"q": {}}), {"q": {"a": 1}}, [f"{m}@5" for m in ALL_METRICS])
    assert all(v.tolist() == [0.0] for v in out.values())


# --- answer hits -----------------------------------------------------------------------------

def test_answer_hits_and_answer_accuracy(tiny_dataset: Dataset) -> None:
    ds = tiny_dataset
    run = Run(ds.query_ids, ds.corpus.ids, np.array([[1, 0, -1], [3, 2, 0], [2, 1, 0]]),
              np.array([[3.0, 2.0, -np.inf], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]))
    hits = answer_hits(run, ds.corpus.texts, ds.answers)
    assert hits.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    acc = evaluate(run, ds.qrels, ["hit@1", "hit@2", "mrr@3"], hits=hits)
    assert acc["hit@1"].tolist() == [0.0, 1.0, 0.0]
    assert acc["hit@2"].tolist() == [1.0, 1.0, 0.0]
    assert acc["mrr@3"].tolist() == [0.5, 1.0, 0.0]


# --- EM / F1 ---------------------------------------------------------------------------------

def test_squad_normalisation() -> None:
    assert normalize_squad("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_squad("An apple, a day.") == "apple day"
    assert normalize_squad("theatre") == "theatre"  # articles only as whole words
    assert exact_match("an Apple", "apple.") == 1.0
    assert exact_match("apples", "apple") == 0.0


def test_squad_f1_hand_computed() -> None:
    assert f1("the big cat", "a big dog") == pytest.approx(0.5)
    assert f1("cat cat dog", "cat dog") == pytest.approx(0.8)  # p = 2/3, r = 1
    assert f1("Paris", "paris, France") == pytest.approx(2 / 3)  # p = 1, r = 1/2
    assert f1("", "anything") == 0.0 and f1("x", "") == 0.0
    assert f1("the", "a") == 0.0  # both normalise to nothing


def test_korquad_normalisation_and_char_f1() -> None:
    assert normalize_korquad("《훈민정음》") == "훈민정음"
    assert normalize_korquad("'한글'  창제.") == "한글 창제"
    assert exact_match("《훈민정음》", "훈민정음", "ko") == 1.0
    assert exact_match("KBS", "kbs", "ko") == 1.0
    # Spaces survive normalisation, so EM differs; character F1 ignores them.
    assert exact_match("세종대왕", "세종 대왕", "ko") == 0.0
    assert f1("세종대왕", "세종 대왕", "ko") == 1.0
    # 1443년 vs 1443년에: 5 common characters, p = 5/5, r = 5/6 -> 10/11
    assert f1("1443년", "1443년에", "ko") == pytest.approx(10 / 11)
    # 조선 vs 조선 왕조: 2 common characters, p = 1, r = 2/4 -> 2/3
    assert f1("조선", "조선 왕조", "ko") == pytest.approx(2 / 3)
    # English articles are not dropped for Korean
    assert exact_match("the book", "book", "ko") == 0.0 and exact_match("the book", "book") == 1.0


def test_best_over_golds_takes_each_maximum() -> None:
    assert best_over_golds("cat", ["dog", "the cat", "cat food"]) == (1.0, 1.0)
    em, score = best_over_golds("cat food", ["cat", "food dog"])
    assert em == 0.0 and score == pytest.approx(2 / 3)
    em, score = best_over_golds("세종", ["세종대왕", "태종"], "ko")
    assert em == 0.0 and score == pytest.approx(2 / 3)  # 세종 vs 세종대왕: p = 1, r = 1/2
    assert best_over_golds("anything", []) == (0.0, 0.0)


def test_rag_precision_at_k() -> None:
    preds = [["A", "A", "B", "C"], ["A"], ["X", "Y", "Z"]]
    golds = [["A", "C"], ["A"], ["A"]]
    assert rag_precision_at_k(preds, golds, 3).tolist() == pytest.approx([1 / 3, 1 / 3, 0.0])
    assert rag_precision_at_k(preds, golds, 4).tolist() == pytest.approx([2 / 4, 1 / 4, 0.0])
    assert rag_precision_at_k(preds, golds, 1).tolist() == [1.0, 1.0, 0.0]

