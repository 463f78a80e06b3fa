"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (header, graded).
Only queries with judgments are kept, as BEIR's GenericDataLoader does."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import OdqaBenchError, quote_line
from ..io import read_input_bytes
from .types import Corpus, Dataset
from .validate import validate_dataset

__all__ = ["load_beir", "read_jsonl", "read_qrels_tsv", "write_qrels_trec"]


def read_jsonl(path: Path, h: hashlib._Hash | None = None) -> list[dict]:
    """Parse a JSONL file; a bad line is reported with its file and line number."""
    raw = read_input_bytes(path)
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


BEIR_HEADER_FIRST = frozenset({"query-id", "query_id", "qid"})


@dataclass(frozen=True)
class _QrelsFormat:
    """One qrels layout: how a line splits, its columns, and where query, doc and grade sit."""

    name: str
    sep: str | None  # None: any run of whitespace
    columns: tuple[str, ...]
    at: tuple[int, int, int]  # query, document, grade
    header: bool

    def split(self, line: str) -> list[str]:
        return [p.strip() for p in line.split(self.sep)] if self.sep else line.split()


def _qrels_format(path: Path, n: int, line: str) -> _QrelsFormat:
    """The format of a whole qrels file, from its first non-blank line."""
    sep = "\t" if "\t" in line else None
    head = [p.strip() for p in line.split(sep)] if sep else line.split()
    if head[0].lower() in BEIR_HEADER_FIRST:
        if len(head) != 3:
            raise OdqaBenchError(f"{path}:{n}: a BEIR qrels header has 3 columns (query-id, corpus-id, score), "
                                 f"got {len(head)}: {quote_line(line)}")
        return _QrelsFormat("BEIR qrels", sep, ("query-id", "corpus-id", "score"), (0, 1, 2), True)
    words = line.split()
    if len(words) == 4:
        return _QrelsFormat("TREC qrels", None, ("qid", "iter", "docid", "grade"), (0, 2, 3), False)
    if len(words) == 6:
        hint = "this looks like a TREC run (qid Q0 docid rank score tag), not qrels"
    elif len(words) == 3:
        hint = "3 columns need the BEIR header line 'query-id<TAB>corpus-id<TAB>score' first"
    else:
        hint = "expected TREC qrels 'qid 0 docid grade' or BEIR qrels under the header 'query-id<TAB>corpus-id<TAB>score'"
    raise OdqaBenchError(f"{path}:{n}: unrecognised qrels format ({hint}): {quote_line(line)}")


def _grade(text: str) -> int:
    """An integer relevance grade; ``2.0`` is 2, ``1.5``, ``inf`` or ``yes`` are refused."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # ValueError for words; inf/nan fail the test below
        if not value.is_integer():
            raise ValueError(text) from None
        return int(value)


def read_qrels_tsv(path: Path, h: hashlib._Hash | None = None) -> dict[str, dict[str, int]]:
    """Graded qrels in one format, detected from the first non-blank line: BEIR's
    ``query-id<TAB>corpus-id<TAB>score`` under that header, or TREC ``qid 0 docid grade`` (any
    whitespace, no header). A line that does not fit that format is an error with its file, line
    number and text; no line is read under another format, so a file cut mid-line is refused."""
    raw = read_input_bytes(path)
    if h is not None:
        h.update(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OdqaBenchError(f"{path}: not UTF-8 text") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        return {}
    n0, first = lines[0]
    fmt = _qrels_format(path, n0, first)
    qrels: dict[str, dict[str, int]] = {}
    for n, line in lines[1:] if fmt.header else lines:
        parts = fmt.split(line)
        if len(parts) != len(fmt.columns) or not all(parts):
            sep = "tab-separated " if fmt.sep else ""
            raise OdqaBenchError(f"{path}:{n}: expected {len(fmt.columns)} {sep}columns ({', '.join(fmt.columns)}) "
                                 f"of {fmt.name}, the format of line {n0}, got {len(parts)}: {quote_line(line)}")
        q, d, s = (parts[i] for i in fmt.at)
        try:
            grade = _grade(s)
        except (ValueError, OverflowError):
            raise OdqaBenchError(f"{path}:{n}: score {s!r} is not an integer grade: {quote_line(line)}") from None
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
