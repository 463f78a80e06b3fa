"""A small retriever of someone else's making: idf-weighted word overlap between a query and each
passage, in plain numpy. It joins odqa-bench through the entry points in pyproject.toml."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class OverlapRetriever:
    """Scores a passage by the summed idf of the words it shares with the query."""

    name = "overlap"

    def __init__(self, min_idf: float = 0.0) -> None:
        self.min_idf = min_idf

    def index(self, corpus):
        docs = [_words(f"{t} {x}") for t, x in zip(corpus.titles, corpus.texts)]
        vocab = sorted(set().union(*docs)) if docs else []
        self._col = {w: i for i, w in enumerate(vocab)}
        self._m = np.zeros((len(docs), len(vocab)), dtype=np.float32)
        for r, d in enumerate(docs):
            self._m[r, [self._col[w] for w in d]] = 1.0
        df = self._m.sum(axis=0)
        idf = np.log((len(docs) + 1) / (df + 1)) + 1.0
        self._idf = np.where(idf >= self.min_idf, idf, 0.0).astype(np.float32)
        return self

    def search(self, queries: list[str], k: int):
        q = np.zeros((len(queries), len(self._col)), dtype=np.float32)
        for r, text in enumerate(queries):
            q[r, [self._col[w] for w in _words(text) if w in self._col]] = 1.0
        scores = (q * self._idf) @ self._m.T
        if os.environ.get("MY_RETRIEVER_DEGRADE"):  # a deliberate regression, for the demo
            scores = -scores
        k = min(k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(scores, order, axis=1)


def overlap_retriever(min_idf: float = 0.0) -> OverlapRetriever:
    """``odqa-bench run --retriever overlap:min_idf=1.5``: idf-weighted word overlap."""
    return OverlapRetriever(min_idf=min_idf)


def my_facts(data_folder=None):
    """The dataset this project ships, in BEIR format (corpus, queries, qrels/test.tsv)."""
    from odqa_core.data.beir import load_beir

    return load_beir(Path(__file__).parent / "data", name="my-facts")
