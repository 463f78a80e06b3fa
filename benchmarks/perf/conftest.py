"""Fixtures shared by the perf suites: SciFact tokenised once for every engine and a whitespace
tokenizer that feeds those tokens through our retrievers unchanged.

Speed ratios compare engines, not tokenizers: every engine gets the same token lists, ours as
space-joined text split back by :class:`PretokenizedTokenizer` (tokens never hold spaces).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from odqa_core.bench import require_dataset
from odqa_core.data.types import Corpus, Dataset
from odqa_core.retrieval import sparse
from odqa_core.text import TOKENIZERS, get_tokenizer, tokenize_cached

PRETOK = "pretok"
SCIFACT_TOKENIZER = "regex-stem"


@dataclass
class PretokenizedTokenizer:
    """Splits space-joined token lists back into the lists: lets a retriever take tokens made
    elsewhere while its own ``index``/``search`` code runs unchanged."""

    name: str = PRETOK

    @property
    def fingerprint(self) -> str:
        return "pretok:whitespace:v1"

    def __call__(self, texts: list[str]) -> list[list[str]]:
        return [t.split() for t in texts]


@contextmanager
def pretokenized_retrievers() -> Iterator[str]:
    """Register the ``pretok`` tokenizer and bypass the on-disk token cache inside the sparse
    retrievers, so index timings measure the engine (no pickle round trip)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TOKENIZERS, PRETOK, PretokenizedTokenizer)
        mp.setattr(sparse, "tokenize_cached", lambda tok, texts, corpus_sha=None: tok(texts))
        yield PRETOK


@dataclass(frozen=True)
class TokenizedSet:
    """A dataset tokenised once: token lists for the peers, the same tokens as space-joined
    text (``corpus``, ``queries``) for our retrievers."""

    dataset: Dataset
    doc_tokens: list[list[str]]
    query_tokens: list[list[str]]
    corpus: Corpus
    queries: list[str]


def _no_space(token: str) -> str:
    """A token with its inner whitespace joined by U+2581 (Kiwi keeps some multi-word nouns as one
    token): every engine gets the same whitespace-free token."""
    return "\u2581".join(token.split())


def tokenized_set(ds: Dataset, tokenizer: str) -> TokenizedSet:
    """Tokenise ``ds`` with ``tokenizer`` (corpus through the token cache). Empty tokens are
    dropped and inner whitespace joined, since space-joined text cannot carry them and every
    engine must see the same lists."""
    tok = get_tokenizer(tokenizer)
    docs = [[_no_space(t) for t in d if t.strip()] for d in tokenize_cached(tok, ds.corpus.joined(), ds.sha256 or None)]
    queries = [[_no_space(t) for t in q if t.strip()] for q in tok(list(ds.query_texts))]
    texts = [" ".join(d) for d in docs]
    joined = [" ".join(q) for q in queries]
    corpus = Corpus(list(ds.corpus.ids), [""] * len(docs), texts, list(ds.corpus.groups))
    return TokenizedSet(ds, docs, queries, corpus, joined)


@pytest.fixture(autouse=True, scope="module")
def _drop_module_caches(request: pytest.FixtureRequest) -> Iterator[None]:
    """A perf module's cached encoders, sessions and corpora serve only its own cells: drop them
    when it ends, so the next module's peak memory does not stack on them (the root conftest
    then hands the freed heap back)."""
    yield
    mod = request.module
    for obj in list(vars(mod).values()):
        if callable(getattr(obj, "cache_clear", None)) and getattr(obj, "__module__", None) == mod.__name__:
            obj.cache_clear()


@pytest.fixture(scope="session")
def scifact() -> Dataset:
    """BEIR SciFact test split; without the data folder the suite skips, and fails on CI."""
    return require_dataset("scifact")


@pytest.fixture(scope="session")
def scifact_tokens(scifact: Dataset) -> TokenizedSet:
    """SciFact tokenised once with the Lucene-English tokenizer, shared by every engine."""
    return tokenized_set(scifact, SCIFACT_TOKENIZER)


@pytest.fixture(scope="session")
def korquad_open_tokens() -> TokenizedSet:
    """korquad-open tokenised once into Kiwi morphemes (the token cache keeps them across runs)."""
    return tokenized_set(require_dataset("korquad-open"), "kiwi")


@pytest.fixture(scope="module")
def pretok() -> Iterator[str]:
    """The name of the whitespace tokenizer, registered for the module's tests."""
    with pretokenized_retrievers() as name:
        yield name


