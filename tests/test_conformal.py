"""Split-conformal top-k and answer sets: quantile index by hand, coverage on exchangeable
synthetic scores (hypothesis), monotonicity in alpha, the whole-corpus fallback, design effects,
the run/qrels plumbing, reader span candidates, and the fold table."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from odqa_core.baseline.store import Record
from odqa_core.conformal import (
    calibrate_k,
    calibrate_threshold,
    coverage,
    coverage_slack,
    covered,
    design_effect,
    evaluate_conformal,
    gold_ranks,
    gold_scores,
    quantile_index,
    set_sizes,
)
from odqa_core.conformal.answers import (
    AnswerCalibration,
    answer_coverage,
    answer_outcomes,
    answer_sets,
    calibrate_answers,
    gold_answer_scores,
    reader_candidates,
)
from odqa_core.errors import OdqaBenchError
from odqa_core.metrics.qa import best_over_golds
from odqa_core.reader.extractive import Windows
from odqa_core.report.conformal_table import FoldRow, fold_frame, rows_from_records, summary_frame, write_tables
from odqa_core.retrieval.run import Run

FAST = settings(max_examples=25, deadline=None)


# --- quantile index and calibration by hand ---------------------------------------------------

@pytest.mark.parametrize(
    "n, alpha, m",
    [(9, 0.1, 9), (19, 0.05, 19), (4, 0.1, 5), (10, 0.2, 9), (5, 0.5, 3), (99, 0.1, 90), (1, 0.5, 1), (0, 0.3, 1)],
)
def test_quantile_index_by_hand(n: int, alpha: float, m: int) -> None:
    assert quantile_index(n, alpha) == m


def test_calibrate_k_by_hand() -> None:
    ranks = np.array([5, 1, 3, 2, 8, 7, 4, 10, 6, 9], dtype=float)
    assert calibrate_k(ranks, 0.2) == 9  # ceil(11 * 0.8) = 9th smallest
    assert calibrate_k(ranks, 0.5) == 6  # ceil(5.5) = 6th smallest
    assert calibrate_k(ranks, 0.05) is None  # ceil(10.45) = 11 > 10
    assert calibrate_k(np.array([10, 20, 30, 40, 50.0]), 0.5) == 30
    assert calibrate_k(np.arange(1, 20, dtype=float), 0.05) == 19  # 20 * 0.95 is exactly 19


def test_calibrate_k_unretrieved_gold_gives_none() -> None:
    ranks = np.array([1, 2, np.inf, np.inf, 3, 1, 1, 2, 1, np.inf])
    assert calibrate_k(ranks, 0.2) is None  # 9th smallest is inf: the run is too shallow
    assert calibrate_k(ranks, 0.5) == 2  # 6th smallest


def test_calibrate_threshold_by_hand() -> None:
    s = np.array([0.3, 0.1, 0.5, 0.2, 0.4])
    assert calibrate_threshold(s, 0.5) == 0.3  # 3rd largest
    assert calibrate_threshold(s, 0.34) == 0.2  # ceil(6 * 0.66) = 4th largest
    assert calibrate_threshold(s, 0.1) == -math.inf  # ceil(5.4) = 6 > 5


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_bad_alpha_is_a_user_error(alpha: float) -> None:
    with pytest.raises(OdqaBenchError, match="alpha"):
        calibrate_k(np.array([1.0, 2.0]), alpha)


def test_coverage_and_set_sizes() -> None:
    assert coverage(np.array([1, 2, 3, np.inf]), 2) == 0.5
    assert coverage(np.array([1, 2, 3, np.inf]), None) == 0.75
    sc = np.array([[3.0, 2.0, 1.0], [5.0, -np.inf, -np.inf]])
    assert set_sizes(sc, k=2).tolist() == [2, 1]
    assert set_sizes(sc, threshold=2.0).tolist() == [2, 1]
    assert set_sizes(sc).tolist() == [3, 1]
    with pytest.raises(OdqaBenchError):
        coverage(np.array([]), 3)


# --- properties on exchangeable synthetic scores ---------------------------------------------

def _mean_rank_coverage(rng: np.random.Generator, n: int, alpha: float, reps: int, n_test: int) -> float:
    covs = []
    for _ in range(reps):
        ranks = rng.geometric(0.15, size=n + n_test).astype(float)  # iid, heavily tied
        k = calibrate_k(ranks[:n], alpha)
        covs.append(coverage(ranks[n:], k))
    return float(np.mean(covs))


@FAST
@given(n=st.integers(10, 150), alpha=st.floats(0.03, 0.4), seed=st.integers(0, 2**31 - 1))
def test_rank_coverage_holds_in_expectation(n: int, alpha: float, seed: int) -> None:
    assume(quantile_index(n, alpha) <= n)
    reps, n_test = 300, 100
    cov = _mean_rank_coverage(np.random.default_rng(seed), n, alpha, reps, n_test)
    sd = math.sqrt(alpha * (1 - alpha) * (1 / (n + 2) + 1 / n_test) / reps)
    assert cov >= 1 - alpha - 4 * sd


@FAST
@given(n=st.integers(10, 150), alpha=st.floats(0.03, 0.4), seed=st.integers(0, 2**31 - 1))
def test_threshold_coverage_is_tight_for_continuous_scores(n: int, alpha: float, seed: int) -> None:
    assume(quantile_index(n, alpha) <= n)
    rng = np.random.default_rng(seed)
    reps, n_test = 300, 100
    covs = []
    for _ in range(reps):
        s = rng.normal(size=n + n_test)
        t = calibrate_threshold(s[:n], alpha)
        covs.append(np.mean(s[n:] >= t))
    sd = math.sqrt(alpha * (1 - alpha) * (1 / (n + 2) + 1 / n_test) / reps)
    cov = float(np.mean(covs))
    assert 1 - alpha - 4 * sd <= cov <= 1 - alpha + 1 / (n + 1) + 4 * sd


def test_naive_quantile_would_undercover() -> None:
    """The (n + 1) correction matters: the plain empirical quantile misses 1 - alpha at small n,
    and the coverage check above is sharp enough to see it."""
    rng = np.random.default_rng(0)
    n, alpha, reps, n_test = 10, 0.1, 400, 200
    naive = []
    for _ in range(reps):
        s = rng.normal(size=n + n_test)
        t = np.sort(s[:n])[n - math.ceil(n * (1 - alpha))]
        naive.append(np.mean(s[n:] >= t))
    sd = math.sqrt(alpha * (1 - alpha) * (1 / (n + 2) + 1 / n_test) / reps)
    assert float(np.mean(naive)) < 1 - alpha - 4 * sd
    assert _mean_rank_coverage(rng, n, alpha, reps, n_test) >= 1 - alpha - 4 * sd


_ranks = st.lists(st.one_of(st.integers(1, 50).map(float), st.just(math.inf)), min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(ranks=_ranks, alphas=st.lists(st.floats(0.001, 0.999), min_size=2, max_size=8))
def test_k_is_monotone_in_alpha_and_within_range(ranks: list[float], alphas: list[float]) -> None:
    r = np.array(ranks)
    ks = [calibrate_k(r, a) for a in sorted(alphas)]
    as_num = [math.inf if k is None else k for k in ks]
    assert all(a >= b for a, b in zip(as_num, as_num[1:]))
    finite = r[np.isfinite(r)]
    for k in ks:
        if k is not None:
            assert 1 <= k <= finite.max()
            assert k in finite


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.floats(-10, 10), min_size=1, max_size=60), alpha=st.floats(0.001, 0.999))
def test_threshold_is_a_calibration_score_or_minus_inf(scores: list[float], alpha: float) -> None:
    t = calibrate_threshold(np.array(scores), alpha)
    assert t == -math.inf or t in scores
    m = quantile_index(len(scores), alpha)
    if m <= len(scores):
        assert sum(s >= t for s in scores) >= m


# --- run and qrels plumbing --------------------------------------------------------------------

def _run() -> tuple[Run, dict[str, dict[str, int]]]:
    doc_ids = np.array(["d0", "d1", "d2", "d3", "d4"], dtype=object)
    idx = np.array([[2, 0, 1], [4, 3, -1], [1, 2, 3], [0, 1, 2]])
    sc = np.array([[3.0, 2.0, 1.0], [5.0, 4.0, -np.inf], [9.0, 8.0, 7.0], [1.0, 0.5, 0.2]])
    qrels = {"a": {"d0": 1, "d1": 2}, "b": {"d1": 1}, "c": {"d3": 1, "d0": 0}, "d": {"d0": 1}}
    return Run(["a", "b", "c", "d"], doc_ids, idx, sc, "toy"), qrels


def test_gold_ranks_and_scores() -> None:
    run, qrels = _run()
    assert gold_ranks(run, qrels).tolist() == [2.0, math.inf, 3.0, 1.0]
    assert gold_ranks(run, qrels, ["d", "a"]).tolist() == [1.0, 2.0]
    assert gold_scores(run, qrels).tolist() == [2.0, -math.inf, 7.0, 1.0]


def test_gold_ranks_user_errors() -> None:
    run, qrels = _run()
    with pytest.raises(OdqaBenchError, match="'zz'"):
        gold_ranks(run, qrels, ["zz"])
    with pytest.raises(OdqaBenchError, match="no relevant document"):
        gold_ranks(run, {"a": {"d0": 0}}, ["a"])


def test_evaluate_conformal_matches_direct_computation() -> None:
    run, qrels = _run()
    res = evaluate_conformal(run, qrels, ["a", "c", "d"], ["b"], [0.5, 0.3])
    assert [r.k for r in res] == [2, 3]  # ceil(4 * 0.5) = 2nd of [1, 2, 3]; ceil(2.8) = 3rd
    assert [r.coverage for r in res] == [0.0, 0.0]
    assert [r.mean_set_size for r in res] == [2.0, 2.0]  # b's row holds only two passages
    assert (res[0].n_cal, res[0].n_test) == (3, 1)
    res = evaluate_conformal(run, qrels, ["b", "c", "d"], ["a"], [0.5], method="score")
    assert res[0].threshold == 1.0 and res[0].coverage == 1.0 and res[0].mean_set_size == 3.0
    with pytest.raises(OdqaBenchError, match="both"):
        evaluate_conformal(run, qrels, ["a"], ["a"], [0.1])


# --- answer sets -------------------------------------------------------------------------------

def test_answer_sets_by_hand() -> None:
    run, qrels = _run()
    cands = [
        [[("x", 0.9)], [("Paris", 0.8), ("paris.", 0.1)], [("y", 0.95)]],  # a: gold d0 at rank 2
        [[("u", 0.5)], [("v", 0.4)], []],  # b: gold not retrieved
        [[("p", 0.2)], [("q", 0.3)], [("Seoul", 0.7)]],  # c: gold d3 at rank 3
        [[("the Rome", 0.6)], [("z", 0.99)], [("w", 0.1)]],  # d: gold d0 at rank 1
    ]
    answers = {"a": ["Paris"], "b": ["nope"], "c": ["seoul"], "d": ["Rome"]}
    assert gold_answer_scores(run, qrels, cands, answers, ["a", "c", "d"]).tolist() == [0.8, 0.7, 0.6]
    assert gold_answer_scores(run, qrels, cands, answers, ["a", "c"], k=2).tolist() == [0.8, -math.inf]
    cal = calibrate_answers(run, qrels, cands, answers, ["a", "c", "d"], alpha=0.9, alpha_ret=0.5)
    assert (cal.k, cal.n_read_cal) == (2, 2)  # golds of a and d within the top 2
    assert cal.threshold == 0.6  # alpha_read 0.4: ceil(3 * 0.6) = 2nd largest of [0.8, 0.6]
    sets = answer_sets(run, cands, cal.k, cal.threshold, ["a", "d"])
    assert sets == [["x", "Paris"], ["z", "the Rome"]]
    res = answer_coverage(run, cands, answers, cal, ["a", "b", "d"])
    assert res.coverage == pytest.approx(2 / 3) and res.mean_set_size == pytest.approx(4 / 3)
    with pytest.raises(OdqaBenchError, match="alpha_ret"):
        calibrate_answers(run, qrels, cands, answers, ["a"], alpha=0.1, alpha_ret=0.2)
    with pytest.raises(OdqaBenchError, match="candidates"):
        answer_sets(run, cands[:2], 2, 0.0, ["a"])


def _synthetic_qa(rng: np.random.Generator, n: int, depth: int) -> tuple[Run, dict, list, dict]:
    """Exchangeable questions: gold rank geometric, one reader answer per passage; the gold
    passage's answer is right 97% of the time and scores higher on average."""
    qids = [f"q{i}" for i in range(n)]
    doc_ids = np.array([f"p{j}" for j in range(n * depth)], dtype=object)
    idx = np.arange(n * depth).reshape(n, depth)
    sc = -np.sort(rng.random((n, depth)), axis=1) + 1.0
    gold_rank = rng.geometric(0.35, size=n) - 1
    qrels, answers, cands = {}, {}, []
    for i, q in enumerate(qids):
        answers[q] = [f"ans{i}"]
        g = gold_rank[i]
        qrels[q] = {doc_ids[idx[i, g]]: 1} if g < depth else {f"missing{i}": 1}
        row = []
        for r in range(depth):
            if r == g and rng.random() < 0.97:
                row.append([(f"ans{i}", float(rng.normal(1.0, 1.0)))])
            else:
                row.append([(f"wrong{i}-{r}", float(rng.normal(0.0, 1.0)))])
        cands.append(row)
    return Run(qids, doc_ids, idx, sc, "synthetic"), qrels, cands, answers


def test_answer_coverage_holds_over_random_splits() -> None:
    rng = np.random.default_rng(7)
    n, depth, alpha, alpha_ret, reps = 300, 8, 0.2, 0.1, 30
    run, qrels, cands, answers = _synthetic_qa(rng, n, depth)
    covs, sizes = [], []
    for _ in range(reps):
        perm = rng.permutation(run.query_ids)
        cal_q, test_q = list(perm[:150]), list(perm[150:])
        cal = calibrate_answers(run, qrels, cands, answers, cal_q, alpha, alpha_ret)
        res = answer_coverage(run, cands, answers, cal, test_q)
        covs.append(res.coverage)
        sizes.append(res.mean_set_size)
    # splits share one pool of n questions: the pool's own draw dominates the error
    assert np.mean(covs) >= 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / n)
    assert np.mean(sizes) < depth  # the reader threshold prunes: not every passage's answer is kept


# --- the whole-corpus fallback -----------------------------------------------------------------

def test_infinite_quantile_falls_back_to_the_whole_corpus() -> None:
    ranks = np.array([1, 2, np.inf, np.inf, 3, 1, 1, 2, 1, np.inf])
    assert calibrate_k(ranks, 0.2, n_docs=500) == 500  # 9th smallest is inf
    assert calibrate_k(ranks, 0.5, n_docs=500) == 2  # finite quantiles are unchanged
    assert calibrate_k(np.array([1.0, 2.0]), 0.1, n_docs=7) == 7  # too few calibration questions
    test = np.array([1, 4, np.inf])
    assert covered(test, 500, n_docs=500).tolist() == [1.0, 1.0, 1.0]  # the corpus holds every gold
    assert covered(test, 2, n_docs=500).tolist() == [1.0, 0.0, 0.0]
    assert coverage(test, None) == pytest.approx(2 / 3)  # no n_docs: the run's own depth
    sc = np.array([[3.0, 2.0, -np.inf], [5.0, 4.0, 1.0]])
    assert set_sizes(sc, k=500, n_docs=500).tolist() == [500, 500]
    assert set_sizes(sc, k=2, n_docs=500).tolist() == [2, 2]
    with pytest.raises(OdqaBenchError, match="n_docs"):
        calibrate_k(ranks, 0.2, n_docs=0)


def test_evaluate_conformal_with_n_docs_certifies_the_corpus() -> None:
    run, qrels = _run()
    res = evaluate_conformal(run, qrels, ["a", "b", "c"], ["d"], [0.3], n_docs=5)
    assert res[0].k == 5 and res[0].coverage == 1.0 and res[0].mean_set_size == 5.0  # b's gold is unretrieved


def test_gold_ranks_match_a_plain_loop_on_a_random_deep_run() -> None:
    rng = np.random.default_rng(3)
    n_docs, n_q, depth = 60, 40, 25
    doc_ids = np.array([f"d{j}" for j in range(n_docs)], dtype=object)
    idx = np.stack([rng.permutation(n_docs)[:depth] for _ in range(n_q)])
    idx[rng.random(idx.shape) < 0.1] = -1  # padding holes
    sc = -np.sort(-rng.random((n_q, depth)), axis=1)
    qids = [f"q{i}" for i in range(n_q)]
    qrels = {q: {f"d{j}": int(rng.integers(0, 3)) for j in rng.choice(n_docs, 3, replace=False)} | {"x": 1}
             for q in qids}
    run = Run(qids, doc_ids, idx, sc, "deep")
    want = []
    for i, q in enumerate(qids):
        gold = {d for d, g in qrels[q].items() if g > 0}
        hits = [r + 1 for r, j in enumerate(idx[i]) if j >= 0 and doc_ids[j] in gold]
        want.append(float(hits[0]) if hits else math.inf)
    assert gold_ranks(run, qrels).tolist() == want
    assert gold_ranks(run, qrels, qids[::-1]).tolist() == want[::-1]


# --- design effect and slack -------------------------------------------------------------------

def test_design_effect_is_one_for_singletons_and_group_size_for_copies() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    assert design_effect(y, [str(i) for i in range(400)]) == pytest.approx(1.0)
    copies = np.repeat(y[:100], 4)  # every group of 4 identical questions
    assert design_effect(copies, [str(i // 4) for i in range(400)]) == pytest.approx(4.0)
    assert design_effect(np.ones(5), list("abcde")) == 1.0  # no variance: nothing to inflate
    with pytest.raises(OdqaBenchError, match="group labels"):
        design_effect(y, ["a"])


def test_coverage_slack_grows_with_the_design_effect() -> None:
    base = coverage_slack(0.1, 100, 400)
    assert base == pytest.approx(3 * math.sqrt(0.09 * (1 / 102 + 1 / 400)))
    assert coverage_slack(0.1, 100, 400, deff_cal=4.0, deff_test=4.0) == pytest.approx(2 * base)
    with pytest.raises(OdqaBenchError, match="design effect"):
        coverage_slack(0.1, 100, 400, deff_test=0.5)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="aAb .,'\"《》가나", max_size=8),
       golds=st.lists(st.text(alphabet="aAb .,'\"《》가나", max_size=8), max_size=3), lang=st.sampled_from(["en", "ko"]))
def test_answer_hits_agree_with_best_over_golds(text: str, golds: list[str], lang: str) -> None:
    run = Run(["q"], np.array(["d0"], dtype=object), np.array([[0]]), np.array([[1.0]]), "one")
    rule = AnswerCalibration(0.1, 0.1, 1, -math.inf, 1, 1)
    hits, sizes = answer_outcomes(run, [[[(text, 0.0)]]], {"q": golds}, rule, ["q"], lang)
    assert hits[0] == best_over_golds(text, golds, lang)[0] and sizes[0] == 1


def test_answer_outcomes_are_the_per_query_form_of_answer_coverage() -> None:
    rng = np.random.default_rng(11)
    run, qrels, cands, answers = _synthetic_qa(rng, 80, 6)
    cal = calibrate_answers(run, qrels, cands, answers, run.query_ids[:40], 0.3, 0.15)
    hits, sizes = answer_outcomes(run, cands, answers, cal, run.query_ids[40:])
    res = answer_coverage(run, cands, answers, cal, run.query_ids[40:])
    assert res.coverage == hits.mean() and res.mean_set_size == sizes.mean() and len(hits) == 40
    assert set(np.unique(hits)) <= {0.0, 1.0}


# --- reader span candidates --------------------------------------------------------------------

class _FakeReader:
    """Two windows over one passage, logits chosen by hand: stands in for the extractive reader
    (same ``windows``/``logits``/``max_answer_length`` surface) without torch."""

    max_answer_length = 2

    def windows(self, questions: list[str], contexts: list[str]) -> Windows:
        # context "ab cd ef": tokens [CLS] q [SEP] ab cd [SEP] / [CLS] q [SEP] cd ef [SEP]
        off1 = [None, None, None, (0, 2), (2, 5), None]
        off2 = [None, None, None, (3, 5), (5, 8), None]
        return Windows([[0] * 6, [0] * 6], None, [off1, off2], [0, 0], [0, 0])

    def logits(self, win: Windows) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array([0, 0, 0, 1.0, 2.0, 0]), np.array([0, 0, 0, 0.5, 0.25, 0])),
                (np.array([0, 0, 0, 3.0, 0.0, 0]), np.array([0, 0, 0, 0.0, 1.0, 0]))]


def test_reader_candidates_enumerate_every_short_span_once() -> None:
    out = reader_candidates(_FakeReader(), ["q"], [["ab cd ef"]])
    got = dict(out[0][0])
    # window 1: ab (1.5), ab cd (1.25), cd (2.25); window 2: cd (3.0), cd ef (4.0), ef (1.0)
    assert got == {"ab": 1.5, "ab cd": 1.25, "cd": 3.0, "cd ef": 4.0, "ef": 1.0}
    assert [t for t, _ in out[0][0]] == ["cd ef", "cd", "ab", "ab cd", "ef"]  # best first
    with pytest.raises(OdqaBenchError, match="passage lists"):
        reader_candidates(_FakeReader(), ["q", "r"], [["x"]])


class _KoreanReader(_FakeReader):
    """One window over "GS칼텍스는 수입했다": tokens "GS칼텍스는" and "수입했다"."""

    def windows(self, questions: list[str], contexts: list[str]) -> Windows:
        return Windows([[0] * 6], None, [[None, None, None, (0, 6), (7, 11), None]], [0], [0])

    def logits(self, win: Windows) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array([0, 0, 0, 2.0, 1.0, 0]), np.array([0, 0, 0, 1.0, 0.5, 0]))]


def test_korean_candidates_also_drop_a_trailing_particle_at_the_spans_score() -> None:
    ko = dict(reader_candidates(_KoreanReader(), ["q"], [["GS칼텍스는 수입했다"]], lang="ko")[0][0])
    en = dict(reader_candidates(_KoreanReader(), ["q"], [["GS칼텍스는 수입했다"]])[0][0])
    assert "GS칼텍스" not in en and en["GS칼텍스는"] == 3.0
    assert ko["GS칼텍스"] == ko["GS칼텍스는"] == 3.0  # the bare noun: KorQuAD's answer, exactly matchable
    assert set(ko) - set(en) == {"GS칼텍스"}  # "수입했다" and the two-token span end in no particle


@given(st.text(alphabet="가나다라는을를에서의도", min_size=1, max_size=8))
def test_particle_variants_keep_the_text_and_only_shorten_it(text: str) -> None:
    from odqa_core.conformal.answers import without_particles

    out = without_particles(text)
    assert text in out and all(v and text.startswith(v) and len(v) <= len(text) for v in out)


# --- the fold table ----------------------------------------------------------------------------

def _rows() -> list[FoldRow]:
    return [FoldRow("rank", "bm25", "ds", 0.1, 1, 0.92, 4.0, 4, 10, 40, 0.05),
            FoldRow("rank", "bm25", "ds", 0.1, 2, 0.86, 6.0, 6, 10, 40, 0.05),
            FoldRow("rank", "bm25", "ds", 0.1, 3, 0.95, 5.0, 5, 10, 40, 0.05),
            FoldRow("rank", "tfidf", "ds", 0.1, 1, 0.90, 100.0, 100, 10, 40, 0.05, True)]


def test_retrieval_level_conformal_never_imports_the_reader() -> None:
    """Only the answer-set module may reach the reader; top-k calibration stands on runs alone."""
    import ast
    import inspect

    import odqa_core.conformal as package
    import odqa_core.conformal.retrieval as retrieval_level

    for module in (package, retrieval_level):
        tree = ast.parse(inspect.getsource(module))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert imported and not [m for m in imported if "reader" in m or "answers" in m], (module.__name__, imported)


def test_summary_frame_by_hand() -> None:
    s = summary_frame(_rows()).set_index("retriever")
    assert s.loc["bm25", "coverage_mean"] == pytest.approx(0.91)
    assert s.loc["bm25", "coverage_std"] == pytest.approx(np.std([0.92, 0.86, 0.95], ddof=1))
    assert s.loc["bm25", "coverage_min"] == 0.86 and s.loc["bm25", "min_cal"] == 2
    assert s.loc["bm25", "shortfall"] == pytest.approx(0.04)
    assert s.loc["bm25", "set_size_mean"] == pytest.approx(5.0) and s.loc["bm25", "folds"] == 3
    assert s.loc["tfidf", "trivial_folds"] == 1 and s.loc["tfidf", "coverage_std"] == 0.0
    assert fold_frame(_rows())["gap"].round(4).tolist() == [0.02, -0.04, 0.05, 0.0]


def test_rows_from_records_and_write_tables(tmp_path) -> None:
    def rec(cell: str, metric: str, value: float, **extra) -> Record:
        return Record("conformal", cell, metric, value, per_query=[value] * 3, extra=extra)

    cell = "test_conformal[bm25-kiwi/korquad-dev/alpha=0.1/cal=3]"
    records = [rec(cell, "coverage", 0.9, n_cal=7, slack=0.1), rec(cell, "set_size", 2.0), rec(cell, "k_hat", 2.0),
               rec(cell, "score_coverage", 0.8, n_cal=7), rec(cell, "score_set_size", 3.5),
               # cells are keyed by node id: the test file's path, then the test name
               rec("benchmarks/test_conformal.py::test_answer_conformal[bm25-kiwi/default/alpha=0.2/cal=1]",
                   "coverage", 0.85),
               rec("benchmarks/test_conformal.py::test_answer_conformal[bm25-kiwi/default/alpha=0.2/cal=1]",
                   "set_size", 900.0),
               rec("test_grid[bm25-kiwi/default/fold=1/k=5]", "hit@5", 0.5)]
    rows = rows_from_records(records)
    assert [(r.method, r.retriever, r.dataset, r.alpha, r.cal) for r in rows] == [
        ("answer", "bm25-kiwi", "default", 0.2, 1), ("rank", "bm25-kiwi", "korquad-dev", 0.1, 3),
        ("score", "bm25-kiwi", "korquad-dev", 0.1, 3)]
    assert (rows[1].coverage, rows[1].set_size, rows[1].param, rows[1].n_cal, rows[1].slack) == (0.9, 2.0, 2.0, 7, 0.1)
    paths = write_tables(rows, tmp_path, "t")
    assert [p.name for p in paths] == ["t.csv", "t_folds.csv", "t.md"]
    assert "| bm25-kiwi | 0.1 | 0.90 | 0.9000 ± 0.0000 | 0.9000 (3) |" in paths[2].read_text()
    with pytest.raises(OdqaBenchError, match="no rows"):
        write_tables([], tmp_path)
    with pytest.raises(OdqaBenchError, match="method"):
        FoldRow("top", "bm25", "ds", 0.1, 1, 0.9, 1.0)
