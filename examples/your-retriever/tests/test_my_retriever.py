"""Our retriever on our dataset, through the odqa-bench gate: each cut-off is one cell."""
import pytest

from odqa_core.metrics import evaluate
from odqa_core.retrieval import get_retriever, retrieve


@pytest.mark.parametrize("k", [1, 5])
def test_overlap(k, odqa_dataset, odqa_record):
    ds = odqa_dataset("my-facts")
    run = retrieve(get_retriever("overlap").index(ds.corpus), ds, k)
    odqa_record.dataset(ds)
    odqa_record.scores(evaluate(run, ds.qrels, [f"hit@{k}", f"mrr@{k}"]))
