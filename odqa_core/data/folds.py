"""K-fold query splits grouped by article, and leakage checks between train and test sides.

Queries follow their gold passage's ``corpus.groups`` value (the article), so no paragraph of
a test fold's article is ever trained on; a trained retriever is then scored on articles it
has never seen, which is what a held-out fold is meant to measure.
"""
from __future__ import annotations

import logging
import string
import unicodedata
from dataclasses import dataclass

import numpy as np

from ..errors import OdqaBenchError
from .types import Dataset

__all__ = ["Fold", "kfold_by_group", "sample_held_out", "get_fold", "split_dataset", "normalize_question", "check_leakage",
           "check_no_duplicates_across"]

log = logging.getLogger(__name__)

_MAX_NAMED = 5  # leaked items spelled out in one error line


@dataclass(frozen=True)
class Fold:
    """One split: ``index`` is 1-based (``fold=1..n_folds``). ``test_doc_ids`` are the passages
    of the test queries' articles; ``train_doc_ids`` are all other passages (including articles
    no query points at, such as open-corpus distractors)."""

    index: int
    train_query_ids: list[str]
    test_query_ids: list[str]
    train_doc_ids: list[str]
    test_doc_ids: list[str]
    n_folds: int = 0
    seed: int = 0

    @property
    def name(self) -> str:
        return f"fold={self.index}"


class _Union:
    """Union-find over group names: a query whose gold passages span articles ties them."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _doc_groups(dataset: Dataset) -> list[str]:
    c = dataset.corpus
    if len(c.groups) == len(c.ids):
        return [str(g) for g in c.groups]
    return [f"doc:{d}" for d in c.ids]  # no article information: each passage is its own group


def kfold_by_group(dataset: Dataset, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """Split the queries into ``n_folds`` folds by the article of their gold passage(s).

    Articles are shuffled with ``seed`` and then placed largest-first (by query count) into the
    fold with the fewest queries so far, which balances folds by query count."""
    if not isinstance(n_folds, int) or n_folds < 2:
        raise OdqaBenchError(f"n_folds={n_folds!r}: need an integer >= 2")
    doc_group = dict(zip(dataset.corpus.ids, _doc_groups(dataset)))
    uf = _Union()
    query_root_member: dict[str, str] = {}
    for q in dataset.query_ids:
        golds = [d for d, g in dataset.qrels.get(q, {}).items() if g > 0 and d in doc_group]
        groups = [doc_group[d] for d in golds] or [f"query:{q}"]
        for g in groups[1:]:
            uf.union(groups[0], g)
        query_root_member[q] = groups[0]
    by_root: dict[str, list[str]] = {}
    for q in dataset.query_ids:
        by_root.setdefault(uf.find(query_root_member[q]), []).append(q)
    roots = sorted(by_root)
    if len(roots) < n_folds:
        raise OdqaBenchError(f"{dataset.name}: {len(roots)} article groups with queries cannot fill n_folds={n_folds}")
    rng = np.random.default_rng(seed)
    shuffled = [roots[i] for i in rng.permutation(len(roots))]
    shuffled.sort(key=lambda r: -len(by_root[r]))  # stable: equal sizes keep the seeded order
    load = [0] * n_folds
    fold_roots: list[set[str]] = [set() for _ in range(n_folds)]
    for r in shuffled:
        f = min(range(n_folds), key=lambda i: (load[i], i))
        fold_roots[f].add(r)
        load[f] += len(by_root[r])
    doc_root = {d: uf.find(g) for d, g in doc_group.items()}
    folds = []
    for f in range(n_folds):
        test_q = set().union(*(by_root[r] for r in fold_roots[f])) if fold_roots[f] else set()
        folds.append(Fold(
            index=f + 1,
            train_query_ids=[q for q in dataset.query_ids if q not in test_q],
            test_query_ids=[q for q in dataset.query_ids if q in test_q],
            train_doc_ids=[d for d in dataset.corpus.ids if doc_root[d] not in fold_roots[f]],
            test_doc_ids=[d for d in dataset.corpus.ids if doc_root[d] in fold_roots[f]],
            n_folds=n_folds,
            seed=seed,
        ))
    log.debug("%s: %d folds, test sizes %s", dataset.name, n_folds, load)
    return folds


def get_fold(dataset: Dataset, fold: int, n_folds: int = 5, seed: int = 0) -> Fold:
    """The 1-based fold ``fold`` of :func:`kfold_by_group`."""
    if not isinstance(fold, int) or not 1 <= fold <= n_folds:
        raise OdqaBenchError(f"fold={fold!r}: must be an integer in 1..{n_folds}")
    return kfold_by_group(dataset, n_folds, seed)[fold - 1]


def split_dataset(dataset: Dataset, fold: Fold) -> tuple[Dataset, Dataset]:
    """(train, test) views of ``dataset`` with the fold's queries; both keep the full corpus."""
    return (dataset.subset_queries(fold.train_query_ids, f"{dataset.name}[train {fold.name}]"),
            dataset.subset_queries(fold.test_query_ids, f"{dataset.name}[test {fold.name}]"))


_PUNCT = set(string.punctuation)


def normalize_question(text: str) -> str:
    """NFKC, lowercased, punctuation stripped, white space folded: the form two questions
    must share to count as the same question."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = "".join(" " if (ch in _PUNCT or unicodedata.category(ch).startswith("P")) else ch for ch in s)
    return " ".join(s.split())


def _fail(what: str, items: list[str]) -> None:
    shown = "; ".join(items[:_MAX_NAMED])
    more = f" (and {len(items) - _MAX_NAMED} more)" if len(items) > _MAX_NAMED else ""
    raise OdqaBenchError(f"{what}: {len(items)} leaked item(s): {shown}{more}")


def check_leakage(fold: Fold, dataset: Dataset, train_questions: list[str] | None = None) -> None:
    """Raise when a test query of ``fold`` is visible on its training side: the query id itself,
    its question text (normalised) among ``train_questions`` (default: the fold's training
    questions), or its gold passage among the training documents."""
    pos = {q: i for i, q in enumerate(dataset.query_ids)}
    unknown = [q for q in fold.test_query_ids if q not in pos]
    if unknown:
        raise OdqaBenchError(f"{dataset.name} {fold.name}: test query id {unknown[0]!r} is not in the dataset")
    if train_questions is None:
        train_questions = [dataset.query_texts[pos[q]] for q in fold.train_query_ids if q in pos]
    train_norm: dict[str, str] = {}
    for t in train_questions:
        train_norm.setdefault(normalize_question(t), t)
    train_q = set(fold.train_query_ids)
    train_docs = set(fold.train_doc_ids)
    leaks: list[str] = []
    for q in fold.test_query_ids:
        text = dataset.query_texts[pos[q]]
        if q in train_q:
            leaks.append(f"test query {q} is also a training query")
        hit = train_norm.get(normalize_question(text))
        if hit is not None:
            leaks.append(f"test question {q} {text!r} appears in the training questions as {hit!r}")
        for d, g in sorted(dataset.qrels.get(q, {}).items()):
            if g > 0 and d in train_docs:
                leaks.append(f"gold passage {d} of test question {q} is in the training documents")
    if leaks:
        _fail(f"{dataset.name} {fold.name}", leaks)


def check_no_duplicates_across(splits: dict[str, list[str]]) -> None:
    """Raise when one question (normalised) occurs in two splits, e.g. eval_rag train/dev/test
    question files; the error names the question and both splits."""
    seen: dict[str, tuple[str, str]] = {}
    leaks: list[str] = []
    for split, questions in splits.items():
        for text in questions:
            key = normalize_question(text)
            first = seen.get(key)
            if first is None:
                seen[key] = (split, text)
            elif first[0] != split:
                leaks.append(f"question {text!r} is in both {first[0]!r} and {split!r}")
    if leaks:
        _fail("splits " + ", ".join(repr(s) for s in splits), leaks)


def sample_held_out(query_ids: list[str], n: int | None, seed: int, fold_index: int) -> list[str]:
    """A seeded sample of ``n`` of a fold's held-out questions, in their own order (all of them
    when ``n`` is None or not smaller); the same per fold wherever a suite draws it."""
    if n is None or n >= len(query_ids):
        return list(query_ids)
    pick = np.random.default_rng([seed, fold_index]).choice(len(query_ids), n, replace=False)
    return [query_ids[i] for i in sorted(pick)]

