"""Conformal top-k per calibration fold: the grouped folds of DPR (articles, seed 0) take turns
as the calibration fold; k is calibrated there and coverage (gold passage in the top k) and set
size are measured on the other four. Ids read like ``bm25-kiwi/korquad-open/alpha=0.1/cal=3``.

The guarantee is coverage >= 1 - alpha in expectation; one calibration fold and one test pool
scatter around it, so each cell asserts coverage >= 1 - alpha - slack with slack three standard
errors (calibration Beta spread plus the test binomial, :func:`odqa_core.conformal.coverage_slack`)
inflated by the design effect of the cell's coverage over the dataset's articles: folds split
articles, and questions of one article are covered or missed together. When no finite k certifies 1 - alpha (too many golds share no term with their
question) the certified set is the whole corpus, recorded as such (k = corpus size).

Quick profile: ``default`` (alpha 0.2 only), korquad-dev (Kiwi tokens, whole corpus ranked),
korquad-open (regex tokens, depth 1000) and SciFact (Lucene-English tokens, whole corpus ranked),
bm25 and tfidf; the score-threshold variant (``score_*`` metrics) on korquad-dev and SciFact,
whose runs hold every passage a threshold can keep. Answer sets (TRAQ: ``alpha_ret + alpha_read``) run end to
end with the readers of ``benchmarks/test_reader.py`` on their held-out questions: the quick
reader on ``default``; in the full profile the five korquad-dev fold readers, each on a seeded
100-question sample of its fold (alpha 0.1 and 0.2). Full profile (marker ``full``): also
korquad-open with Kiwi tokens (minutes to tokenise cold).
``test_conformal_table`` checks the aggregated table and, with ``--odqa-report DIR``, writes
``DIR/conformal{,_folds}.csv`` and ``DIR/conformal.md``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pytest

from odqa_core.bench import RUN_DEPTH, cached_dataset, cached_run, dataset_run
from odqa_core.conformal import (
    calibrate_k,
    calibrate_threshold,
    coverage_slack,
    covered,
    design_effect,
    gold_ranks,
    gold_scores,
    quantile_index,
    set_sizes,
)
from odqa_core.conformal.answers import (
    AnswerCalibration,
    answer_outcomes,
    answer_sets,
    calibrate_answers,
    reader_candidates,
)
from odqa_core.data import Dataset
from odqa_core.data.folds import Fold, get_fold, kfold_by_group, sample_held_out
from odqa_core.report.conformal_table import FoldRow, summary_frame, tables_markdown, write_tables
from odqa_core.retrieval import Run

ALPHAS = (0.05, 0.1, 0.2)
RETRIEVERS = ("bm25", "tfidf")
N_FOLDS, SEED = 5, 0


@dataclass(frozen=True)
class Setup:
    """One dataset as the suite runs it: tokenizer, run depth (None: the whole corpus ranked),
    alphas, whether the score-threshold variant runs too, and whether it is full-profile only."""

    dataset: str
    tokenizer: str
    alphas: tuple[float, ...]
    depth: int | None = RUN_DEPTH
    score_variant: bool = False
    full: bool = False

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        marks = [pytest.mark.realdata] if self.dataset != "default" else []
        return marks + ([pytest.mark.full] if self.full else [])


SETUPS = (
    # the embedded sample's 16 calibration questions can only certify alpha >= 1/17
    Setup("default", "regex", (0.2,)),
    # 964 passages: the whole corpus is ranked, so threshold sets are counted exactly
    Setup("korquad-dev", "kiwi", ALPHAS, depth=None, score_variant=True),
    # 5 % of KorQuAD questions share no regex token with their gold passage: depth 1000 keeps
    # every finite quantile inside the run, and alpha 0.05 falls to the whole corpus on some folds
    Setup("korquad-open", "regex", ALPHAS, depth=1000),
    Setup("scifact", "regex-stem", ALPHAS, depth=None, score_variant=True),
    Setup("korquad-open", "kiwi", ALPHAS, depth=1000, full=True),
)


def _cell_id(retriever: str, setup: Setup, alpha: float, cal: int) -> str:
    return f"{retriever}-{setup.tokenizer}/{setup.dataset}/alpha={alpha}/cal={cal}"


CELLS = [
    pytest.param(r, s, a, cal, id=_cell_id(r, s, a, cal), marks=s.marks)
    for s in SETUPS for r in RETRIEVERS for a in s.alphas for cal in range(1, N_FOLDS + 1)
]


@cache
def _folds(dataset: str) -> list[Fold]:
    return kfold_by_group(cached_dataset(dataset), N_FOLDS, SEED)


@cache
def _query_groups(dataset: str) -> dict[str, str]:
    """Query -> the article of its first gold passage (its own passage id where the corpus has
    no articles): the unit the folds are drawn in, for the design effect."""
    ds = cached_dataset(dataset)
    c = ds.corpus
    doc_group = dict(zip(c.ids, c.groups)) if len(c.groups) == len(c.ids) else {d: d for d in c.ids}
    out = {}
    for q in ds.query_ids:
        golds = sorted(d for d, g in ds.qrels.get(q, {}).items() if g > 0)
        out[q] = str(doc_group.get(golds[0], golds[0])) if golds else f"query:{q}"
    return out


def _split(dataset: str, cal: int) -> tuple[list[str], list[str]]:
    folds = _folds(dataset)
    return folds[cal - 1].test_query_ids, [q for f in folds if f.index != cal for q in f.test_query_ids]


@dataclass(frozen=True)
class Gold:
    """A run with every query's gold rank and gold score, computed once per process."""

    run: Run
    ranks: np.ndarray
    scores: np.ndarray
    row: dict[str, int]

    def rows(self, qids: list[str]) -> list[int]:
        return [self.row[q] for q in qids]


@lru_cache(maxsize=1)  # one (retriever, setup)'s cells run together: hold one deep run at a time
def _gold(retriever: str, setup: Setup) -> Gold:
    ds = cached_dataset(setup.dataset)
    run = dataset_run(retriever, setup.tokenizer, setup.dataset, setup.depth or len(ds.corpus))
    return Gold(run, gold_ranks(run, ds.qrels), gold_scores(run, ds.qrels), {q: i for i, q in enumerate(run.query_ids)})


@dataclass(frozen=True)
class CellResult:
    """One calibration fold: the calibrated parameter (k, or a score threshold), per test query
    coverage and set size, the slack of the coverage check, and calibration-side facts."""

    param: float
    trivial: bool
    cal_q: list[str]
    test_q: list[str]
    covered: np.ndarray
    sizes: np.ndarray
    slack: float
    cal_covered: np.ndarray
    cal_short: float   # rank variant: fraction of calibration golds within k - 1
    truncated: float   # score variant: fraction of test rows whose run may end inside the set


def _slack(dataset: str, alpha: float, n_cal: int, n_test: int, indicator: np.ndarray, qids: list[str]) -> float:
    """Three standard errors, both terms inflated by the design effect of the cell's coverage
    indicator over every question of the dataset (``qids``), grouped by article: one estimate from
    all articles is steadier than one from a fold's few dozen."""
    groups = _query_groups(dataset)
    deff = design_effect(indicator, [groups[q] for q in qids])
    return coverage_slack(alpha, n_cal, n_test, deff_cal=deff, deff_test=deff)


def _check_feasible(dataset: str, alpha: float, n_cal: int) -> None:
    if quantile_index(n_cal, alpha) > n_cal:
        pytest.fail(f"{dataset}: {n_cal} calibration questions cannot certify alpha={alpha}: "
                    f"split conformal needs at least {int(np.ceil(1 / alpha)) - 1}")


@cache
def rank_cell(retriever: str, setup: Setup, alpha: float, cal: int) -> CellResult:
    """Top-k: k from the calibration fold's gold ranks (the whole corpus when no finite k exists)."""
    n_docs = len(cached_dataset(setup.dataset).corpus)
    g = _gold(retriever, setup)
    cal_q, test_q = _split(setup.dataset, cal)
    _check_feasible(setup.dataset, alpha, len(cal_q))
    cal_ranks, test_ranks = g.ranks[g.rows(cal_q)], g.ranks[g.rows(test_q)]
    k = calibrate_k(cal_ranks, alpha, n_docs)
    assert k is not None
    cov, cal_cov = covered(test_ranks, k, n_docs), covered(cal_ranks, k, n_docs)
    sizes = set_sizes(g.run.scores[g.rows(test_q)], k=k, n_docs=n_docs).astype(np.float64)
    slack = _slack(setup.dataset, alpha, len(cal_q), len(test_q), covered(g.ranks, k, n_docs), g.run.query_ids)
    return CellResult(float(k), k >= n_docs, cal_q, test_q, cov, sizes, slack, cal_cov,
                      float(np.mean(cal_ranks <= k - 1)), 0.0)


@cache
def score_cell(retriever: str, setup: Setup, alpha: float, cal: int) -> CellResult:
    """Score threshold: the calibration fold's gold-score quantile; the set is every passage
    scoring at least that much."""
    g = _gold(retriever, setup)
    cal_q, test_q = _split(setup.dataset, cal)
    _check_feasible(setup.dataset, alpha, len(cal_q))
    cal_s, test_s = g.scores[g.rows(cal_q)], g.scores[g.rows(test_q)]
    t = calibrate_threshold(cal_s, alpha)
    cov = ((test_s >= t) & np.isfinite(test_s)).astype(np.float64)
    cal_cov = ((cal_s >= t) & np.isfinite(cal_s)).astype(np.float64)
    sc = g.run.scores[g.rows(test_q)]
    sizes = set_sizes(sc, threshold=t).astype(np.float64)
    truncated = float(np.mean(sc[:, -1] >= t))
    everyone = ((g.scores >= t) & np.isfinite(g.scores)).astype(np.float64)
    slack = _slack(setup.dataset, alpha, len(cal_q), len(test_q), everyone, g.run.query_ids)
    return CellResult(t, not np.isfinite(t), cal_q, test_q, cov, sizes, slack, cal_cov, 0.0, truncated)


@pytest.mark.parametrize("retriever,setup,alpha,cal", CELLS)
def test_conformal(retriever, setup, alpha, cal, odqa_record, odqa_dataset):
    ds = odqa_dataset(setup.dataset)
    odqa_record.dataset(ds)
    res = rank_cell(retriever, setup, alpha, cal)
    n_cal, n_test, k = len(res.cal_q), len(res.test_q), int(res.param)
    cov = odqa_record("coverage", per_query=res.covered, query_ids=res.test_q, alpha=alpha, n_cal=n_cal, cal=cal,
                      slack=round(res.slack, 6), trivial=res.trivial)
    odqa_record("set_size", per_query=res.sizes, query_ids=res.test_q, higher_is_better=False)
    odqa_record("k_hat", float(k), higher_is_better=False, kind="info")
    assert cov >= 1 - alpha - res.slack, (
        f"coverage {cov:.4f} below 1 - alpha - slack = {1 - alpha - res.slack:.4f} "
        f"(k={k}, n_cal={n_cal}, n_test={n_test})")
    # the calibrated k is the smallest that works on the calibration fold: k - 1 must fall short
    if k > 1:
        assert res.cal_short < quantile_index(n_cal, alpha) / n_cal
    if setup.score_variant:
        sv = score_cell(retriever, setup, alpha, cal)
        assert not sv.trivial, f"no finite score threshold certifies alpha={alpha} on calibration fold {cal}"
        # sets are counted inside the run: it must reach past every passage the threshold keeps
        assert sv.truncated == 0.0, f"{sv.truncated:.1%} of test rows end inside the threshold set; deepen the run"
        s_cov = odqa_record("score_coverage", per_query=sv.covered, query_ids=sv.test_q, alpha=alpha, n_cal=n_cal,
                            cal=cal, slack=round(sv.slack, 6))
        odqa_record("score_set_size", per_query=sv.sizes, query_ids=sv.test_q, higher_is_better=False)
        odqa_record("score_threshold", sv.param, kind="info")
        assert s_cov >= 1 - alpha - sv.slack, (
            f"score-threshold coverage {s_cov:.4f} below 1 - alpha - slack = {1 - alpha - sv.slack:.4f} "
            f"(threshold {sv.param:.4f})")


# --- answer sets with a trained reader -----------------------------------------------------------

ANSWER_RETRIEVER, ANSWER_TOKENIZER = "bm25", "kiwi"
ANSWER_SPLITS = 2


@dataclass(frozen=True)
class AnswerSetup:
    """Answer sets (TRAQ) over the questions a reader profile holds out: each fold's reader
    (``benchmarks/test_reader.py`` trains and caches them) reads its own held-out questions,
    pooled over ``folds`` and split in two by article for calibration."""

    profile: str
    dataset: str
    n_folds: int
    folds: tuple[int, ...]
    alphas: tuple[tuple[float, float], ...]  # (alpha, alpha_ret); alpha_read = alpha - alpha_ret
    lang: str = "ko"
    sample: int | None = None                 # held-out questions per fold (None: all)
    marks: tuple = field(default=(), compare=False)


ANSWER_SETUPS = (
    # the quick reader: fold 1 of 2 on the embedded (Korean) sample
    AnswerSetup("quick", "default", 2, (1,), ((0.2, 0.1), (0.3, 0.15))),
    # the full profile's e5-small readers, each reading a seeded sample of its fold's questions
    AnswerSetup("full", "korquad-dev", 5, (1, 2, 3, 4, 5), ((0.1, 0.05), (0.2, 0.1)), sample=100,
                marks=(pytest.mark.full, pytest.mark.realdata)),
)

ANSWER_CELLS = [
    pytest.param(s, a, ar, cal, id=f"{ANSWER_RETRIEVER}-{ANSWER_TOKENIZER}/{s.dataset}/alpha={a}/cal={cal}",
                 marks=s.marks)
    for s in ANSWER_SETUPS for a, ar in s.alphas for cal in range(1, ANSWER_SPLITS + 1)
]


@dataclass(frozen=True)
class AnswerInputs:
    """The held-out questions split in two (by article), the run, and every run row's reader
    candidates for its top ``depth`` passages (empty rows for questions the readers trained on)."""

    dataset: Dataset
    run: Run
    splits: list[list[str]]
    candidates: list[list[list[tuple[str, float]]]]
    depth: int


def _answer_split(splits: list[list[str]], cal: int) -> tuple[list[str], list[str]]:
    return splits[cal - 1], [q for i, s in enumerate(splits, 1) if i != cal for q in s]


def _fold_questions(setup: AnswerSetup, ds: Dataset, fold: Fold) -> list[str]:
    return sample_held_out([q for q in fold.test_query_ids if ds.answers.get(q)], setup.sample, SEED, fold.index)


@cache
def _answer_inputs(setup: AnswerSetup) -> AnswerInputs:
    from odqa_core.reader.train import PROFILES, trained_reader

    ds = cached_dataset(setup.dataset)
    config = PROFILES[setup.profile]
    folds = [get_fold(ds, f, setup.n_folds, SEED) for f in setup.folds]
    by_fold = [_fold_questions(setup, ds, f) for f in folds]
    held = [q for qs in by_fold for q in qs]
    splits = [f.test_query_ids for f in kfold_by_group(ds.subset_queries(held), ANSWER_SPLITS, SEED)]
    run = cached_run(ANSWER_RETRIEVER, ANSWER_TOKENIZER, setup.dataset)
    ranks = gold_ranks(run, ds.qrels)
    pos = {q: i for i, q in enumerate(run.query_ids)}
    ks = [calibrate_k(ranks[[pos[q] for q in _answer_split(splits, c)[0]]], ar)
          for _, ar in setup.alphas for c in range(1, ANSWER_SPLITS + 1)]
    depth = max([k for k in ks if k is not None], default=1)
    qpos = {q: i for i, q in enumerate(ds.query_ids)}
    candidates: list[list[list[tuple[str, float]]]] = [[] for _ in run.query_ids]
    for fold, qids in zip(folds, by_fold):
        reader = trained_reader(ds, fold, config, device=config.device, threads=config.threads)
        passages = [[ds.corpus.texts[j] for j in run.indices[pos[q], :depth] if j >= 0] for q in qids]
        for q, row in zip(qids, reader_candidates(reader, [ds.query_texts[qpos[q]] for q in qids], passages,
                                                      setup.lang)):
            candidates[pos[q]] = row
    return AnswerInputs(ds, run, splits, candidates, depth)


@dataclass(frozen=True)
class AnswerCell:
    """One answer-level calibration split: the calibrated rule, per test question hit and set
    size, every candidate in its top k (the set a threshold of -inf would keep), and the slack."""

    calibration: AnswerCalibration
    cal_q: list[str]
    test_q: list[str]
    hits: np.ndarray
    sizes: np.ndarray
    everything: np.ndarray
    slack: float


@cache
def answer_cell(setup: AnswerSetup, alpha: float, alpha_ret: float, cal: int) -> AnswerCell:
    """TRAQ answer sets: k at ``alpha_ret``, then the reader threshold at ``alpha - alpha_ret``."""
    inp = _answer_inputs(setup)
    ds, run = inp.dataset, inp.run
    cal_q, test_q = _answer_split(inp.splits, cal)
    c = calibrate_answers(run, ds.qrels, inp.candidates, ds.answers, cal_q, alpha, alpha_ret, setup.lang)
    if c.k is None or not np.isfinite(c.threshold):
        pytest.fail(f"answer sets not calibrated on split {cal}: k={c.k}, reader threshold {c.threshold} "
                    f"({c.n_read_cal} of {c.n_cal} calibration golds within k)")
    if c.k > inp.depth:
        pytest.fail(f"calibrated k={c.k} is deeper than the {inp.depth} passages read")
    hits, sizes = answer_outcomes(run, inp.candidates, ds.answers, c, test_q, setup.lang)
    cal_hits, _ = answer_outcomes(run, inp.candidates, ds.answers, c, cal_q, setup.lang)
    everything = np.array([len(s) for s in answer_sets(run, inp.candidates, c.k, float("-inf"), test_q)])
    slack = _slack(setup.dataset, alpha, len(cal_q), len(test_q), np.concatenate([cal_hits, hits]), cal_q + test_q)
    return AnswerCell(c, cal_q, test_q, hits, sizes, everything, slack)


@pytest.mark.parametrize("setup,alpha,alpha_ret,cal", ANSWER_CELLS)
def test_answer_conformal(setup, alpha, alpha_ret, cal, odqa_record):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    res = answer_cell(setup, alpha, alpha_ret, cal)
    c = res.calibration
    odqa_record.dataset(_answer_inputs(setup).dataset)
    cov = odqa_record("coverage", per_query=res.hits, query_ids=res.test_q, alpha=alpha, alpha_ret=alpha_ret,
                      n_cal=len(res.cal_q), n_read_cal=c.n_read_cal, cal=cal, slack=round(res.slack, 6))
    odqa_record("set_size", per_query=res.sizes, query_ids=res.test_q, higher_is_better=False)
    odqa_record("k_hat", float(c.k), higher_is_better=False, kind="info")
    odqa_record("reader_threshold", c.threshold, kind="info")
    odqa_record("candidates_in_top_k", float(res.everything.mean()), higher_is_better=False, kind="info")
    assert cov >= 1 - alpha - res.slack, (
        f"answer coverage {cov:.4f} below 1 - alpha - slack = {1 - alpha - res.slack:.4f} "
        f"(k={c.k}, threshold {c.threshold:.4f}, n_cal={len(res.cal_q)}, n_test={len(res.test_q)})")
    # the calibrated reader threshold prunes: a set is never larger than all its candidates, and
    # on average strictly smaller (else the reader stage would certify nothing)
    assert np.all(res.sizes <= res.everything) and res.sizes.mean() < res.everything.mean()


# --- the aggregated table -------------------------------------------------------------------------

def _table_rows(profile: str) -> tuple[list[FoldRow], list[str]]:
    """Every fold row of the profile's setups; datasets that cannot be loaded here are named."""
    rows: list[FoldRow] = []
    missing: list[str] = []
    for s in SETUPS:
        if s.full and profile != "full":
            continue
        try:
            cached_dataset(s.dataset)
        except pytest.skip.Exception:
            missing.append(s.dataset)
            continue
        for r in RETRIEVERS:
            name = f"{r}-{s.tokenizer}"
            for a in s.alphas:
                for cal in range(1, N_FOLDS + 1):
                    rc = rank_cell(r, s, a, cal)
                    rows.append(FoldRow("rank", name, s.dataset, a, cal, float(rc.covered.mean()),
                                        float(rc.sizes.mean()), rc.param, len(rc.cal_q), len(rc.test_q), rc.slack,
                                        rc.trivial))
                    if s.score_variant:
                        sc = score_cell(r, s, a, cal)
                        rows.append(FoldRow("score", name, s.dataset, a, cal, float(sc.covered.mean()),
                                            float(sc.sizes.mean()), sc.param, len(sc.cal_q), len(sc.test_q),
                                            sc.slack, sc.trivial))
    return rows, missing


def _answer_rows(profile: str) -> list[FoldRow]:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return []
    rows = []
    for s in ANSWER_SETUPS:
        if s.profile != "quick" and s.profile != profile:
            continue
        for a, ar in s.alphas:
            for cal in range(1, ANSWER_SPLITS + 1):
                res = answer_cell(s, a, ar, cal)
                rows.append(FoldRow("answer", f"{ANSWER_RETRIEVER}-{ANSWER_TOKENIZER}+reader", s.dataset, a, cal,
                                    float(res.hits.mean()), float(res.sizes.mean()), float(res.calibration.k or 0),
                                    len(res.cal_q), len(res.test_q), res.slack))
    return rows


@pytest.mark.parametrize("profile", ["quick", pytest.param("full", marks=pytest.mark.full)])
def test_conformal_table(profile: str, odqa_report_dir: Path | None) -> None:
    rows, missing = _table_rows(profile)
    rows += _answer_rows(profile)
    summary = summary_frame(rows)
    expected = sum(len(s.alphas) * len(RETRIEVERS) * (2 if s.score_variant else 1) for s in SETUPS
                   if (profile == "full" or not s.full) and s.dataset not in missing)
    assert len(summary[summary["method"] != "answer"]) == expected
    assert (summary.loc[summary["method"] != "answer", "folds"] == N_FOLDS).all()
    # a smaller alpha never certifies with fewer passages, and never covers less, on any fold
    for method in ("rank", "score"):
        part = [r for r in rows if r.method == method]
        by_fold: dict[tuple[str, str, int], list[FoldRow]] = {}
        for r in part:
            by_fold.setdefault((r.retriever, r.dataset, r.cal), []).append(r)
        for key, fold_rows in by_fold.items():
            fold_rows.sort(key=lambda r: r.alpha)
            for lo, hi in zip(fold_rows, fold_rows[1:]):
                assert lo.set_size >= hi.set_size and lo.coverage >= hi.coverage, (method, key, lo.alpha, hi.alpha)
    assert tables_markdown(rows).count("\n") > len(summary)
    if odqa_report_dir is not None:
        stem = "conformal" if profile == "quick" else f"conformal_{profile}"
        paths = write_tables(rows, odqa_report_dir, stem)
        assert all(p.stat().st_size > 0 for p in paths)
    if missing:
        pytest.skip(f"table written without {', '.join(sorted(set(missing)))} (data not available here)")
