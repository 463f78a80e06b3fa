"""korquad-open: KorQuAD 1.0 dev questions over its 964 paragraphs plus 29,702 Korean Wikipedia
distractors. Two hit definitions, named apart: ``hit@k`` (the gold paragraph is retrieved) and
``answer_hit@k`` (some retrieved passage contains an answer string).

Quick profile: bm25 and tfidf with regex words over the full corpus and all 5,774 questions
(seconds). Kiwi morphemes (minutes to tokenise 30k passages cold, cached after) are in ``full``.
"""
from __future__ import annotations

import pytest

from odqa_core.bench import cached_dataset, cached_run
from odqa_core.metrics import answer_hits, evaluate

KS = (1, 5, 10, 20, 30)
COMBOS = [("bm25", "regex", ()), ("tfidf", "regex", ()), ("bm25", "kiwi", (pytest.mark.full,)),
          ("tfidf", "kiwi", (pytest.mark.full,))]
CELLS = [pytest.param(r, t, k, id=f"{r}-{t}/korquad-open/k={k}", marks=m) for r, t, m in COMBOS for k in KS]


@pytest.mark.realdata
@pytest.mark.parametrize("retriever,tokenizer,k", CELLS)
def test_open_domain(retriever, tokenizer, k, odqa_record):
    ds = cached_dataset("korquad-open")
    run = cached_run(retriever, tokenizer, "korquad-open")
    odqa_record.dataset(ds)
    qids = list(ds.qrels)
    gold = evaluate(run, ds.qrels, [f"hit@{k}", f"mrr@{k}"])
    ans = evaluate(run, ds.qrels, [f"hit@{k}"], hits=answer_hits(run, ds.corpus.texts, ds.answers))[f"hit@{k}"]
    odqa_record(f"hit@{k}", per_query=gold[f"hit@{k}"], query_ids=qids)
    odqa_record(f"mrr@{k}", per_query=gold[f"mrr@{k}"], query_ids=qids)
    odqa_record(f"answer_hit@{k}", per_query=ans, query_ids=qids)
    # answer-present can only add hits to gold-paragraph hits (the gold paragraph holds the answer)
    assert ans.mean() >= gold[f"hit@{k}"].mean() - 1e-12
