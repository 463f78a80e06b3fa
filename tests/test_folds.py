"""Article-grouped k-fold splits and the leakage checks guarding them."""
from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest

from odqa_core.bench import require_dataset
from odqa_core.data import load_dataset
from odqa_core.data.folds import (
    Fold,
    check_leakage,
    check_no_duplicates_across,
    get_fold,
    kfold_by_group,
    normalize_question,
    split_dataset,
)
from odqa_core.data.types import Corpus, Dataset
from odqa_core.errors import OdqaBenchError


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset("default")


def _group_of(ds: Dataset) -> dict[str, str]:
    return dict(zip(ds.corpus.ids, ds.corpus.groups))


def _gold(ds: Dataset, q: str) -> list[str]:
    return [d for d, g in ds.qrels[q].items() if g > 0]


def test_folds_partition_queries_and_documents(ds: Dataset) -> None:
    folds = kfold_by_group(ds, n_folds=5, seed=0)
    assert [f.index for f in folds] == [1, 2, 3, 4, 5]
    assert [f.name for f in folds] == [f"fold={i}" for i in range(1, 6)]
    tests = [q for f in folds for q in f.test_query_ids]
    assert sorted(tests) == sorted(ds.query_ids)  # each query is tested exactly once
    for f in folds:
        assert set(f.train_query_ids).isdisjoint(f.test_query_ids)
        assert len(f.train_query_ids) + len(f.test_query_ids) == ds.n_queries
        assert set(f.train_doc_ids).isdisjoint(f.test_doc_ids)
        assert sorted(f.train_doc_ids + f.test_doc_ids) == sorted(ds.corpus.ids)


def test_no_article_on_both_sides(ds: Dataset) -> None:
    group = _group_of(ds)
    for f in kfold_by_group(ds, 5, seed=3):
        train_groups = {group[d] for d in f.train_doc_ids}
        test_groups = {group[d] for d in f.test_doc_ids}
        assert train_groups.isdisjoint(test_groups)
        assert {group[d] for q in f.test_query_ids for d in _gold(ds, q)} <= test_groups
        assert {group[d] for q in f.train_query_ids for d in _gold(ds, q)} <= train_groups


def test_deterministic_for_a_seed_and_different_for_another(ds: Dataset) -> None:
    a = kfold_by_group(ds, 5, seed=0)
    b = kfold_by_group(ds, 5, seed=0)
    c = kfold_by_group(ds, 5, seed=1)
    assert a == b
    assert [sorted(f.test_query_ids) for f in a] != [sorted(f.test_query_ids) for f in c]


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_balanced_by_query_count(ds: Dataset, n_folds: int) -> None:
    group = _group_of(ds)
    sizes = Counter(group[_gold(ds, q)[0]] for q in ds.query_ids)
    folds = kfold_by_group(ds, n_folds, seed=0)
    counts = [len(f.test_query_ids) for f in folds]
    # largest-first greedy keeps every fold within one article of the others
    assert max(counts) - min(counts) <= max(sizes.values())
    assert abs(max(counts) - ds.n_queries / n_folds) <= max(sizes.values())


def test_real_korquad_folds_balanced_and_clean() -> None:
    kq = require_dataset("korquad-dev")
    folds = kfold_by_group(kq, 5, seed=0)
    counts = [len(f.test_query_ids) for f in folds]
    assert max(counts) - min(counts) <= 0.02 * kq.n_queries
    for f in folds:
        check_leakage(f, kq)


def test_query_spanning_two_articles_ties_them_together() -> None:
    ids = [f"d{i}" for i in range(6)]
    corpus = Corpus(ids, [""] * 6, [f"text {i}" for i in range(6)], ["A", "A", "B", "C", "D", "E"])
    qrels = {"q0": {"d0": 1, "d2": 1}, "q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d4": 1}, "q4": {"d5": 1}}
    qs = list(qrels)
    ds = Dataset("toy", corpus, qs, [f"question {q}" for q in qs], qrels)
    for seed in range(4):
        for f in kfold_by_group(ds, 2, seed=seed):
            # articles A and B share query q0, so they must land on the same side
            side = {d: d in f.test_doc_ids for d in ("d0", "d1", "d2")}
            assert len(set(side.values())) == 1
            check_leakage(f, ds)


def test_corpus_without_groups_uses_documents() -> None:
    corpus = Corpus(["a", "b", "c", "d"], [""] * 4, ["x", "y", "z", "w"])
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}, "q4": {"d": 1}}
    ds = Dataset("flat", corpus, list(qrels), ["one", "two", "three", "four"], qrels)
    folds = kfold_by_group(ds, 2, seed=0)
    assert sorted(len(f.test_query_ids) for f in folds) == [2, 2]


def test_bad_fold_counts_are_user_errors(ds: Dataset) -> None:
    with pytest.raises(OdqaBenchError, match="n_folds"):
        kfold_by_group(ds, 1)
    with pytest.raises(OdqaBenchError, match="cannot fill n_folds=40"):
        kfold_by_group(ds, 40)
    with pytest.raises(OdqaBenchError, match="fold=6"):
        get_fold(ds, 6, n_folds=5)


def test_split_dataset_views(ds: Dataset) -> None:
    f = get_fold(ds, 2, 5)
    train, test = split_dataset(ds, f)
    assert train.query_ids == f.train_query_ids and test.query_ids == f.test_query_ids
    assert set(test.qrels) == set(f.test_query_ids) and test.corpus is ds.corpus


def test_clean_folds_pass_the_leakage_check(ds: Dataset) -> None:
    for f in kfold_by_group(ds, 5, seed=0):
        check_leakage(f, ds)


def test_leak_of_a_rephrased_question_is_named(ds: Dataset) -> None:
    f = get_fold(ds, 1, 5)
    pos = {q: i for i, q in enumerate(ds.query_ids)}
    latin = [q for q in f.test_query_ids if re.search("[A-Za-z]", ds.query_texts[pos[q]])]
    qid = (latin or f.test_query_ids)[0]
    text = ds.query_texts[pos[qid]]
    copy = "  " + text.upper().replace(" ", "   ").rstrip("?") + " ? "
    assert copy != text and normalize_question(copy) == normalize_question(text)
    train_questions = [ds.query_texts[pos[q]] for q in f.train_query_ids] + [copy]
    with pytest.raises(OdqaBenchError) as err:
        check_leakage(f, ds, train_questions)
    assert qid in str(err.value) and "training questions" in str(err.value)


def test_leak_of_a_gold_passage_is_named(ds: Dataset) -> None:
    f = get_fold(ds, 3, 5)
    qid = f.test_query_ids[0]
    gold = _gold(ds, qid)[0]
    leaky = dataclasses.replace(f, train_doc_ids=f.train_doc_ids + [gold])
    with pytest.raises(OdqaBenchError) as err:
        check_leakage(leaky, ds)
    assert f"gold passage {gold}" in str(err.value) and qid in str(err.value)


def test_leak_of_a_query_id_is_named(ds: Dataset) -> None:
    f = get_fold(ds, 2, 5)
    leaky = Fold(f.index, f.train_query_ids + f.test_query_ids[:1], f.test_query_ids, f.train_doc_ids, f.test_doc_ids)
    with pytest.raises(OdqaBenchError, match=re.escape(f.test_query_ids[0])):
        check_leakage(leaky, ds)


def test_normalize_question() -> None:
    assert normalize_question("  What's  THE\tcapital？ ") == "what s the capital"
    assert normalize_question("ＡＢＣ 한국의  수도는?") == "abc 한국의 수도는"
    assert normalize_question("a-b") != normalize_question("ab c")


def test_duplicates_across_splits() -> None:
    check_no_duplicates_across({"train": ["Who wrote Hamlet?", "Where is Seoul?"], "dev": ["Who painted it?"]})
    with pytest.raises(OdqaBenchError) as err:
        check_no_duplicates_across({"train": ["Who wrote Hamlet?"], "dev": ["x?"], "test": ["who  wrote HAMLET"]})
    msg = str(err.value)
    assert "'train'" in msg and "'test'" in msg and "HAMLET" in msg
    # a repeat inside one split is not a cross-split leak
    check_no_duplicates_across({"train": ["same question", "Same question?"], "test": ["other"]})


def test_held_out_sample_is_seeded_ordered_and_per_fold():
    from odqa_core.data.folds import sample_held_out

    qids = [f"q{i:03d}" for i in range(200)]
    a = sample_held_out(qids, 30, 0, 1)
    assert len(set(a)) == 30 and set(a) <= set(qids) and a == sorted(a, key=qids.index)
    assert a == sample_held_out(qids, 30, 0, 1) and a != sample_held_out(qids, 30, 0, 2)
    assert sample_held_out(qids, None, 0, 1) == qids == sample_held_out(qids, 500, 0, 1)
