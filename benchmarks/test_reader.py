"""Readers through the gate: the extractive reader trained per fold on the fold's training side,
read on its held-out questions.

- ``test_reader_gold`` (``<profile>/<dataset>/fold=<f>``): the reader given only the gold
  passage (gold-passage EM/F1), the ceiling retrieval can only lower;
- ``test_reader`` (``<retriever>/<dataset>/k=<k>/fold=<f>``): end to end, the top-k passages of
  a retriever read once at the deepest k, each k choosing its answer among its first k;
  ``answer_hit@k`` (an answer string is in the top k) is recorded beside, ungated;
- ``test_evalrag_e2e_matches_suite`` (``<profile>/<dataset>/fold=<f>``): ``odqa-bench eval-rag
  --eval_mode e2e`` with the fold's reader checkpoint, bm25 at k=5, prints the suite's EM/F1 and
  writes its answers, in both gold modes (``qa`` and ``ans``);
- ``benchmarks/perf/test_reading_speed.py``: questions per second end to end at k=5.

Profiles (``odqa_core.reader.train.PROFILES``):
- quick: a tiny random BERT trained 24 steps on ``default`` (fold 1 of 2), read through bm25 and
  the bm25 + e5-small hybrid: proves the path, the cache and determinism; low numbers by design;
- full (marker ``full``): e5-small trained per fold on korquad-dev (5 article-grouped folds),
  read on korquad-dev and korquad-open through bm25-kiwi and the bm25-kiwi + e5-small hybrid;
- gpu (markers ``full`` and ``cuda``): the same cells for the GPU profile's reader, on CUDA.

korquad-open holds korquad-dev's questions among 30k more passages, so it is read with the
korquad-dev folds' readers on the same held-out questions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pytest

from odqa_core.bench import cached_dataset, cached_run

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

KS = (1, 5, 10, 20)
SEED = 0
# on two CPU cores the L12 reader reads a few windows a second: the CPU full profile reads a
# seeded sample of each fold's held-out questions end to end (gold-passage cells read them all)
E2E_SAMPLE_CPU = 100
HYBRID = {"tokenizer": "kiwi", "dense_model": "e5-small", "size": "L12", "max_length": 256}
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                             reason="CUDA not available: torch.cuda.is_available() is False")


@dataclass(frozen=True)
class Setup:
    """A reader profile: where it trains (dataset, folds) and what it reads (dataset, retriever)."""

    profile: str
    train_on: str
    n_folds: int
    folds: tuple[int, ...]
    read: tuple[tuple[str, str], ...]          # (dataset, retriever label)
    tokenizer: str
    device: str = "cpu"
    e2e_sample: int | None = None              # held-out questions read end to end per fold (None: all)
    marks: tuple = field(default=(), compare=False)


SETUPS = (
    Setup("quick", "default", 2, (1,), (("default", "bm25"), ("default", "hybrid")), "regex"),
    Setup("full", "korquad-dev", 5, (1, 2, 3, 4, 5),
          tuple((d, r) for d in ("korquad-dev", "korquad-open") for r in ("bm25", "hybrid")), "kiwi",
          e2e_sample=E2E_SAMPLE_CPU, marks=(pytest.mark.full, pytest.mark.realdata)),
    Setup("gpu", "korquad-dev", 5, (1, 2, 3, 4, 5),
          tuple((d, r) for d in ("korquad-dev", "korquad-open") for r in ("bm25", "hybrid")), "kiwi", device="cuda",
          marks=(pytest.mark.full, pytest.mark.realdata, pytest.mark.cuda, NO_CUDA)),
)


def _retriever_id(setup: Setup, retriever: str) -> str:
    return f"{retriever}-{setup.tokenizer}" + ("+e5-small-L12" if retriever == "hybrid" else "")


GOLD_CELLS = [pytest.param(s, f, id=f"{s.profile}/{s.train_on}/fold={f}", marks=s.marks) for s in SETUPS for f in s.folds]
CELLS = [pytest.param(s, d, r, f, k, id=f"{s.profile}/{_retriever_id(s, r)}/{d}/k={k}/fold={f}", marks=s.marks)
         for s in SETUPS for d, r in s.read for f in s.folds for k in KS]


@cache
def _fold(setup: Setup, fold_index: int) -> Any:
    from odqa_core.data.folds import get_fold

    return get_fold(cached_dataset(setup.train_on), fold_index, setup.n_folds)


@cache
def _reader(setup: Setup, fold_index: int) -> Any:
    """The fold's trained reader (cached checkpoint, trained on first use)."""
    from odqa_core.reader.train import PROFILES, trained_reader

    config = PROFILES[setup.profile]
    return trained_reader(cached_dataset(setup.train_on), _fold(setup, fold_index), config, device=setup.device,
                          threads=config.threads)


def _held_out(setup: Setup, dataset: str, fold_index: int) -> list[str]:
    """The fold's test questions that have gold answers in ``dataset``."""
    ds = cached_dataset(dataset)
    return [q for q in _fold(setup, fold_index).test_query_ids if ds.answers.get(q)]


@cache
def _run(setup: Setup, dataset: str, retriever: str) -> Any:
    if retriever == "bm25":
        return cached_run("bm25", setup.tokenizer, dataset)
    from odqa_core.retrieval import get_retriever, retrieve

    ds = cached_dataset(dataset)
    return retrieve(get_retriever("hybrid", **HYBRID).index(ds.corpus), ds, max(KS))


@cache
def _e2e_questions(setup: Setup, fold_index: int) -> list[str]:
    """The fold's held-out questions read end to end: all, or a seeded sample in held-out order."""
    from odqa_core.data.folds import sample_held_out

    return sample_held_out(_held_out(setup, setup.train_on, fold_index), setup.e2e_sample, SEED, fold_index)


@cache
def _read(setup: Setup, fold_index: int) -> dict:
    """Every (question, passage) pair in the top ``max(KS)`` of the setup's runs, read once."""
    from odqa_core.e2e import read_runs

    jobs = [(cached_dataset(d), _run(setup, d, r)) for d, r in setup.read]
    return read_runs(_reader(setup, fold_index), jobs, _e2e_questions(setup, fold_index), max(KS))


@cache
def gold_results(setup: Setup, fold_index: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    from odqa_core.e2e import read_gold_passages

    qids = _held_out(setup, setup.train_on, fold_index)
    em, f1, _ = read_gold_passages(cached_dataset(setup.train_on), _reader(setup, fold_index), qids, "auto")
    return qids, em, f1


@cache
def e2e_results(setup: Setup, dataset: str, retriever: str, fold_index: int) -> dict:
    """Read the held-out questions' top ``max(KS)`` passages once and score every k."""
    from odqa_core.e2e import run_e2e_sweep

    ds = cached_dataset(dataset)
    qids = [q for q in _e2e_questions(setup, fold_index) if ds.answers.get(q)]
    return run_e2e_sweep(ds, _run(setup, dataset, retriever), _reader(setup, fold_index), KS, "auto",
                         query_ids=qids, gold_baseline=False, candidates=_read(setup, fold_index))


@pytest.mark.parametrize("setup,fold", GOLD_CELLS)
def test_reader_gold(setup, fold, odqa_record):
    qids, em, f1 = gold_results(setup, fold)
    odqa_record.dataset(cached_dataset(setup.train_on))
    odqa_record("gold_em", per_query=em, query_ids=qids)
    odqa_record("gold_f1", per_query=f1, query_ids=qids)
    assert np.all(f1 >= em), "an exact match must have F1 = 1"
    if setup.profile != "quick":
        # a trained e5 reader must read gold passages far better than chance
        assert float(np.mean(f1)) > 0.3, "the reader did not learn to extract answers"


@pytest.mark.parametrize("setup,dataset,retriever,fold,k", CELLS)
def test_reader(setup, dataset, retriever, fold, k, odqa_record):
    ds = cached_dataset(dataset)
    res = e2e_results(setup, dataset, retriever, fold)[k]
    odqa_record.dataset(ds)
    qids = res["query_ids"]
    odqa_record("em", per_query=res["em"], query_ids=qids)
    odqa_record("f1", per_query=res["f1"], query_ids=qids)
    odqa_record(f"answer_hit@{k}", per_query=res["answer_hit"], query_ids=qids, kind="info")
    assert np.all(res["f1"] >= res["em"]), "an exact match must have F1 = 1"
    # every answer is text of one of the top-k passages it was read from
    run = _run(setup, dataset, retriever)
    pos = {q: i for i, q in enumerate(run.query_ids)}
    for q, p in zip(qids, res["predictions"]):
        if p.passage_index < 0:  # the retriever found no passage for the question
            assert p.text == "" and run.indices[pos[q], 0] < 0, (q, p)
            continue
        assert p.passage_index < k, (q, p)
        j = run.indices[pos[q], p.passage_index]
        assert p.text == ds.corpus.texts[j][p.start_char : p.end_char]


EVALRAG_K = 5


def _evalrag_files(tmp_path: Any, ds: Any, qids: list[str]) -> dict[str, Any]:
    """eval_rag's input files for ``qids``: questions, and gold answers as ``qa`` and ``ans`` lines."""
    pos = {q: i for i, q in enumerate(ds.query_ids)}
    # one question per line, as eval_rag reads them (the reader collapses whitespace alike)
    questions = [" ".join(ds.query_texts[pos[q]].split()) for q in qids]
    files = {"q": tmp_path / "questions.txt", "qa": tmp_path / "gold_qa.txt", "ans": tmp_path / "gold_ans.txt"}
    files["q"].write_text("".join(f"{q}\n" for q in questions), encoding="utf-8")
    files["qa"].write_text("".join(f"{q}\t{list(ds.answers[i])!r}\n" for q, i in zip(questions, qids)), encoding="utf-8")
    files["ans"].write_text("".join(f"{ds.answers[i][0]}\n" for i in qids), encoding="utf-8")
    return files


@pytest.mark.parametrize("setup,fold", GOLD_CELLS)
def test_evalrag_e2e_matches_suite(setup, fold, tmp_path, capsys):
    """The eval_rag-compatible command and the suite read the same passages with the same reader:
    the same answers, so the same EM/F1 (every question here has one gold answer, so ``ans`` mode,
    which scores against one answer per line, must agree too); answers are normalised by script
    (``--lang auto``), as the suite scores them."""
    from odqa_core.cli import main
    from odqa_core.reader.train import PROFILES, train_reader

    ds = cached_dataset(setup.train_on)
    res = e2e_results(setup, setup.train_on, "bm25", fold)[EVALRAG_K]
    qids = list(res["query_ids"])
    assert all(len(set(ds.answers[q])) == 1 for q in qids), "a question with several gold answers"
    files = _evalrag_files(tmp_path, ds, qids)
    folder = train_reader(ds, _fold(setup, fold), PROFILES[setup.profile])  # the cached checkpoint
    want = [" ".join(p.text.replace("\t", " ").split()) for p in res["predictions"]]
    for mode in ("qa", "ans"):
        preds = tmp_path / f"preds_{mode}.txt"
        rc = main(["eval-rag", "--eval_mode", "e2e", "--evaluation_set", str(files["q"]), "--gold_data_path",
                   str(files[mode]), "--gold_data_mode", mode, "--predictions_path", str(preds), "--recalculate",
                   "--reader", str(folder), "--knowledge_base", setup.train_on, "--retriever", "bm25",
                   "--tokenizer", setup.tokenizer, "--n_docs", str(EVALRAG_K), "--lang", "auto"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert preds.read_text(encoding="utf-8").splitlines() == want
        assert f"EM: {100 * res['em'].mean():.2f}" in out and f"F1: {100 * res['f1'].mean():.2f}" in out, out
