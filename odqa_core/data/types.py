"""The values the data layer hands on: a corpus, queries, graded qrels and answers."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Corpus", "Dataset"]


@dataclass(frozen=True)
class Corpus:
    """Parallel lists of passage ids, titles and texts; ``groups`` names the article each
    passage comes from (used to split folds so no article is on both sides)."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def joined(self, sep: str = " ") -> list[str]:
        """Title and text as one field (the BEIR/Anserini 'flat' setting)."""
        return [f"{t}{sep}{x}" if t else x for t, x in zip(self.titles, self.texts)]


@dataclass(frozen=True)
class Dataset:
    """One loaded dataset: ``qrels`` maps query id -> doc id -> grade (> 0 is relevant);
    ``answers`` maps query id -> answer strings where the format has them."""

    name: str
    corpus: Corpus
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)
    sha256: str = ""
    source: str = ""

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    def subset_queries(self, query_ids: list[str], name: str | None = None) -> Dataset:
        """The same corpus with only ``query_ids`` (in that order)."""
        pos = {q: i for i, q in enumerate(self.query_ids)}
        keep = [q for q in query_ids if q in pos]
        return Dataset(
            name=name or self.name,
            corpus=self.corpus,
            query_ids=keep,
            query_texts=[self.query_texts[pos[q]] for q in keep],
            qrels={q: self.qrels[q] for q in keep if q in self.qrels},
            answers={q: self.answers[q] for q in keep if q in self.answers},
            sha256=self.sha256,
            source=self.source,
        )
