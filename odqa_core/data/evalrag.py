"""HF RAG ``eval_rag.py`` files: a question file (one per line) and a gold file, either
tab-separated gold titles per line (retrieval), ``question<TAB>['a1', 'a2']`` (qa) or one
answer per line (ans). Gold lists are parsed with ``ast.literal_eval``, never ``eval``."""
from __future__ import annotations

import ast
from pathlib import Path

from ..errors import OdqaBenchError
from ..io import read_input_text

__all__ = ["read_questions", "read_gold_titles", "read_gold_answers"]


def _lines(path: str | Path) -> list[str]:
    return read_input_text(path).splitlines()


def read_questions(path: str | Path) -> list[str]:
    qs = [line.strip() for line in _lines(path)]
    if not qs or not any(qs):
        raise OdqaBenchError(f"{path}: no questions")
    for n, q in enumerate(qs, 1):
        if not q:
            raise OdqaBenchError(f"{path}:{n}: empty question line")
    return qs


def read_gold_titles(path: str | Path, n_expected: int | None = None) -> list[list[str]]:
    """Retrieval gold: the tab-separated titles of relevant passages, one line per question."""
    golds = [[t.strip() for t in line.split("\t") if t.strip()] for line in _lines(path)]
    _check_count(path, golds, n_expected)
    for n, g in enumerate(golds, 1):
        if not g:
            raise OdqaBenchError(f"{path}:{n}: no gold title on this line")
    return golds


def read_gold_answers(path: str | Path, mode: str, n_expected: int | None = None) -> list[list[str]]:
    """e2e gold: ``qa`` lines are ``question<TAB>[answers]``, ``ans`` lines one answer each."""
    if mode not in {"qa", "ans"}:
        raise OdqaBenchError(f"unknown gold_data_mode {mode!r}; choose qa or ans")
    out: list[list[str]] = []
    for n, line in enumerate(_lines(path), 1):
        if mode == "ans":
            out.append([line.strip()] if line.strip() else [])  # a blank line: no gold answer
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise OdqaBenchError(f"{path}:{n}: expected 2 tab-separated columns (question, answer list), got {len(cols)}")
        try:
            answers = ast.literal_eval(cols[1].strip())
        except (ValueError, SyntaxError):
            raise OdqaBenchError(f"{path}:{n}: cannot parse the answer list {cols[1].strip()[:60]!r}") from None
        if not isinstance(answers, (list, tuple)) or not all(isinstance(a, str) for a in answers):
            raise OdqaBenchError(f"{path}:{n}: the answer column must be a list of strings")
        out.append(list(answers))
    _check_count(path, out, n_expected)
    return out


def _check_count(path: str | Path, rows: list, n_expected: int | None) -> None:
    if n_expected is not None and len(rows) != n_expected:
        raise OdqaBenchError(f"{path}: {len(rows)} gold lines for {n_expected} questions; they must match line for line")
