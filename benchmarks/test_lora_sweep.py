"""LoRA rank sweep: DPR on e5-small with adapters of rank r, and full fine-tuning beside them,
everything else as the grid's DPR cells, on fold 1 of KorQuAD dev. Records hit@5/@20 (gold
paragraph and answer present) on the held-out fold through the gate, and trainable parameters
and training seconds as information. Ids read like ``test_lora_rank[lora=8]``; r=8 is the
grid's own fold-1 checkpoint.

Full profile only (marker ``full``): each setting trains the grid's CPU budget (50 steps).
"""
from __future__ import annotations

import json

import pytest

from odqa_core.metrics import answer_hits, evaluate
from odqa_core.retrieval import get_retriever, retrieve
from odqa_core.training.dpr import INFO_FILE

from . import test_grid as grid

MODEL, SIZE, FOLD = "e5-small", "L3", 1
RANKS = (4, 8, 16, None)   # None: full fine-tuning at the trainer's default learning rate
KS = (5, 20)


@pytest.mark.full
@pytest.mark.realdata
@pytest.mark.parametrize("rank", RANKS, ids=[f"lora={r}" if r else "full-ft" for r in RANKS])
def test_lora_rank(rank: int | None, odqa_record, odqa_dataset) -> None:
    ds = odqa_dataset(grid.FULL_DATASET)
    params = {**grid._params("dpr", MODEL, SIZE, grid.FULL_DATASET, FOLD), "lora_r": rank}
    if rank is None:
        params.pop("lr", None)
    r = get_retriever("dpr", **params).index(ds.corpus)
    info = json.loads((r.checkpoint / INFO_FILE).read_text(encoding="utf-8"))
    test_q = grid._folds(grid.FULL_DATASET)[FOLD - 1].test_query_ids
    qrels = {q: ds.qrels[q] for q in test_q}
    run = retrieve(r, ds, max(KS))
    odqa_record.dataset(ds)
    odqa_record.settings(r)
    gold = evaluate(run, qrels, [f"hit@{k}" for k in KS])
    ans = evaluate(run, qrels, [f"hit@{k}" for k in KS], hits=answer_hits(run, ds.corpus.texts, ds.answers))
    odqa_record.scores(gold, lora_r=rank)
    for k in KS:
        odqa_record(f"answer_hit@{k}", per_query=ans[f"hit@{k}"], query_ids=ans.query_ids, lora_r=rank)
    odqa_record("trainable_parameters", float(info["trainable_parameters"]), kind="info",
                total_parameters=info.get("total_parameters"))
    odqa_record("train_seconds", float(info["seconds_this_run"]), kind="info", higher_is_better=False,
                steps=info["steps"], resumed_from_step=info.get("resumed_from_step", 0))
    assert info["config"]["lora_r"] == rank
    if rank is None:
        assert info["trainable_parameters"] == info["total_parameters"]
    else:  # only the adapters train: r * (in + out) weights per adapted matrix, a small share
        assert 0 < info["trainable_parameters"] < info["total_parameters"] / 20
