"""Training-step speed of the harness's trainers against bare transformers at the same shapes,
timed interleaved in the same test (fastest of several rounds).

- reader: one step of the shared loop (``optimizer_step`` over ``span_loss``) against a plain
  loop's step on the same windows: tensors built from the window ids, ``BertForQuestionAnswering``
  forward + backward, gradient clipping at 1.0 (transformers' Trainer default) and AdamW, word
  embeddings frozen in both;
- dpr: one step of the shared loop over DPR's in-batch loss (tokenising inside) against a bare
  mean-pooled bi-encoder step on pre-tokenised tensors of the same questions and passages, with
  the same clipping; both steps update one model through one AdamW (``torch.optim.AdamW``).

The recorded value is bare seconds / harness seconds (1.0 = no overhead); the test fails when the
harness step costs more than 1.25× the bare one.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest

from odqa_core.bench import require_dataset
from odqa_core.perfstats import interleaved_min, speed_ratio

torch = pytest.importorskip("torch", reason="torch not installed")
pytest.importorskip("transformers", reason="transformers not installed")

MAX_OVERHEAD = 1.25
ROUNDS = 5
DPR_ROUNDS = 3  # a fully trainable e5 step (word embeddings and their AdamW moments included) costs seconds
BATCH = 16
EXAMPLES = 240   # korquad-dev fold-1 training questions the windows come from

CELLS = [
    pytest.param("e5-small", "L3", 256, 96, id="e5-small-L3-len256", marks=pytest.mark.realdata),
    pytest.param("e5-small", "L12", 384, 128, id="e5-small-L12-len384", marks=[pytest.mark.realdata, pytest.mark.full]),
]


@cache
def _windows(size: str, max_length: int, stride: int) -> tuple[Any, list[Any], np.ndarray]:
    """(tokenizer, features, one length-grouped batch of typical width) from korquad-dev fold 1."""
    from odqa_core.data.folds import get_fold
    from odqa_core.encoders.load import load_base
    from odqa_core.reader.train import build_reader_examples, make_features
    from odqa_core.training.steps import epoch_batches

    ds = require_dataset("korquad-dev")
    tok = load_base("e5-small", size, 0).tokenizer
    examples = build_reader_examples(ds, get_fold(ds, 1, 5), 0, "kiwi")[:EXAMPLES]
    feats = make_features(tok, examples, max_length, stride, 64)
    lengths = np.array([len(f.input_ids) for f in feats])
    batches = epoch_batches(len(feats), BATCH, 0, 0, lengths)
    widths = np.array([lengths[b].max() for b in batches])
    return tok, feats, batches[int(np.argsort(widths)[len(widths) // 2])]  # the batch of median width


def _fresh_qa(family: str, size: str) -> Any:
    from odqa_core.encoders.load import load_base
    from odqa_core.reader.extractive import build_qa_model
    from odqa_core.training.steps import freeze_word_embeddings

    model = build_qa_model(load_base(family, size, 0).model, 0)
    freeze_word_embeddings(model)
    return model.train()


@pytest.mark.perf
@pytest.mark.parametrize("family,size,max_length,stride", CELLS)
def test_reader_step_overhead(family: str, size: str, max_length: int, stride: int, odqa_record: Any) -> None:
    from odqa_core.reader.train import _collate, span_loss
    from odqa_core.training.steps import Schedule, deterministic, make_optimizer, optimizer_step

    _, feats, batch = _windows(size, max_length, stride)
    ours = _fresh_qa(family, size)
    params, opt, sched = make_optimizer(ours, Schedule(lr=5e-5, batch_size=BATCH), 1000)
    bare = _fresh_qa(family, size)
    bare_opt = torch.optim.AdamW([p for p in bare.parameters() if p.requires_grad], lr=5e-5)
    tensors = _collate([feats[i] for i in batch], 0, "cpu")
    bare_params = [p for p in bare.parameters() if p.requires_grad]

    def harness() -> None:
        optimizer_step(params, opt, sched, [batch], lambda idx: span_loss(ours, [feats[i] for i in idx], 0, "cpu"), 1.0)

    def plain() -> None:
        width = max(len(feats[i].input_ids) for i in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, : len(feats[i].input_ids)] = torch.tensor(feats[i].input_ids)
            mask[r, : len(feats[i].input_ids)] = 1
        bare_opt.zero_grad()
        bare(input_ids=ids, attention_mask=mask, start_positions=tensors["start_positions"],
             end_positions=tensors["end_positions"]).loss.backward()
        torch.nn.utils.clip_grad_norm_(bare_params, 1.0)
        bare_opt.step()

    with deterministic():
        t_ours, t_bare = interleaved_min(harness, plain, ROUNDS)
    ratio = speed_ratio(t_bare, t_ours)
    width = int(tensors["input_ids"].shape[1])
    odqa_record("step_speed_vs_bare", ratio, kind="speed", model=f"{family}-{size}", max_length=max_length,
                batch=BATCH, width=width)
    odqa_record("harness_step_s", t_ours, kind="info")
    odqa_record("bare_step_s", t_bare, kind="info")
    assert t_ours <= MAX_OVERHEAD * t_bare, (
        f"reader step {t_ours:.2f}s vs bare transformers {t_bare:.2f}s ({t_ours / t_bare:.2f}x > {MAX_OVERHEAD}x)")


@pytest.mark.perf
@pytest.mark.parametrize("family,size", [pytest.param("e5-small", "L3", id="e5-small-L3", marks=pytest.mark.realdata)])
def test_dpr_step_overhead(family: str, size: str, odqa_record: Any) -> None:
    import torch.nn.functional as F

    from odqa_core.data.folds import get_fold
    from odqa_core.encoders.load import load_base
    from odqa_core.training.dpr import TrainConfig, _batch_loss
    from odqa_core.training.negatives import build_examples
    from odqa_core.training.steps import deterministic, freeze_word_embeddings, make_optimizer, optimizer_step

    ds = require_dataset("korquad-dev")
    config = TrainConfig(base=family, size=size, batch_size=BATCH, hard_negatives=1, max_grad_norm=2.0,
                         freeze_embeddings=True)
    examples = build_examples(ds, get_fold(ds, 1, 5), 1, "kiwi", 30)[:BATCH]
    joined = dict(zip(ds.corpus.ids, ds.corpus.joined()))
    cols = [ex.positive_id for ex in examples] + [n for ex in examples for n in ex.hard_negative_ids]
    passages = {c: joined[c] for c in cols}
    base = load_base(family, size, 0)
    # both steps update one model through one AdamW: a step's cost does not depend on the values
    # of the weights or moments, and a second trainable copy would double the cell's memory; the
    # word embeddings are frozen as the reader cells freeze them (their gradients and AdamW's two
    # moments would be three more copies of the model's largest matrix)
    ours = bare = base.model.train()
    freeze_word_embeddings(ours)
    params, opt, sched = make_optimizer(ours, config.schedule(), 1000)
    bare_opt = opt
    tok = base.tokenizer
    q_enc = tok([base.query_prefix + ex.question for ex in examples], padding=True, truncation=True,
                max_length=config.max_length_q, return_tensors="pt")
    p_enc = tok([base.passage_prefix + passages[c] for c in cols], padding=True, truncation=True,
                max_length=config.max_length_p, return_tensors="pt")
    labels = torch.arange(len(examples))

    def pool(model: Any, enc: Any) -> Any:
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    def harness() -> None:
        optimizer_step(params, opt, sched, [np.arange(len(examples))],
                       lambda idx: _batch_loss(ours, base, [examples[i] for i in idx], passages, config), 2.0)

    bare_params = [p for p in bare.parameters() if p.requires_grad]

    def plain() -> None:
        bare_opt.zero_grad()
        F.cross_entropy(config.scale * pool(bare, q_enc) @ pool(bare, p_enc).T, labels).backward()
        torch.nn.utils.clip_grad_norm_(bare_params, 2.0)
        bare_opt.step()

    with deterministic():
        t_ours, t_bare = interleaved_min(harness, plain, DPR_ROUNDS)
    ratio = speed_ratio(t_bare, t_ours)
    odqa_record("step_speed_vs_bare", ratio, kind="speed", model=f"{family}-{size}", batch=BATCH,
                passages=len(cols), frozen_embeddings=True)
    odqa_record("harness_step_s", t_ours, kind="info")
    odqa_record("bare_step_s", t_bare, kind="info")
    assert t_ours <= MAX_OVERHEAD * t_bare, (
        f"dpr step {t_ours:.2f}s vs bare transformers {t_bare:.2f}s ({t_ours / t_bare:.2f}x > {MAX_OVERHEAD}x)")
