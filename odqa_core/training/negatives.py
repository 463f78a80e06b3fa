"""DPR training examples: (question, gold passage) pairs from a fold's training side, each with
BM25 hard negatives, the top-ranked training passages that are neither gold nor contain an answer.

Negatives are mined only among the fold's training documents, so no test-fold article enters
training even as a negative.
"""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

from ..data.folds import Fold
from ..data.types import Corpus, Dataset
from ..errors import OdqaBenchError

__all__ = ["Example", "contains_answer", "mine_hard_negatives", "build_examples"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One training pair; ids are corpus doc ids."""

    query_id: str
    question: str
    positive_id: str
    hard_negative_ids: tuple[str, ...] = ()


def _fold_case(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def contains_answer(text: str, answers: list[str]) -> bool:
    """True when ``text`` contains any non-empty answer string (NFKC, case-insensitive): a
    passage that does is a potential positive and must never serve as a negative."""
    t = _fold_case(text)
    return any(a.strip() and _fold_case(a.strip()) in t for a in answers)


def mine_hard_negatives(dataset: Dataset, query_ids: list[str], doc_ids: list[str], n: int,
                        tokenizer: str = "kiwi", depth: int = 30) -> dict[str, list[str]]:
    """Up to ``n`` BM25 hard negatives per query, searched among ``doc_ids`` only (top ``depth``
    candidates scanned), skipping gold passages and passages that contain an answer string."""
    from ..retrieval import get_retriever

    if n <= 0 or not query_ids:
        return {q: [] for q in query_ids}
    c = dataset.corpus
    pos = {d: i for i, d in enumerate(c.ids)}
    missing = [d for d in doc_ids if d not in pos]
    if missing:
        raise OdqaBenchError(f"{dataset.name}: training document {missing[0]!r} is not in the corpus")
    rows = [pos[d] for d in doc_ids]
    groups = [c.groups[i] for i in rows] if len(c.groups) == len(c.ids) else []
    sub = Corpus([c.ids[i] for i in rows], [c.titles[i] for i in rows], [c.texts[i] for i in rows], groups)
    joined = sub.joined()
    qpos = {q: i for i, q in enumerate(dataset.query_ids)}
    questions = [dataset.query_texts[qpos[q]] for q in query_ids]
    bm25 = get_retriever("bm25", tokenizer=tokenizer).index(sub)
    idx, _ = bm25.search(questions, min(max(depth, n), len(sub)))
    out: dict[str, list[str]] = {}
    for q, row in zip(query_ids, idx):
        golds = {d for d, g in dataset.qrels.get(q, {}).items() if g > 0}
        answers = dataset.answers.get(q, [])
        picked: list[str] = []
        for j in row:
            if j < 0 or len(picked) >= n:
                break
            d = sub.ids[j]
            if d in golds or contains_answer(joined[j], answers):
                continue
            picked.append(d)
        out[q] = picked
    short = sum(1 for v in out.values() if len(v) < n)
    if short:
        log.info("%s: %d of %d questions got fewer than %d clean hard negatives", dataset.name, short, len(out), n)
    return out


def build_examples(dataset: Dataset, fold: Fold, hard_negatives: int = 1, tokenizer: str = "kiwi",
                   depth: int = 30) -> list[Example]:
    """One example per (training query, gold passage on the training side), in dataset order."""
    train_docs = set(fold.train_doc_ids)
    qpos = {q: i for i, q in enumerate(dataset.query_ids)}
    pairs: list[tuple[str, str]] = []
    for q in fold.train_query_ids:
        for d, g in sorted(dataset.qrels.get(q, {}).items()):
            if g > 0 and d in train_docs:
                pairs.append((q, d))
    if not pairs:
        raise OdqaBenchError(f"{dataset.name} {fold.name}: no training query has a gold passage on the training side")
    queries = list(dict.fromkeys(q for q, _ in pairs))
    negs = mine_hard_negatives(dataset, queries, fold.train_doc_ids, hard_negatives, tokenizer, depth)
    return [Example(q, dataset.query_texts[qpos[q]], d, tuple(negs[q])) for q, d in pairs]
