"""Tokenised corpora cached on disk, keyed by the texts' hash and the tokenizer fingerprint:
Kiwi over 30k passages takes minutes, a cache hit a second."""
from __future__ import annotations

import hashlib

from ..cache import cache_key, cached_pickle
from .tokenizers import Tokenizer

__all__ = ["share_strings", "tokenize_cached", "texts_sha256"]

# Below this many texts, tokenising is cheaper than a cache round trip.
MIN_CACHED = 2000


def texts_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def tokenize_cached(tokenizer: Tokenizer, texts: list[str], corpus_sha: str | None = None) -> list[list[str]]:
    """Tokenise ``texts``; corpora of ``MIN_CACHED`` texts or more go through the disk cache."""
    if len(texts) < MIN_CACHED:
        return tokenizer(texts)
    key = cache_key("tokens", corpus_sha or texts_sha256(texts), tokenizer.fingerprint, len(texts))
    return cached_pickle("tokens", key, lambda: share_strings(tokenizer(texts)))


def share_strings(docs: list[list[str]]) -> list[list[str]]:
    """The same token lists with one string object per distinct token: a corpus then holds
    pointers instead of millions of string copies, and pickle writes each token once."""
    seen: dict[str, str] = {}
    share = seen.setdefault
    return [[share(t, t) for t in doc] for doc in docs]
