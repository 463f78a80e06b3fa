"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (header, graded).
Only queries with judgments are kept, as BEIR's GenericDataLoader does."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from ..errors import OdqaBenchError
from .types import Corpus, Dataset
from .validate import validate_dataset

__all__ = ["load_beir", "read_jsonl", "read_qrels_tsv", "write_qrels_trec"]


def _open(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise OdqaBenchError(f"{path}: file not found") from None


def read_jsonl(path: Path, h: hashlib._Hash | None = None) -> list[dict]:
    """Parse a JSONL file; a bad line is reported with its file and line number."""
    raw = _open(path)
    if h is not None:
        h.update(raw)
    rows = []
    for n, line in enumerate(raw.decode("utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OdqaBenchError(f"{path}:{n}: malformed JSON line ({exc.msg})") from None
        if not isinstance(row, dict):
            raise OdqaBenchError(f"{path}:{n}: expected a JSON object per line")
        rows.append(row)
    return rows


def read_qrels_tsv(path: Path, h: hashlib._Hash | None = None) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` with a header line; also accepts TREC
    ``qid 0 docid grade`` rows (four columns, any whitespace)."""
    raw = _open(path)
    if h is not None:
        h.update(raw)
    qrels: dict[str, dict[str, int]] = {}
    lines = raw.decode("utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if n == 1 and parts and parts[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(parts) == 4:
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise OdqaBenchError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}")
        q, d, s = (p.strip() for p in parts)
        try:
            grade = int(float(s))
        except (ValueError, OverflowError):
            raise OdqaBenchError(f"{path}:{n}: score {s!r} is not a finite number") from None
        qrels.setdefault(q, {})[d] = grade
    return qrels


def load_beir(folder: str | Path, split: str = "test", name: str | None = None) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise OdqaBenchError(f"{folder}: BEIR folder not found")
    h = hashlib.sha256()
    corpus_rows = read_jsonl(folder / "corpus.jsonl", h)
    query_rows = read_jsonl(folder / "queries.jsonl", h)
    qrels_all = read_qrels_tsv(folder / "qrels" / f"{split}.tsv", h)
    try:
        ids = [str(r["_id"]) for r in corpus_rows]
        titles = [str(r.get("title") or "") for r in corpus_rows]
        texts = [str(r.get("text") or "") for r in corpus_rows]
        qtext = {str(r["_id"]): str(r["text"]) for r in query_rows}
    except KeyError as exc:
        raise OdqaBenchError(f"{folder}: a corpus or query line lacks the field {exc}") from None
    if len(qtext) != len(query_rows):
        dup = [q for q, c in Counter(str(r["_id"]) for r in query_rows).items() if c > 1]
        raise OdqaBenchError(f"{folder}/queries.jsonl: duplicate query ids, e.g. {dup[:3]}")
    unknown = [q for q in qrels_all if q not in qtext]
    if unknown:
        raise OdqaBenchError(f"{folder}/qrels/{split}.tsv: qrels name unknown queries, e.g. {unknown[:3]}")
    qids = [q for q in qtext if q in qrels_all]
    ds = Dataset(
        name=name or folder.name,
        corpus=Corpus(ids, titles, texts, list(ids)),
        query_ids=qids,
        query_texts=[qtext[q] for q in qids],
        qrels=qrels_all,
        sha256=h.hexdigest(),
        source=str(folder),
    )
    return validate_dataset(ds)


def write_qrels_trec(path: str | Path, qrels: dict[str, dict[str, int]]) -> None:
    """TREC qrels (``qid 0 docid grade``), written atomically; ``read_qrels_tsv`` reads them back."""
    from ..io import atomic_write_text

    lines = [f"{q} 0 {d} {g}" for q, rel in qrels.items() for d, g in sorted(rel.items())]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
