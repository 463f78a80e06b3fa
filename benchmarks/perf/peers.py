"""Other BM25 engines, timed beside ours over the same token lists: PISA (through
``pyterrier-pisa``, block-max WAND) and tantivy, where they are installed (``pip install
-e '.[engines]'``, or ``tox -e peers``).

Tokens: both engines index the token lists our retriever indexes, never their own analysis
(PISA's text tokenizer drops Hangul). PISA takes them as term-count dictionaries with no stemmer
and no stopwords, at our k1 and b; tantivy takes them as whitespace-separated text under its
``whitespace`` tokenizer, and scores with its fixed BM25 (k1 1.2, b 0.75). Each search answers
one batch of queries on one thread and returns every query's top-k document positions.
"""
from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENGINES = {"pisa": "pyterrier_pisa", "tantivy": "tantivy"}
TANTIVY_K1, TANTIVY_B = 1.2, 0.75


@dataclass
class PeerIndex:
    """A built peer index: ``search(query_tokens, k)`` -> per-query arrays of document positions."""

    name: str
    search: Callable[[list[list[str]], int], list[np.ndarray]]


def installed(name: str) -> bool:
    """Whether the peer engine ``name`` can be imported here."""
    return importlib.util.find_spec(ENGINES[name]) is not None


def build_peer(name: str, doc_tokens: list[list[str]], workdir: Path, k1: float, b: float) -> PeerIndex:
    """Index ``doc_tokens`` (position = document) with the peer ``name`` under ``workdir``."""
    if name == "pisa":
        return _build_pisa(doc_tokens, workdir / "pisa", k1, b)
    if name == "tantivy":
        return _build_tantivy(doc_tokens, workdir / "tantivy")
    raise ValueError(f"unknown peer engine {name!r}; known: {', '.join(ENGINES)}")


def _build_pisa(doc_tokens: list[list[str]], path: Path, k1: float, b: float) -> PeerIndex:
    import pandas as pd
    from pyterrier_pisa import PisaIndex

    index = PisaIndex(str(path), stemmer="none", stops="none", threads=1)
    index.toks_indexer(scale=1.0).index({"docno": str(i), "toks": dict(Counter(toks))}
                                        for i, toks in enumerate(doc_tokens))
    retrievers: dict[int, object] = {}

    def search(query_tokens: list[list[str]], k: int) -> list[np.ndarray]:
        if k not in retrievers:
            retrievers[k] = index.bm25(k1=k1, b=b, num_results=k, threads=1, toks_scale=1.0)
        frame = pd.DataFrame({"qid": [str(i) for i in range(len(query_tokens))],
                              "query_toks": [dict(Counter(q)) for q in query_tokens]})
        res = retrievers[k](frame)
        qidx = res["qid"].astype(int).to_numpy()
        docs = res["docno"].astype(int).to_numpy()
        order = np.lexsort((res["rank"].to_numpy(), qidx))
        cuts = np.searchsorted(qidx[order], np.arange(len(query_tokens) + 1))
        return [docs[order[cuts[i]:cuts[i + 1]]] for i in range(len(query_tokens))]

    return PeerIndex("pisa", search)


def _build_tantivy(doc_tokens: list[list[str]], path: Path) -> PeerIndex:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    schema = builder.build()
    path.mkdir(parents=True, exist_ok=True)
    index = tantivy.Index(schema, path=str(path))
    writer = index.writer(heap_size=1 << 30, num_threads=1)
    for toks in doc_tokens:
        writer.add_document(tantivy.Document(body=" ".join(toks)))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    if searcher.num_segments != 1:  # document positions are doc ids only inside one segment
        raise RuntimeError(f"tantivy wrote {searcher.num_segments} segments; expected 1")
    should = tantivy.Occur.Should

    def query(toks: list[str]) -> object:
        return tantivy.Query.boolean_query([(should, tantivy.Query.term_query(schema, "body", t)) for t in toks])

    def search(query_tokens: list[list[str]], k: int) -> list[np.ndarray]:
        out = []
        for toks in query_tokens:
            hits = searcher.search(query(toks), limit=k, count=False).hits if toks else []
            out.append(np.fromiter((addr.doc for _, addr in hits), dtype=np.int64, count=len(hits)))
        return out

    return PeerIndex("tantivy", search)
