"""Knowledge-base CSV/TSV (HF RAG's own-knowledge recipe): the ``title`` and ``text`` columns
found by name, optionally split into passages of about ``words`` words each."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from ..errors import OdqaBenchError
from ..io import sha256_bytes
from .types import Corpus

__all__ = ["KB_COLUMNS", "load_kb", "split_words"]

KB_COLUMNS = ("title", "text")


def split_words(text: str, words: int = 100) -> list[str]:
    """Chunks of ``words`` whitespace-separated words (the RAG recipe's ``split_text``)."""
    toks = text.split()
    if not toks:
        return []
    return [" ".join(toks[i : i + words]) for i in range(0, len(toks), words)]


def _shown(cells: Sequence[str]) -> str:
    """A row's first cells for an error line, each cut short."""
    parts = [repr(c if len(c) <= 30 else c[:27] + "...") for c in cells[:4]]
    return ", ".join(parts) + (", ..." if len(cells) > 4 else "")


def _names(cells: Sequence[str]) -> list[str]:
    return [c.strip().lower() for c in cells]


def _column_positions(path: Path, names: list[str], where: str) -> tuple[int, int]:
    """Where ``title`` and ``text`` sit among ``names``; each must appear exactly once."""
    for need in KB_COLUMNS:
        if names.count(need) > 1:
            raise OdqaBenchError(f"{path}: {where} names the column {need!r} {names.count(need)} times")
    return names.index("title"), names.index("text")


def load_kb(path: str | Path, split: int | None = None, columns: Sequence[str] | None = None) -> tuple[Corpus, str]:
    """Read a knowledge base whose header row names a ``title`` and a ``text`` column (any order,
    other columns ignored). The first line decides the delimiter: tab if it holds one, else comma.
    A headerless file needs ``columns``, its column names in order, as the RAG recipe reads its
    TSV with ``column_names=["title", "text"]``. Returns the corpus and the file's sha256;
    passage ids are ``<row>-<chunk>``, rows counted without the header."""
    path = Path(path)
    raw, rows = _read_rows(path)
    names, where, rows = _columns(path, rows, columns)
    return _passages(path, rows, names, where, split), sha256_bytes(raw)


Row = tuple[int, list[str]]  # (file line the row ends on, its cells)


def _read_rows(path: Path) -> tuple[bytes, list[Row]]:
    """The file's bytes and its non-blank rows, tab- or comma-separated as its first line says."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OdqaBenchError(f"{path}: file not found") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OdqaBenchError(f"{path}: not UTF-8 text") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delim = "\t" if "\t" in first else ","
    kind = "TSV" if delim == "\t" else "CSV"
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        # line_num: the file line the row ends on (a quoted field may span lines)
        rows = [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except csv.Error as exc:
        raise OdqaBenchError(f"{path}: unreadable {kind} ({exc})") from None
    if not rows:
        raise OdqaBenchError(f"{path}: the knowledge base is empty")
    return raw, rows


def _columns(path: Path, rows: list[Row], columns: Sequence[str] | None) -> tuple[list[str], str, list[Row]]:
    """The column names (from the header row, or ``columns`` for a headerless file), where they
    came from (for error lines), and the data rows."""
    if columns is None:
        line, header = rows[0]
        names = _names(header)
        if not set(KB_COLUMNS) <= set(names):
            missing = [repr(c) for c in KB_COLUMNS if c not in names]
            lack = f"no {missing[0]} column; " if len(missing) == 1 else ""
            raise OdqaBenchError(
                f"{path}:{line}: no header row naming the columns 'title' and 'text' ({lack}the first line "
                f"holds {_shown(header)}); add one, or name a headerless file's columns with --kb_columns title,text")
        return names, "the header row", rows[1:]
    names = _names(columns)
    if not set(KB_COLUMNS) <= set(names):
        raise OdqaBenchError(f"column names {_shown(list(columns))} lack 'title' or 'text'")
    if set(KB_COLUMNS) <= set(_names(rows[0][1])):
        raise OdqaBenchError(f"{path}:{rows[0][0]}: the first line is a header ({_shown(rows[0][1])}), but column "
                             "names were given for a headerless file; drop --kb_columns")
    return names, "--kb_columns", rows


def _passages(path: Path, rows: list[Row], names: list[str], where: str, split: int | None) -> Corpus:
    """One passage per row, or per ``split``-word chunk of its text, ids ``<row>-<chunk>``."""
    i_title, i_text = _column_positions(path, names, where)
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    for n, (line, row) in enumerate(rows, 1):
        if len(row) != len(names):
            raise OdqaBenchError(f"{path}:{line}: expected {len(names)} columns ({', '.join(names)}), got {len(row)}")
        title, body = row[i_title].strip(), row[i_text].strip()
        chunks = split_words(body, split) if split else [body]
        for c, chunk in enumerate(chunks):
            ids.append(f"{n}-{c}")
            titles.append(title)
            texts.append(chunk)
    if not ids:
        raise OdqaBenchError(f"{path}: the knowledge base is empty")
    return Corpus(ids, titles, texts, list(titles))
