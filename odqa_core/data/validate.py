"""Checks every loader runs before handing a Dataset on: non-empty, unique ids, qrels that
name known queries and documents. One clear error instead of a silent zero later."""
from __future__ import annotations

from collections import Counter

from ..errors import OdqaBenchError
from .types import Dataset

__all__ = ["validate_dataset"]


def _dupes(ids: list[str]) -> list[str]:
    return [k for k, n in Counter(ids).items() if n > 1]


def validate_dataset(ds: Dataset) -> Dataset:
    where = ds.source or ds.name
    if len(ds.corpus) == 0:
        raise OdqaBenchError(f"{where}: the corpus is empty")
    if ds.n_queries == 0:
        raise OdqaBenchError(f"{where}: no queries with relevance judgments")
    if d := _dupes(ds.corpus.ids):
        raise OdqaBenchError(f"{where}: duplicate document ids, e.g. {d[:3]}")
    if d := _dupes(ds.query_ids):
        raise OdqaBenchError(f"{where}: duplicate query ids, e.g. {d[:3]}")
    docs = set(ds.corpus.ids)
    queries = set(ds.query_ids)
    unknown_q = [q for q in ds.qrels if q not in queries]
    if unknown_q:
        raise OdqaBenchError(f"{where}: qrels name unknown queries, e.g. {unknown_q[:3]}")
    unknown_d = sorted({d for rel in ds.qrels.values() for d in rel if d not in docs})
    if unknown_d:
        raise OdqaBenchError(f"{where}: qrels name unknown documents, e.g. {unknown_d[:3]}")
    return ds
