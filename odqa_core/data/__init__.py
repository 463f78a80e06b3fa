"""Loaders: every format becomes a :class:`Dataset` (corpus, queries, graded qrels, answers)."""
from __future__ import annotations

from .beir import load_beir
from .kb import load_kb, split_words
from .registry import DATASETS, data_dir, dataset_names, load_dataset, register_dataset
from .squad import load_squad
from .types import Corpus, Dataset

__all__ = ["Corpus", "Dataset", "DATASETS", "data_dir", "dataset_names", "load_beir", "load_dataset",
           "load_kb", "load_squad", "register_dataset", "split_words"]
