"""Deterministic synthetic corpora for scale tests: Zipfian words made of random syllables,
log-normal passage lengths, and queries drawn from one target passage (its known gold).

Real corpora stop at a few thousand passages here; a generated one can be grown to any size with
the same statistics, so cost against corpus size can be measured on a like-for-like basis.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .data.types import Corpus, Dataset
from .errors import OdqaBenchError

__all__ = ["SyntheticSpec", "syllable_vocabulary", "zipf_probabilities", "synthetic_dataset", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1

_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "ch", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")


@dataclass(frozen=True)
class SyntheticSpec:
    """Every setting that changes the generated dataset (its ``name`` encodes them all)."""

    n_docs: int
    n_queries: int = 200
    vocab_size: int = 50_000
    zipf: float = 1.1
    mean_len: float = 80.0
    len_sigma: float = 0.5
    min_query_words: int = 3
    max_query_words: int = 8
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.n_docs >= 1, f"n_docs must be >= 1, got {self.n_docs}"),
            (self.n_queries >= 0, f"n_queries must be >= 0, got {self.n_queries}"),
            (self.vocab_size >= 10, f"vocab_size must be >= 10, got {self.vocab_size}"),
            (self.zipf > 0, f"zipf exponent must be > 0, got {self.zipf}"),
            (self.mean_len >= 1, f"mean_len must be >= 1, got {self.mean_len}"),
            (self.len_sigma >= 0, f"len_sigma must be >= 0, got {self.len_sigma}"),
            (1 <= self.min_query_words <= self.max_query_words,
             f"query words must satisfy 1 <= min <= max, got {self.min_query_words}..{self.max_query_words}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise OdqaBenchError(f"synthetic corpus: {msg}")

    @property
    def name(self) -> str:
        return (f"synthetic-v{GENERATOR_VERSION}-n{self.n_docs}-q{self.n_queries}-v{self.vocab_size}"
                f"-z{self.zipf:g}-len{self.mean_len:g}x{self.len_sigma:g}"
                f"-qw{self.min_query_words}-{self.max_query_words}-s{self.seed}")


def syllable_vocabulary(size: int, seed: int = 0) -> list[str]:
    """``size`` distinct lowercase words of one to four consonant-vowel syllables; frequent ranks
    come first and get the shorter words, as in natural language."""
    if size < 1:
        raise OdqaBenchError(f"synthetic vocabulary: size must be >= 1, got {size}")
    syllables = np.array([o + v for o in _ONSETS for v in _VOWELS])
    rng = np.random.default_rng([seed, 1])
    seen: dict[str, None] = {}
    n_syll = 1
    while len(seen) < size:
        if n_syll <= 2:  # enumerate all short words in a seeded order
            grid = np.array(np.meshgrid(*[np.arange(len(syllables))] * n_syll, indexing="ij")).reshape(n_syll, -1).T
            cand = grid[rng.permutation(len(grid))]
        else:
            cand = rng.integers(0, len(syllables), size=(max(2 * (size - len(seen)), 64), n_syll))
        for row in cand:
            seen.setdefault("".join(syllables[row]), None)
            if len(seen) == size:
                break
        n_syll = min(n_syll + 1, 4)
    return list(seen)


def zipf_probabilities(size: int, exponent: float) -> np.ndarray:
    """Probabilities of ranks 1..size proportional to ``rank ** -exponent``."""
    p = np.arange(1, size + 1, dtype=np.float64) ** -float(exponent)
    return p / p.sum()


def synthetic_dataset(n_docs: int, n_queries: int = 200, *, vocab_size: int = 50_000, zipf: float = 1.1,
                      mean_len: float = 80.0, len_sigma: float = 0.5, min_query_words: int = 3,
                      max_query_words: int = 8, seed: int = 0) -> Dataset:
    """A ``Dataset`` of ``n_docs`` passages and ``n_queries`` queries, each query 3-8 words of
    one passage (qrels: that passage, grade 1). Same arguments, same bytes."""
    spec = SyntheticSpec(n_docs, n_queries, vocab_size, zipf, mean_len, len_sigma, min_query_words,
                         max_query_words, seed)
    spec.validate()
    vocab = syllable_vocabulary(vocab_size, seed)
    rng = np.random.default_rng([seed, 2, n_docs])
    mu = np.log(mean_len) - len_sigma**2 / 2.0  # so the mean length is ``mean_len``
    lengths = np.clip(np.rint(rng.lognormal(mu, len_sigma, size=n_docs)), 1, None).astype(np.int64)
    cdf = np.cumsum(zipf_probabilities(vocab_size, zipf))
    cdf[-1] = 1.0
    words = np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right")
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    flat = words.tolist()
    texts = [" ".join(vocab[w] for w in flat[bounds[i]:bounds[i + 1]]) for i in range(n_docs)]
    width = len(str(n_docs - 1))
    ids = [f"d{i:0{width}d}" for i in range(n_docs)]

    qrng = np.random.default_rng([seed, 3, n_docs, n_queries])
    targets = qrng.choice(n_docs, size=n_queries, replace=n_queries > n_docs)
    qwidth = len(str(max(n_queries - 1, 0)))
    query_ids, query_texts, qrels = [], [], {}
    for j, d in enumerate(targets.tolist()):
        doc = flat[bounds[d]:bounds[d + 1]]
        n_words = min(int(qrng.integers(min_query_words, max_query_words + 1)), len(doc))
        pos = np.sort(qrng.choice(len(doc), size=n_words, replace=False))
        qid = f"q{j:0{qwidth}d}"
        query_ids.append(qid)
        query_texts.append(" ".join(vocab[doc[p]] for p in pos.tolist()))
        qrels[qid] = {ids[d]: 1}

    h = hashlib.sha256(spec.name.encode())
    for t in texts + query_texts:
        h.update(t.encode())
        h.update(b"\x00")
    corpus = Corpus(ids, [""] * n_docs, texts, [])
    return Dataset(spec.name, corpus, query_ids, query_texts, qrels, {}, h.hexdigest(), "synthetic")
