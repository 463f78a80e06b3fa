"""Tokenizers by name, and a cache for tokenised corpora."""
from __future__ import annotations

from .cache import tokenize_cached
from .tokenizers import LUCENE_STOPWORDS, TOKENIZERS, Tokenizer, get_tokenizer

__all__ = ["LUCENE_STOPWORDS", "TOKENIZERS", "Tokenizer", "get_tokenizer", "tokenize_cached"]
