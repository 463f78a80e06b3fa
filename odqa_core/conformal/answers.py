"""Conformal answer sets (TRAQ) over a retrieval run and an extractive reader's span candidates:
retrieval top-k calibrated at ``alpha_ret``, a reader-score threshold at ``alpha_read``, with
``alpha_ret + alpha_read = alpha`` by the union bound. A set covers a question when it holds an
exact match of a gold answer.

In Korean a subword token often carries the particle after a noun ("GS칼텍스는"), so no token
span is the bare answer ("GS칼텍스"), which KorQuAD's answers never include; the Korean answer
space therefore also holds each span with a trailing particle removed, at the span's score.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OdqaBenchError
from ..metrics.qa import normalize_korquad, normalize_squad
from ..retrieval.run import Run
from .retrieval import _check_alpha, _gold_mask, _select, calibrate_k, calibrate_threshold, gold_ranks

__all__ = [
    "AnswerCalibration", "AnswerResult", "Candidates", "answer_coverage", "answer_outcomes", "answer_sets",
    "calibrate_answers", "gold_answer_scores", "reader_candidates", "without_particles",
]

# candidates[i][r] = the reader's (answer text, reader score) pairs from run row i, rank r
Candidates = Sequence[Sequence[Sequence[tuple[str, float]]]]

# Korean case and auxiliary particles (and the copula forms) that follow a noun phrase, longest
# first so "에서는" is tried before "는"
KOREAN_PARTICLES = tuple(sorted({
    "은", "는", "이", "가", "을", "를", "의", "에", "에서", "에게", "께서", "와", "과", "로", "으로", "도", "만", "까지",
    "부터", "보다", "처럼", "이다", "였다", "이며", "인", "라는", "이라는", "라고", "이라고", "에는", "에서는", "으로는",
    "로는", "과의", "와의", "이란", "란", "이나", "나", "에도", "으로서", "로서", "으로써", "로써", "에서의", "만의",
}, key=lambda p: (-len(p), p)))
_PARTICLE_ENDS = frozenset(p[-1] for p in KOREAN_PARTICLES)


def without_particles(text: str) -> set[str]:
    """``text`` and, for each Korean particle it ends with, ``text`` without it (never empty)."""
    out = {text}
    if not text or text[-1] not in _PARTICLE_ENDS:  # most spans: no particle to try
        return out
    for p in KOREAN_PARTICLES:
        if text.endswith(p) and len(text) > len(p):
            stem = text[: -len(p)].rstrip()
            if stem:
                out.add(stem)
    return out


@dataclass(frozen=True)
class AnswerCalibration:
    """Calibrated answer-set rule: keep answers scoring >= ``threshold`` from the top ``k``
    passages. ``k`` None or ``threshold`` -inf means that stage could not be calibrated."""

    alpha_ret: float
    alpha_read: float
    k: int | None
    threshold: float
    n_cal: int
    n_read_cal: int


@dataclass(frozen=True)
class AnswerResult:
    """Answer-set coverage (some answer in the set is an exact match) and mean set size."""

    coverage: float
    mean_set_size: float
    n_test: int


def _exact_matcher(golds: Sequence[str], lang: str) -> Callable[[str], bool]:
    """``text -> exact match 1 against some gold``, with the golds normalised once (the same
    test as ``best_over_golds(text, golds, lang)[0] == 1``)."""
    norm = normalize_korquad if lang == "ko" else normalize_squad
    want = {norm(g) for g in golds}
    return lambda text: bool(want) and norm(text) in want


def _check_candidates(run: Run, candidates: Candidates) -> None:
    if len(candidates) != len(run.query_ids):
        raise OdqaBenchError(f"candidates: {len(candidates)} rows for {len(run.query_ids)} run queries")


def gold_answer_scores(
    run: Run,
    qrels: dict[str, dict[str, int]],
    candidates: Candidates,
    answers: dict[str, list[str]],
    query_ids: Sequence[str],
    k: int | None = None,
    lang: str = "en",
) -> np.ndarray:
    """Per query, the best reader score of an exactly-matching candidate drawn from a relevant
    passage within the top k (the reader's nonconformity score); ``-inf`` when there is none."""
    _check_candidates(run, candidates)
    rows = _select(run, query_ids)
    mask = _gold_mask(run, qrels, rows)
    depth = run.k if k is None else min(k, run.k)
    out = np.full(len(rows), -np.inf)
    for n, i in enumerate(rows):
        match = _exact_matcher(answers.get(run.query_ids[i], []), lang)
        for r in np.flatnonzero(mask[n, :depth]):
            for text, score in candidates[i][r] if r < len(candidates[i]) else ():
                if score > out[n] and match(text):
                    out[n] = float(score)
    return out


def calibrate_answers(
    run: Run,
    qrels: dict[str, dict[str, int]],
    candidates: Candidates,
    answers: dict[str, list[str]],
    cal_qids: Sequence[str],
    alpha: float,
    alpha_ret: float,
    lang: str = "en",
) -> AnswerCalibration:
    """k at ``alpha_ret`` on all calibration questions, then the reader threshold at
    ``alpha - alpha_ret`` on those whose gold passage is within that k."""
    _check_alpha(alpha)
    _check_alpha(alpha_ret, "alpha_ret")
    if alpha_ret >= alpha:
        raise OdqaBenchError(f"alpha_ret {alpha_ret} must be below alpha {alpha} (alpha_read = alpha - alpha_ret)")
    alpha_read = alpha - alpha_ret
    ranks = gold_ranks(run, qrels, cal_qids)
    k = calibrate_k(ranks, alpha_ret)
    inside = [q for q, r in zip(cal_qids, ranks) if k is not None and r <= k]
    scores = gold_answer_scores(run, qrels, candidates, answers, inside, k, lang)
    thr = calibrate_threshold(scores, alpha_read) if inside else float("-inf")
    return AnswerCalibration(float(alpha_ret), float(alpha_read), k, thr, len(cal_qids), len(inside))


def answer_sets(run: Run, candidates: Candidates, k: int | None, threshold: float,
                query_ids: Sequence[str]) -> list[list[str]]:
    """Per query, the distinct candidate answers scoring >= ``threshold`` from its top k
    passages (k None: the whole run), best score first."""
    _check_candidates(run, candidates)
    out = []
    for i in _select(run, query_ids):
        depth = run.k if k is None else min(k, run.k)
        best: dict[str, float] = {}
        for r in range(min(depth, len(candidates[i]))):
            if run.indices[i, r] < 0:
                continue
            for text, score in candidates[i][r]:
                if score >= threshold and score > best.get(text, -np.inf):
                    best[text] = float(score)
        out.append(sorted(best, key=lambda t: (-best[t], t)))
    return out


def answer_outcomes(
    run: Run,
    candidates: Candidates,
    answers: dict[str, list[str]],
    calibration: AnswerCalibration,
    test_qids: Sequence[str],
    lang: str = "en",
) -> tuple[np.ndarray, np.ndarray]:
    """Per test question: 1.0 when its calibrated answer set holds an exact match of a gold
    answer (else 0.0), and the set's size (distinct answers); the gate's per-query vectors."""
    if not len(test_qids):
        raise OdqaBenchError("answer coverage: no test questions")
    sets = answer_sets(run, candidates, calibration.k, calibration.threshold, test_qids)
    hits = []
    for q, s in zip(test_qids, sets):
        match = _exact_matcher(answers.get(q, []), lang)
        hits.append(float(any(match(a) for a in s)))
    return np.asarray(hits), np.asarray([len(s) for s in sets], dtype=np.float64)


def answer_coverage(
    run: Run,
    candidates: Candidates,
    answers: dict[str, list[str]],
    calibration: AnswerCalibration,
    test_qids: Sequence[str],
    lang: str = "en",
) -> AnswerResult:
    """Coverage of the calibrated answer sets on ``test_qids``: the fraction whose set holds an
    answer with exact match 1 against a gold answer; plus the mean number of answers."""
    hits, sizes = answer_outcomes(run, candidates, answers, calibration, test_qids, lang)
    return AnswerResult(float(hits.mean()), float(sizes.mean()), len(test_qids))


def reader_candidates(reader: Any, questions: Sequence[str], passages_per_question: Sequence[Sequence[str]],
                      lang: str = "en") -> list[list[list[tuple[str, float]]]]:
    """Every span of at most ``reader.max_answer_length`` tokens of every passage, as distinct
    answer texts with their best ``start + end`` logit over the passage's windows, best first;
    for ``lang="ko"`` also each span without a trailing particle (:func:`without_particles`).

    This is an extractive reader's whole answer space, not its n-best list: a gold answer that
    is a span of a retrieved passage is always a candidate, so the answer-set guarantee holds
    however weak the reader is (a weak one just needs a lower threshold, i.e. larger sets)."""
    from ..reader.extractive import span_text

    if len(questions) != len(passages_per_question):
        raise OdqaBenchError(f"reader candidates: {len(questions)} questions but {len(passages_per_question)} passage lists")
    pairs = [(qi, pi) for qi, ps in enumerate(passages_per_question) for pi in range(len(ps))]
    contexts = [passages_per_question[q][p] for q, p in pairs]
    win = reader.windows([questions[q] for q, _ in pairs], contexts)
    best: list[dict[str, float]] = [{} for _ in pairs]
    span_len = int(reader.max_answer_length)
    korean = lang == "ko"
    for w, (st, en) in enumerate(reader.logits(win)):
        offs = win.offsets[w][: len(st)]
        ctx = np.array([t for t, o in enumerate(offs) if o is not None], dtype=np.int64)
        if ctx.size == 0:
            continue
        a, b = np.triu_indices(ctx.size)
        keep = ctx[b] - ctx[a] < span_len
        s_tok, e_tok = ctx[a[keep]], ctx[b[keep]]
        scores = np.asarray(st, dtype=np.float64)[s_tok] + np.asarray(en, dtype=np.float64)[e_tok]
        pair = win.sample[w]
        context, seen = contexts[pair], best[pair]
        for s, e, sc in zip(s_tok.tolist(), e_tok.tolist(), scores.tolist()):
            text = span_text(context, offs[s][0], offs[e][1])[0]
            for variant in (without_particles(text) if korean and text else (text,)):
                if variant and sc > seen.get(variant, -math.inf):
                    seen[variant] = sc
    out: list[list[list[tuple[str, float]]]] = [[[] for _ in ps] for ps in passages_per_question]
    for j, (q, p) in enumerate(pairs):
        out[q][p] = sorted(best[j].items(), key=lambda kv: (-kv[1], kv[0]))
    return out
