"""``Run``: ranked doc indices and scores for a batch of queries, as ``(n, k)`` arrays.

Rows are in trec_eval order (score descending, ties by doc id descending), padded with
index -1 / score -inf where a retriever returns fewer than k documents. ``to_dict`` gives the
BEIR/pytrec_eval/ranx shape; ``read_trec``/``write_trec`` speak the TREC run format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OdqaBenchError, quote_line
from ..io import atomic_write_text, read_input_text

__all__ = ["Run", "tie_keys", "topk"]


def tie_keys(doc_ids: list[str] | np.ndarray) -> np.ndarray:
    """Per-document tie-break key: 0 for the largest doc id (trec_eval breaks score ties by
    doc id in descending string order)."""
    order = np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")[::-1]
    key = np.empty(len(order), dtype=np.int64)
    key[order] = np.arange(len(order))
    return key


def topk(scores: np.ndarray, k: int, ties: np.ndarray, positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of a dense ``(n, N)`` score matrix, ties broken by ``ties``
    (smaller first). ``positive_only`` drops documents scoring <= 0 (lexical retrievers return
    only documents that share a term with the query, as Lucene does)."""
    n, N = scores.shape
    kk = min(k, N)
    idx_out = np.full((n, k), -1, dtype=np.int64)
    sc_out = np.full((n, k), -np.inf, dtype=np.float64)
    if n == 0 or kk == 0:
        return idx_out, sc_out
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_sc = np.take_along_axis(scores, part, axis=1)
    kth = part_sc.min(axis=1)
    n_ge = (scores >= kth[:, None]).sum(axis=1)
    clean = n_ge == kk  # no tie straddles the cut-off
    if clean.any():
        p, s = part[clean], part_sc[clean]
        order = np.lexsort((ties[p], -s), axis=-1)
        idx_out[clean, :kk] = np.take_along_axis(p, order, axis=1)
        sc_out[clean, :kk] = np.take_along_axis(s, order, axis=1)
    for r in np.flatnonzero(~clean):
        row = scores[r]
        thr = kth[r]
        cand = np.flatnonzero(row > 0) if (positive_only and thr <= 0) else np.flatnonzero(row >= thr)
        order = np.lexsort((ties[cand], -row[cand]))[:kk]
        sel = cand[order]
        idx_out[r, : len(sel)] = sel
        sc_out[r, : len(sel)] = row[sel]
    if positive_only:
        drop = sc_out <= 0
        idx_out[drop] = -1
        sc_out[drop] = -np.inf
    return idx_out, sc_out


@dataclass
class Run:
    """A ranked result list per query. ``doc_ids[indices[i, r]]`` is query i's rank-r doc."""

    query_ids: list[str]
    doc_ids: np.ndarray
    indices: np.ndarray
    scores: np.ndarray
    name: str = "run"

    def __post_init__(self) -> None:
        self.doc_ids = np.asarray(self.doc_ids, dtype=object)
        if self.indices.shape != self.scores.shape or self.indices.shape[0] != len(self.query_ids):
            raise ValueError("Run: indices, scores and query_ids disagree in shape")

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def ranked(self, i: int) -> list[str]:
        row = self.indices[i]
        return [self.doc_ids[j] for j in row if j >= 0]

    def truncate(self, k: int) -> Run:
        return Run(self.query_ids, self.doc_ids, self.indices[:, :k], self.scores[:, :k], self.name)

    def to_dict(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for i, q in enumerate(self.query_ids):
            out[q] = {self.doc_ids[j]: float(s) for j, s in zip(self.indices[i], self.scores[i]) if j >= 0}
        return out

    @classmethod
    def from_dict(cls, results: dict[str, dict[str, float]], name: str = "run", k: int | None = None) -> Run:
        """Build from ``{qid: {docid: score}}``, ordering each query the way trec_eval does."""
        all_docs = sorted({d for r in results.values() for d in r})
        pos = {d: i for i, d in enumerate(all_docs)}
        width = k or max((len(r) for r in results.values()), default=0)
        qids = list(results)
        idx = np.full((len(qids), width), -1, dtype=np.int64)
        sc = np.full((len(qids), width), -np.inf, dtype=np.float64)
        for i, q in enumerate(qids):
            items = sorted(results[q].items(), key=lambda kv: (-kv[1], _neg(kv[0])))[:width]
            for r, (d, s) in enumerate(items):
                idx[i, r] = pos[d]
                sc[i, r] = s
        return cls(qids, np.asarray(all_docs, dtype=object), idx, sc, name)

    def write_trec(self, path: str | Path, tag: str | None = None) -> None:
        """``qid Q0 docid rank score tag`` lines, written atomically."""
        tag = tag or self.name
        lines = []
        for i, q in enumerate(self.query_ids):
            for r, (j, s) in enumerate(zip(self.indices[i], self.scores[i]), 1):
                if j >= 0:
                    lines.append(f"{q} Q0 {self.doc_ids[j]} {r} {s:.10g} {tag}")
        atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))

    @classmethod
    def read_trec(cls, path: str | Path) -> Run:
        """Read a TREC run, ``qid Q0 docid rank score tag`` on every line. A line that does not
        fit is an error with its file, line number and text (a file cut mid-line is refused)."""
        path = Path(path)
        text = read_input_text(path, "a TREC run file", encoding="utf-8-sig")
        results: dict[str, dict[str, float]] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{path}:{n}"
            if len(parts) != 6:
                raise OdqaBenchError(f"{where}: expected 6 columns 'qid Q0 docid rank score tag' of a TREC run, "
                                     f"got {len(parts)}: {quote_line(line)}")
            try:
                int(parts[3])
            except ValueError:
                raise OdqaBenchError(f"{where}: rank {parts[3]!r} is not an integer: {quote_line(line)}") from None
            try:
                score = float(parts[4])
                if math.isnan(score):
                    raise ValueError(parts[4])
            except ValueError:
                raise OdqaBenchError(f"{where}: score {parts[4]!r} is not a number: {quote_line(line)}") from None
            q, d = parts[0], parts[2]
            if d in results.setdefault(q, {}):
                raise OdqaBenchError(f"{where}: document {d} listed twice for query {q}")
            results[q][d] = score
        if not results:
            raise OdqaBenchError(f"{path}: the run is empty")
        return cls.from_dict(results, name=path.stem)


class _neg(str):
    """A string that sorts in reverse (doc id descending for ties)."""

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)
