"""The shared step loop: batch plans (length grouping keeps the random epoch subset), and an
extractive reader that overfits 64 training questions, so labels, loss and decoding agree."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.training.steps import GROUP_CHUNK, Schedule, batch_at, epoch_batches, plan_steps


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 400), bs=st.integers(1, 20), seed=st.integers(0, 5), epoch=st.integers(0, 3),
       data=st.data())
def test_grouped_epochs_hold_the_same_items_as_plain_ones(n, bs, seed, epoch, data):
    lengths = data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))
    per_epoch, _ = plan_steps(n, Schedule(lr=1e-3, batch_size=bs))
    plain = [batch_at(epoch * per_epoch + p, n, per_epoch, bs, seed) for p in range(per_epoch)]
    grouped = epoch_batches(n, bs, seed, epoch, lengths)
    assert len(grouped) == per_epoch
    flat = np.concatenate(grouped)
    assert len(set(flat.tolist())) == len(flat)  # no item twice in an epoch
    # the same random subset as the ungrouped plan: length grouping never drops the short items
    assert sorted(flat.tolist()) == sorted(np.concatenate(plain).tolist())
    assert [b.tolist() for b in epoch_batches(n, bs, seed, epoch)] == [b.tolist() for b in plain]
    again = epoch_batches(n, bs, seed, epoch, lengths)
    assert all(np.array_equal(a, b) for a, b in zip(grouped, again))


def test_grouping_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 256, size=GROUP_CHUNK * 16 * 2)
    width = {g: np.mean([lengths[b].max() for b in epoch_batches(len(lengths), 16, 0, 0, lengths if g else None)])
             for g in (False, True)}
    assert width[True] < 0.8 * width[False], width


def test_reader_overfits_64_questions():
    """Trained to near-zero loss on 64 questions, the reader must read their own answers back
    (F1 >= 0.9): the span labels, the loss and span decoding agree."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import tempfile
    from pathlib import Path

    from odqa_core.data import load_dataset
    from odqa_core.data.folds import get_fold
    from odqa_core.e2e import score_predictions
    from odqa_core.encoders import tiny_bert
    from odqa_core.reader.extractive import ExtractiveReader, build_qa_model
    from odqa_core.reader.train import build_reader_examples, make_features, span_loss
    from odqa_core.training.steps import train_steps

    ds = load_dataset("default")
    examples = [e for f in (1, 2) for e in build_reader_examples(ds, get_fold(ds, f, 2), 0, "regex")][:64]
    assert len(examples) == 64
    enc = tiny_bert(seed=0, layers=2, hidden=64, heads=2, max_length=256)
    feats = make_features(enc.tokenizer, examples, 256, 64, 48)
    assert len(feats) > len(examples)  # some passages span two windows
    model = build_qa_model(enc.model, 0)
    schedule = Schedule(lr=2e-3, batch_size=16, max_steps=240, warmup=0.1, seed=0, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        out = train_steps(model, len(feats), lambda idx: span_loss(model, [feats[i] for i in idx], 0, "cpu"),
                          schedule, Path(tmp) / "state.pt", "overfit", lengths=[len(f.input_ids) for f in feats],
                          progress=False)
    assert out.finished and np.mean(out.losses[-10:]) < 0.1, out.losses[-10:]
    with torch.no_grad():
        reader = ExtractiveReader(model, enc.tokenizer, max_length=256, doc_stride=64, max_query_length=48, threads=1)
        preds = reader.predict([e.question for e in examples], [[e.context] for e in examples])
    _, f1 = score_predictions([p.text for p in preds], [[e.answer_text] for e in examples], "auto")
    assert f1.mean() >= 0.9, f1.mean()


def test_autocast_steps_compute_in_bfloat16_and_keep_float32_weights() -> None:
    torch = pytest.importorskip("torch")
    from odqa_core.training.steps import make_optimizer, optimizer_step

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    x = torch.randn(6, 8)
    seen = []

    def loss_of(idx: np.ndarray) -> torch.Tensor:
        out = model(x[torch.as_tensor(idx)])
        seen.append(out.dtype)
        return out.float().pow(2).mean()

    params, opt, sched = make_optimizer(model, Schedule(lr=1e-2, batch_size=6), 10)
    before = model.weight.detach().clone()
    optimizer_step(params, opt, sched, [np.arange(6)], loss_of, 1.0, autocast="bfloat16")
    optimizer_step(params, opt, sched, [np.arange(6)], loss_of, 1.0)
    assert seen == [torch.bfloat16, torch.float32]
    assert model.weight.dtype == torch.float32 and not torch.equal(before, model.weight)


def test_reader_autocast_is_checked_and_keyed_only_when_set() -> None:
    import dataclasses

    from odqa_core.errors import OdqaBenchError
    from odqa_core.reader.train import PROFILES

    quick = PROFILES["quick"]
    assert "autocast" not in quick.key_fields()  # checkpoints from before the setting keep their keys
    assert dataclasses.replace(quick, autocast="bfloat16").key_fields()["autocast"] == "bfloat16"
    assert dataclasses.replace(quick, autocast="bfloat16").schedule().autocast == "bfloat16"
    with pytest.raises(OdqaBenchError, match="autocast='int8'"):
        dataclasses.replace(quick, autocast="int8")


def test_frozen_layers_is_checked_and_keyed_only_when_set() -> None:
    import dataclasses

    from odqa_core.errors import OdqaBenchError
    from odqa_core.reader.train import PROFILES

    quick = PROFILES["quick"]
    assert "frozen_layers" not in quick.key_fields()
    assert dataclasses.replace(quick, frozen_layers=1).key_fields()["frozen_layers"] == 1
    with pytest.raises(OdqaBenchError, match="frozen_layers=-1"):
        dataclasses.replace(quick, frozen_layers=-1)


def test_freeze_lower_layers_ends_the_backward_pass_at_the_first_trained_layer() -> None:
    torch = pytest.importorskip("torch")
    from odqa_core.encoders.tiny import tiny_bert
    from odqa_core.errors import OdqaBenchError
    from odqa_core.reader.extractive import build_qa_model
    from odqa_core.training.steps import freeze_lower_layers

    model = build_qa_model(tiny_bert(seed=0, layers=3).model, 0)
    n = freeze_lower_layers(model, 2)
    bert = model.bert
    frozen = [*bert.embeddings.parameters(), *bert.encoder.layer[0].parameters(), *bert.encoder.layer[1].parameters()]
    assert n == sum(p.numel() for p in frozen) > 0
    assert not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in (*bert.encoder.layer[2].parameters(), *model.qa_outputs.parameters()))
    x = torch.randint(5, 50, (2, 12))
    model(input_ids=x, start_positions=torch.zeros(2, dtype=torch.long),
          end_positions=torch.ones(2, dtype=torch.long)).loss.backward()
    assert all(p.grad is None for p in frozen) and bert.encoder.layer[2].attention.self.query.weight.grad is not None
    assert freeze_lower_layers(model, 0) == 0
    with pytest.raises(OdqaBenchError, match="cannot freeze 4 layers of a 3-layer encoder"):
        freeze_lower_layers(model, 4)


def test_bfloat16_autocast_warns_where_the_cpu_would_emulate_it(monkeypatch, caplog) -> None:
    torch = pytest.importorskip("torch")
    from odqa_core.training import steps

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level("WARNING", logger=steps.log.name):
        steps.warn_emulated_bfloat16("cpu", "bfloat16")
        steps.warn_emulated_bfloat16("cpu", None)
    assert len(caplog.records) == 1 and "emulated" in caplog.records[0].getMessage()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    caplog.clear()
    steps.warn_emulated_bfloat16("cpu", "bfloat16")
    steps.warn_emulated_bfloat16("cuda", "bfloat16")
    assert not caplog.records
