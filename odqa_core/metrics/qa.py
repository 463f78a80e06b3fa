"""Answer metrics: SQuAD EM/F1 (English normalisation) and KorQuAD's character-level F1,
plus 'answer string present in the top-k passages' hits (the seeds' top-k accuracy)."""
from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

from ..retrieval.run import Run

__all__ = ["normalize_squad", "normalize_korquad", "exact_match", "f1", "answer_hits", "best_over_golds"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_squad(s: str) -> str:
    """SQuAD v1.1: lower, drop punctuation and English articles, fold white space."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def normalize_korquad(s: str) -> str:
    """KorQuAD 1.0's evaluate script: drop quote-like marks, fold white space, drop ASCII
    punctuation, lower."""
    s = re.sub(r"'", " ", s)
    s = re.sub(r'"', " ", s)
    s = re.sub(r"《|》|<|>|〈|〉|「|」|『|』|\(|\)|\[|\]|“|”|‘|’|·|\n", " ", s)
    s = " ".join(s.split())
    s = "".join(ch for ch in s if ch not in _PUNCT)
    return s.lower()


def exact_match(pred: str, gold: str, lang: str = "en") -> float:
    norm = normalize_korquad if lang == "ko" else normalize_squad
    return float(norm(pred) == norm(gold))


def f1(pred: str, gold: str, lang: str = "en") -> float:
    """Token F1 (en) or character F1 over the normalised text without spaces (ko)."""
    if lang == "ko":
        p = list("".join(normalize_korquad(pred).split()))
        g = list("".join(normalize_korquad(gold).split()))
    else:
        p = normalize_squad(pred).split()
        g = normalize_squad(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def best_over_golds(pred: str, golds: list[str], lang: str = "en") -> tuple[float, float]:
    """(EM, F1), each the maximum over the gold answers (0 when there are none)."""
    if not golds:
        return 0.0, 0.0
    return max(exact_match(pred, g, lang) for g in golds), max(f1(pred, g, lang) for g in golds)


def answer_hits(run: Run, texts: list[str], answers: dict[str, list[str]]) -> np.ndarray:
    """``(n, K)`` booleans: the rank-r passage contains one of the query's answer strings
    verbatim (the 'answer present' hit definition of DPR-style top-k accuracy)."""
    out = np.zeros(run.indices.shape, dtype=bool)
    for i, q in enumerate(run.query_ids):
        golds = [a for a in answers.get(q, []) if a]
        if not golds:
            continue
        for r, j in enumerate(run.indices[i]):
            if j >= 0:
                t = texts[j]
                out[i, r] = any(a in t for a in golds)
    return out
