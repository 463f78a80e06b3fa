"""Reading speed: questions per second end to end (bm25 search, then the fold-1 reader of each
reader profile over the top 5 passages) on up to 200 held-out questions, recorded as info: no
peer reads the same passages, so it is reported, not gated."""
from __future__ import annotations

import time

import pytest

from odqa_core.bench import cached_dataset

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from ..test_reader import SETUPS, _held_out, _reader, _retriever_id  # noqa: E402

SPEED_K = 5
QUESTIONS = 200
CELLS = [pytest.param(s, id=f"{s.profile}/{_retriever_id(s, 'bm25')}/{s.train_on}/k={SPEED_K}",
                      marks=s.marks + (pytest.mark.perf,)) for s in SETUPS]


@pytest.mark.parametrize("setup", CELLS)
def test_reading_speed(setup, odqa_record):
    """Questions per second, end to end at k=5 (bm25 search and reading), fold 1's reader."""
    from odqa_core.e2e import run_e2e
    from odqa_core.retrieval import get_retriever

    ds = cached_dataset(setup.train_on)
    reader = _reader(setup, 1)
    qids = _held_out(setup, setup.train_on, 1)[:QUESTIONS]
    retriever = get_retriever("bm25", tokenizer=setup.tokenizer).index(ds.corpus)
    run_e2e(ds, retriever, reader, SPEED_K, "auto", query_ids=qids[:4], gold_baseline=False)  # warm-up
    t0 = time.perf_counter()
    res = run_e2e(ds, retriever, reader, SPEED_K, "auto", query_ids=qids, gold_baseline=False)
    seconds = time.perf_counter() - t0
    odqa_record.dataset(ds)
    odqa_record("questions_per_s", len(qids) / seconds, kind="info", device=setup.device,
                threads=reader.threads or torch.get_num_threads(), questions=len(qids))
    assert len(res["predictions"]) == len(qids)
