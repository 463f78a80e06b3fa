"""Shared test fixtures: a throw-away cache folder, the real data folder (skipped only outside
CI), and a tiny hand-made corpus whose rankings can be worked out by hand."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from odqa_core.bench import skip_or_fail
from odqa_core.data import Corpus, Dataset, data_dir

FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``ODQA_CACHE_DIR`` for one test."""
    path = tmp_path / "odqa-cache"
    monkeypatch.setenv("ODQA_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole session, so a tokenised corpus is built once."""
    return tmp_path_factory.mktemp("odqa-cache")


@pytest.fixture(scope="module")
def module_cache(session_cache_dir: Path) -> Iterator[Path]:
    """Point ``ODQA_CACHE_DIR`` at the session cache for the tests of one module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODQA_CACHE_DIR", str(session_cache_dir))
        yield session_cache_dir


def require_data_dir() -> Path:
    """The real data folder; a missing one skips the test locally and fails it in CI."""
    root = data_dir()
    if root is None or not root.is_dir():
        skip_or_fail("no data folder (set ODQA_DATA_DIR or create ../shared/data)")
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data_dir()


TINY_TEXTS = {
    "d1": ("Seoul", "Seoul is the capital of Korea and its largest city"),
    "d2": ("Busan", "Busan is a port city in the south of Korea"),
    "d3": ("Kimchi", "Kimchi is fermented cabbage with chili pepper"),
    "d4": ("Hangul", "Hangul is the Korean alphabet created by King Sejong"),
    "d5": ("Everest", "Mount Everest is the highest mountain above sea level"),
    "d6": ("Amazon", "The Amazon river flows through the rainforest of Brazil"),
}


@pytest.fixture
def tiny_corpus() -> Corpus:
    ids = list(TINY_TEXTS)
    return Corpus(ids, [TINY_TEXTS[d][0] for d in ids], [TINY_TEXTS[d][1] for d in ids], ids)


@pytest.fixture
def tiny_dataset(tiny_corpus: Corpus) -> Dataset:
    qids = ["q1", "q2", "q3"]
    texts = ["capital of Korea", "Korean alphabet Sejong", "highest mountain"]
    qrels = {"q1": {"d1": 1}, "q2": {"d4": 2, "d1": 0}, "q3": {"d5": 1}}
    answers = {"q1": ["Seoul"], "q2": ["Hangul"], "q3": ["Everest"]}
    return Dataset("tiny", tiny_corpus, qids, texts, qrels, answers, "0" * 64, "tiny")
