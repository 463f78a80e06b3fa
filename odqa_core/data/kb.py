"""Knowledge-base CSV/TSV with ``title`` and ``text`` columns (HF RAG's own-knowledge recipe),
optionally split into passages of about ``words`` words each."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import OdqaBenchError
from ..io import sha256_bytes
from .types import Corpus

__all__ = ["load_kb", "split_words"]


def split_words(text: str, words: int = 100) -> list[str]:
    """Chunks of ``words`` whitespace-separated words (the RAG recipe's ``split_text``)."""
    toks = text.split()
    if not toks:
        return []
    return [" ".join(toks[i : i + words]) for i in range(0, len(toks), words)]


def load_kb(path: str | Path, split: int | None = None) -> tuple[Corpus, str]:
    """Read ``title,text`` rows (``.csv`` comma, ``.tsv`` tab; a header row is optional).
    Returns the corpus and the file's sha256. Passage ids are ``<row>-<chunk>``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OdqaBenchError(f"{path}: file not found") from None
    delim = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8")), delimiter=delim)
        rows = [(reader.line_num, row) for row in reader]  # line_num: the file line the row ends on
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OdqaBenchError(f"{path}: unreadable {'TSV' if delim == chr(9) else 'CSV'} ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["title", "text"]:
        rows = rows[1:]
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    for n, (line, row) in enumerate(rows, 1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2:
            raise OdqaBenchError(f"{path}:{line}: expected 2 columns (title, text), got {len(row)}")
        title, text = row[0].strip(), row[1].strip()
        chunks = split_words(text, split) if split else [text]
        for c, chunk in enumerate(chunks):
            ids.append(f"{n}-{c}")
            titles.append(title)
            texts.append(chunk)
    if not ids:
        raise OdqaBenchError(f"{path}: the knowledge base is empty")
    return Corpus(ids, titles, texts, list(titles)), sha256_bytes(raw)
