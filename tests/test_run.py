"""``topk`` against a brute-force full sort, ``Run`` ordering like trec_eval, and TREC run files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import Run, tie_keys, topk

FIXTURES = Path(__file__).resolve().parent / "data"
HYP = settings(max_examples=150, deadline=None, database=None, derandomize=True)


def _brute_topk(scores: np.ndarray, k: int, ties: np.ndarray, positive_only: bool) -> tuple[np.ndarray, np.ndarray]:
    n, N = scores.shape
    idx = np.full((n, k), -1, dtype=np.int64)
    sc = np.full((n, k), -np.inf)
    for r in range(n):
        order = np.lexsort((ties, -scores[r]))
        if positive_only:
            order = order[scores[r][order] > 0]
        order = order[:k]
        idx[r, : len(order)] = order
        sc[r, : len(order)] = scores[r][order]
    return idx, sc


@st.composite
def score_matrices(draw: st.DrawFn) -> tuple[np.ndarray, int, np.ndarray]:
    n = draw(st.integers(1, 5))
    N = draw(st.integers(1, 25))
    # small integers (some negative): ties are the rule, including at the k-th place
    scores = draw(hnp.arrays(np.float64, (n, N), elements=st.integers(-2, 4).map(float)))
    k = draw(st.integers(0, N + 5))
    ties = np.asarray(draw(st.permutations(list(range(N)))), dtype=np.int64)
    return scores, k, ties


@HYP
@given(score_matrices(), st.booleans())
def test_topk_equals_full_lexsort(case: tuple[np.ndarray, int, np.ndarray], positive_only: bool) -> None:
    scores, k, ties = case
    idx, sc = topk(scores, k, ties, positive_only=positive_only)
    ref_idx, ref_sc = _brute_topk(scores, k, ties, positive_only)
    assert idx.shape == sc.shape == (scores.shape[0], k)
    assert idx.dtype == np.int64 and sc.dtype == np.float64
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(sc, ref_sc)
    if positive_only:
        assert np.all((sc > 0) | (np.isneginf(sc) & (idx == -1)))


def test_topk_hand_case() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.0, -1.0, 3.0]])
    ties = tie_keys(["a", "b", "c", "d", "e", "f"])  # f first among equals
    idx, sc = topk(scores, 4, ties)
    assert idx.tolist() == [[5, 2, 1, 0]] and sc.tolist() == [[3.0, 3.0, 3.0, 1.0]]
    idx, sc = topk(scores, 2, ties)
    assert idx.tolist() == [[5, 2]]
    idx, sc = topk(scores, 8, ties, positive_only=True)
    assert idx.tolist() == [[5, 2, 1, 0, -1, -1, -1, -1]]
    assert np.isneginf(sc[0, 4:]).all()
    idx, _ = topk(scores, 8, ties)
    assert idx.tolist() == [[5, 2, 1, 0, 3, 4, -1, -1]]


def test_tie_keys_rank_doc_ids_descending() -> None:
    keys = tie_keys(["10", "9", "100", "b", "a"])
    order = sorted(range(5), key=lambda i: keys[i])
    assert [["10", "9", "100", "b", "a"][i] for i in order] == ["b", "a", "9", "100", "10"]


def test_from_dict_orders_like_trec_eval() -> None:
    run = Run.from_dict({"q1": {"a": 1.0, "c": 2.0, "b": 1.0, "d": 1.0}, "q2": {"z": 0.5}})
    assert run.query_ids == ["q1", "q2"]
    assert run.ranked(0) == ["c", "d", "b", "a"]  # score desc, then doc id desc
    assert run.ranked(1) == ["z"]
    assert run.k == 4 and run.indices[1, 1:].tolist() == [-1, -1, -1]
    assert np.isneginf(run.scores[1, 1:]).all()
    assert run.to_dict() == {"q1": {"c": 2.0, "d": 1.0, "b": 1.0, "a": 1.0}, "q2": {"z": 0.5}}
    short = Run.from_dict({"q1": {"a": 1.0, "c": 2.0, "b": 1.0}}, k=2)
    assert short.ranked(0) == ["c", "b"]
    assert run.truncate(2).ranked(0) == ["c", "d"]


def test_run_shape_mismatch_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        Run(["q1", "q2"], ["a"], np.zeros((1, 3), dtype=np.int64), np.zeros((1, 3)))


def test_trec_round_trip(tmp_path: Path) -> None:
    run = Run.from_dict({"q1": {"doc1": 3.5, "doc2": 1.25, "doc3": 1.25, "doc4": -2.0},
                         "q2": {"doc4": 7.0, "doc1": 0.1}}, name="bm25")
    path = tmp_path / "runs" / "out.trec"
    run.write_trec(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "q1 Q0 doc1 1 3.5 bm25"
    assert lines[1] == "q1 Q0 doc3 2 1.25 bm25" and lines[2] == "q1 Q0 doc2 3 1.25 bm25"
    back = Run.read_trec(path)
    assert back.name == "out" and back.query_ids == run.query_ids
    assert back.to_dict() == run.to_dict()
    assert [back.ranked(i) for i in range(2)] == [run.ranked(i) for i in range(2)]
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_read_trec_fixture_ignores_rank_column() -> None:
    run = Run.read_trec(FIXTURES / "tiny.trec")
    assert run.ranked(0) == ["doc1", "doc3", "doc2"]  # tie at 1.25: doc id descending
    assert run.ranked(1) == ["doc4", "doc1"]
    assert run.to_dict()["q2"] == {"doc4": 7.0, "doc1": -0.5}


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("q1 Q0 doc9 3 1.0\n", r"bad\.trec:3: expected 6 columns .* got 5"),
        ("q1 Q0 doc9 3 high run\n", r"bad\.trec:3: score 'high' is not a number"),
        ("q1 Q0 doc1 3 0.5 run\n", r"bad\.trec:3: document doc1 listed twice for query q1"),
    ],
)
def test_read_trec_malformed_lines(tmp_path: Path, bad: str, match: str) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 doc1 1 2.0 run\nq1 Q0 doc2 2 1.0 run\n" + bad, encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=match):
        Run.read_trec(path)


def test_read_trec_empty_and_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.trec"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"empty\.trec: the run is empty"):
        Run.read_trec(empty)
    with pytest.raises(OdqaBenchError, match=r"absent\.trec: file not found"):
        Run.read_trec(tmp_path / "absent.trec")
