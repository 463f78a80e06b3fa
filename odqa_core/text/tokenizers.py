"""Named tokenizers: a unicode regex word tokenizer (with a Lucene-English variant: possessives,
33 stopwords, Porter stems), Korean morphemes with Kiwi, and character n-grams.

A tokenizer maps a list of texts to a list of token lists; its ``fingerprint`` names every
setting that changes its output, so token caches and baselines key on it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import OdqaBenchError
from ..memory import forgettable

__all__ = ["Tokenizer", "get_tokenizer", "TOKENIZERS", "LUCENE_STOPWORDS"]

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (what Anserini's default analyzer removes).
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_WORD = re.compile(r"\w+(?:[.'’]\w+)*")
_SIMPLE = re.compile(r"\w+")


class Tokenizer(Protocol):
    name: str

    @property
    def fingerprint(self) -> str: ...

    def __call__(self, texts: list[str]) -> list[list[str]]: ...


@dataclass
class RegexTokenizer:
    """Lowercased ``\\w+`` words; ``lucene=True`` follows Lucene's English analyzer instead
    (UAX#29-like words, possessive ``'s`` dropped, stopwords, Porter stemming)."""

    name: str = "regex"
    lucene: bool = False
    stopwords: bool = False
    stem: bool = False
    _stemmer: object = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        return f"regex:lucene={self.lucene}:stop={self.stopwords}:stem={self.stem}:v2"

    def _words(self, text: str) -> list[str]:
        text = text.lower()
        if not self.lucene:
            return _SIMPLE.findall(text)
        out = []
        for w in _WORD.findall(text):
            if w.endswith(("'s", "’s")):
                w = w[:-2]
            out.append(w)
        return out

    def __call__(self, texts: list[str]) -> list[list[str]]:
        stop = LUCENE_STOPWORDS if self.stopwords else frozenset()
        stem = None
        if self.stem:
            if self._stemmer is None:
                try:
                    import Stemmer
                except ImportError:
                    raise OdqaBenchError("tokenizer 'regex-stem' needs PyStemmer: pip install PyStemmer") from None
                self._stemmer = Stemmer.Stemmer("porter")
            stem = self._stemmer.stemWords  # type: ignore[attr-defined]
        out = []
        for t in texts:
            words = [w for w in self._words(t) if w not in stop]
            if stem:
                # Porter (as in Lucene's PorterStemFilter) leaves words of two letters or fewer alone;
                # Snowball's 'porter' would turn 's' into an empty token and 'is' into 'i'
                words = [w if len(w) <= 2 else st for w, st in zip(words, stem(words))]
            out.append(words)
        return out


# Kiwi part-of-speech tags that carry content (particles, endings, affixes, copulas and
# punctuation are dropped; foreign words, numbers and hanja are kept).
_KIWI_DROP_PREFIX = ("J", "E", "XS", "XP", "S")
_KIWI_KEEP_S = {"SH"}
# Latin words and numbers come from the regex, not Kiwi: Kiwi splits some English words that
# end a sentence ('capital.' -> 'ca' + 'pital.').
_NON_HANGUL_WORD = re.compile(r"[^\W_\uac00-\ud7a3\u3131-\u318e\u4e00-\u9fff]+(?:[.'’][^\W_\uac00-\ud7a3]+)*")
_KIWI_DROP = {"VCP", "VCN", "VX", "UN", "SL", "SN"}


@dataclass
class KiwiTokenizer:
    """Korean morphemes from kiwipiepy (its model ships in ``kiwipiepy-model``); content
    morphemes only, lowercased."""

    name: str = "kiwi"
    _kiwi: object = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        try:
            import kiwipiepy

            ver = kiwipiepy.__version__
        except Exception:  # pragma: no cover - reported by __call__
            ver = "?"
        return f"kiwi:{ver}:content-tags:regex-latin:v2"

    @staticmethod
    def _keep(tag: str) -> bool:
        if tag in _KIWI_KEEP_S:
            return True
        if tag in _KIWI_DROP:
            return False
        return not tag.startswith(_KIWI_DROP_PREFIX)

    def __call__(self, texts: list[str]) -> list[list[str]]:
        if self._kiwi is None:
            try:
                from kiwipiepy import Kiwi
            except ImportError:
                raise OdqaBenchError("tokenizer 'kiwi' needs kiwipiepy: pip install kiwipiepy") from None
            self._kiwi = Kiwi(num_workers=min(4, os.cpu_count() or 1))
        keep = self._keep
        results = self._kiwi.tokenize(list(texts))  # type: ignore[attr-defined]
        if len(texts) >= 2000:  # tens of thousands of passages take minutes: show progress
            from ..progress import progress_bar

            results = progress_bar(results, total=len(texts), desc="kiwi", unit="text", mininterval=2.0)
        out = []
        for toks, text in zip(results, texts):
            words = [tok.form.lower() for tok in toks if keep(tok.tag)]
            words.extend(_NON_HANGUL_WORD.findall(text.lower()))
            out.append(words)
        return out


@dataclass
class CharNgramTokenizer:
    """Character n-grams inside each lowercased word (words shorter than n kept whole): robust
    to Korean agglutination without a morphological analyser."""

    n: int = 2
    name: str = "char2"

    @property
    def fingerprint(self) -> str:
        return f"char-ngram:n={self.n}:v1"

    def __call__(self, texts: list[str]) -> list[list[str]]:
        n = self.n
        out = []
        for t in texts:
            grams: list[str] = []
            for w in _SIMPLE.findall(t.lower()):
                if len(w) <= n:
                    grams.append(w)
                else:
                    grams.extend(w[i : i + n] for i in range(len(w) - n + 1))
            out.append(grams)
        return out


TOKENIZERS: dict[str, Callable[[], Tokenizer]] = {
    "regex": lambda: RegexTokenizer("regex"),
    "regex-stop": lambda: RegexTokenizer("regex-stop", lucene=True, stopwords=True),
    "regex-stem": lambda: RegexTokenizer("regex-stem", lucene=True, stopwords=True, stem=True),
    "kiwi": lambda: KiwiTokenizer(),
    "char2": lambda: CharNgramTokenizer(2, "char2"),
    "char3": lambda: CharNgramTokenizer(3, "char3"),
}

_INSTANCES: dict[str, Tokenizer] = {}
forgettable(_INSTANCES.clear)  # Kiwi holds its whole morphological model


def get_tokenizer(name: str) -> Tokenizer:
    """A tokenizer by name (one shared instance per process: Kiwi loads a model)."""
    if name not in TOKENIZERS:
        raise OdqaBenchError(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZERS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = TOKENIZERS[name]()
    return _INSTANCES[name]
