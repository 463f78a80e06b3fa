"""DPR training on a tiny random BERT: loss goes down, runs are deterministic and resumable,
checkpoints are cached, LoRA trains few parameters, and hard negatives stay clean."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from odqa_core.data import load_dataset  # noqa: E402
from odqa_core.data.folds import Fold, get_fold  # noqa: E402
from odqa_core.data.types import Corpus, Dataset  # noqa: E402
from odqa_core.errors import OdqaBenchError  # noqa: E402
from odqa_core.perfstats import torch_threads  # noqa: E402
from odqa_core.training import (  # noqa: E402
    TrainConfig,
    build_examples,
    contains_answer,
    encode,
    is_trained,
    load_base,
    mine_hard_negatives,
    train_fold,
)
from odqa_core.training import dpr as dpr_mod  # noqa: E402
from odqa_core.training.loop import contrastive_loss, embed  # noqa: E402

TINY = dict(base="tiny", size=None, max_steps=6, batch_size=8, max_length_q=24, max_length_p=64, lr=1e-3,
            bm25_tokenizer="regex", hard_negatives=1, save_every=2)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("odqa_cache")
    old = os.environ.get("ODQA_CACHE_DIR")
    os.environ["ODQA_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ODQA_CACHE_DIR", None)
    else:
        os.environ["ODQA_CACHE_DIR"] = old


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one intra-op thread, and the test machine's cores are shared."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset("default")


@pytest.fixture(scope="module")
def fold(ds: Dataset) -> Fold:
    return get_fold(ds, 1, n_folds=5)


@pytest.fixture(scope="module")
def reference(ds: Dataset, fold: Fold, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 6-step run of the tiny config."""
    return train_fold(ds, fold, TrainConfig(**TINY), tmp_path_factory.mktemp("ref") / "ckpt", progress=False)


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def _info(folder: Path) -> dict:
    return json.loads((folder / "odqa_dpr.json").read_text(encoding="utf-8"))


# --- hard negatives -------------------------------------------------------------------------

def test_hard_negatives_skip_gold_and_answer_passages() -> None:
    texts = ["Paris is the capital of France.",                  # gold
             "What is the capital of France? It is PARIS.",      # contains the answer (other case)
             "The capital of France was once Tours, briefly.",   # clean
             "Berlin is the capital of Germany."]                # clean, lower BM25
    corpus = Corpus(["g", "ans", "neg1", "neg2"], [""] * 4, texts, ["a", "b", "c", "d"])
    ds = Dataset("toy", corpus, ["q"], ["What is the capital of France?"], {"q": {"g": 1}}, {"q": ["Paris"]})
    from odqa_core.retrieval import get_retriever

    idx, _ = get_retriever("bm25", tokenizer="regex").index(corpus).search(ds.query_texts, 4)
    ranking = [corpus.ids[j] for j in idx[0]]
    assert ranking.index("ans") < ranking.index("neg1")  # BM25 alone would pick the answer passage
    negs = mine_hard_negatives(ds, ["q"], corpus.ids, n=2, tokenizer="regex")
    assert negs["q"] == [d for d in ranking if d not in ("g", "ans")][:2]
    assert mine_hard_negatives(ds, ["q"], corpus.ids, n=1, tokenizer="regex")["q"] == negs["q"][:1]
    assert contains_answer(texts[1], ["paris"]) and not contains_answer(texts[3], ["Paris", " "])


def test_hard_negatives_of_a_fold_are_clean(ds: Dataset, fold: Fold) -> None:
    examples = build_examples(ds, fold, hard_negatives=3, tokenizer="regex")
    text = dict(zip(ds.corpus.ids, ds.corpus.joined()))
    test_docs = set(fold.test_doc_ids)
    assert {ex.query_id for ex in examples} == set(fold.train_query_ids)
    assert sum(len(ex.hard_negative_ids) for ex in examples) >= len(examples)  # not vacuous
    for ex in examples:
        assert ex.positive_id in ds.qrels[ex.query_id]
        assert len(ex.hard_negative_ids) <= 3
        for d in ex.hard_negative_ids:
            assert d != ex.positive_id and d not in test_docs
            assert not any(a and a in text[d] for a in ds.answers[ex.query_id])


# --- training -------------------------------------------------------------------------------

def test_embed_feeds_the_batch_as_the_tokenizer_pads_it() -> None:
    base = load_base("tiny", None, seed=0)
    texts = ["short", "a longer question about something", "", "mid sized text"]
    seen: list[dict] = []
    hook = base.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(dict(kw)), with_kwargs=True)
    try:
        got = embed(base.model, base.tokenizer, texts, 8, "cls")
    finally:
        hook.remove()
    want = base.tokenizer(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert len(seen) == 1 and set(seen[0]) == set(want)
    for k in want:
        assert torch.equal(seen[0][k], want[k]), k
    assert got.shape == (4, 32) and torch.allclose(got.norm(dim=1), torch.ones(4))


def _eval_loss(folder_or_base: str, ds: Dataset, fold: Fold) -> float:
    base = load_base(folder_or_base, None, seed=0)
    examples = build_examples(ds, fold, hard_negatives=1, tokenizer="regex")[:32]
    text = dict(zip(ds.corpus.ids, ds.corpus.joined()))
    cols = [ex.positive_id for ex in examples] + [d for ex in examples for d in ex.hard_negative_ids]
    base.model.eval()
    with torch.no_grad():
        q = embed(base.model, base.tokenizer, [ex.question for ex in examples], 24, "mean")
        p = embed(base.model, base.tokenizer, [text[c] for c in cols], 64, "mean")
        mask = torch.tensor([[c == ex.positive_id and j != i for j, c in enumerate(cols)] for i, ex in enumerate(examples)])
        return float(contrastive_loss(q, p, 20.0, mask))


def test_training_lowers_the_loss(ds: Dataset, fold: Fold, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "max_steps": 15})
    ckpt = train_fold(ds, fold, cfg, tmp_path / "ckpt", progress=False)
    assert is_trained(ckpt)
    before, after = _eval_loss("tiny", ds, fold), _eval_loss(f"path:{ckpt}", ds, fold)
    assert after < before - 0.05, (before, after)
    info = _info(ckpt)
    assert info["steps"] == 15 and len(info["losses"]) == 15 and info["fold"] == 1


def test_two_runs_are_identical(ds: Dataset, fold: Fold, reference: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    again = train_fold(ds, fold, TrainConfig(**TINY), tmp_path / "again", progress=False)
    drawn = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(drawn, torch.rand(3))  # training leaves the caller's RNG alone
    assert _max_diff(_weights(reference), _weights(again)) <= 1e-6
    texts = ds.corpus.texts[:8]
    a, b = (load_base(f"path:{p}") for p in (reference, again))
    ea = encode(a.model, a.tokenizer, texts, max_length=64)
    eb = encode(b.model, b.tokenizer, texts, max_length=64)
    np.testing.assert_allclose(ea, eb, atol=1e-6)
    assert _info(reference)["losses"] == _info(again)["losses"]
    other = train_fold(ds, fold, TrainConfig(**{**TINY, "seed": 1}), tmp_path / "seed1", progress=False)
    assert _max_diff(_weights(reference), _weights(other)) > 1e-4  # the seed matters


def test_resume_after_interruption_matches_uninterrupted(ds: Dataset, fold: Fold, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    cfg = TrainConfig(**{**TINY, "save_every": 50})
    assert train_fold(ds, fold, cfg, out, stop_after=3, progress=False) == out
    assert not is_trained(out) and (out / dpr_mod.STATE_FILE).is_file()
    assert not (out / "model.safetensors").exists()
    train_fold(ds, fold, cfg, out, progress=False)
    assert is_trained(out) and not (out / dpr_mod.STATE_FILE).exists()
    assert _info(out)["resumed_from_step"] == 3
    assert _max_diff(_weights(reference), _weights(out)) <= 1e-6
    assert _info(out)["losses"] == _info(reference)["losses"]


def test_frozen_embeddings_stay_as_the_base_has_them(ds: Dataset, fold: Fold, reference: Path, tmp_path: Path) -> None:
    out = train_fold(ds, fold, TrainConfig(**{**TINY, "freeze_embeddings": True}), tmp_path / "frozen", progress=False)
    name = "embeddings.word_embeddings.weight"
    base = load_base("tiny", None, seed=0).model.get_input_embeddings().weight.detach().numpy()
    frozen, trained = _weights(out), _weights(reference)
    key = next(k for k in frozen if k.endswith(name))
    np.testing.assert_array_equal(frozen[key], base)
    assert float(np.abs(trained[key] - base).max()) > 1e-4  # by default the matrix trains
    assert _max_diff({k: v for k, v in frozen.items() if k != key}, {k: v for k, v in trained.items() if k != key}) > 1e-4
    info = _info(out)
    assert info["trainable_parameters"] == info["total_parameters"] - base.size
    assert "freeze_embeddings" not in TrainConfig(**TINY).key_fields()  # older checkpoints keep their keys
    assert dpr_mod.checkpoint_key(ds, fold, TrainConfig(**TINY)) != dpr_mod.checkpoint_key(
        ds, fold, TrainConfig(**{**TINY, "freeze_embeddings": True}))
    with pytest.raises(OdqaBenchError, match="freeze_embeddings"):
        TrainConfig(**{**TINY, "freeze_embeddings": "yes"})


def test_corrupt_training_state_restarts_cleanly(ds: Dataset, fold: Fold, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / dpr_mod.STATE_FILE).write_bytes(b"not a torch file")
    train_fold(ds, fold, TrainConfig(**TINY), out, progress=False)
    assert _info(out)["resumed_from_step"] == 0
    assert _max_diff(_weights(reference), _weights(out)) <= 1e-6


def test_cached_checkpoint_is_returned_without_training(ds: Dataset, fold: Fold, _cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(**{**TINY, "max_steps": 2})
    first = train_fold(ds, fold, cfg, progress=False)
    assert first.parent == _cache / "dpr" and first.name == dpr_mod.checkpoint_key(ds, fold, cfg)
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("trained again despite a finished checkpoint")

    monkeypatch.setattr(dpr_mod, "train_steps", boom)
    monkeypatch.setattr(dpr_mod, "build_examples", boom)
    assert train_fold(ds, fold, cfg, progress=False) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    other = dpr_mod.checkpoint_key(ds, get_fold(ds, 2, 5), cfg)
    assert other != first.name  # another fold is another checkpoint


def test_lora_trains_few_parameters_and_saves_a_merged_model(ds: Dataset, fold: Fold, reference: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from transformers import AutoModel

    ckpt = train_fold(ds, fold, TrainConfig(**{**TINY, "lora_r": 4}), tmp_path / "lora", progress=False)
    lora, full = _info(ckpt), _info(reference)
    assert lora["trainable_parameters"] < 0.01 * full["trainable_parameters"]
    assert lora["trainable_parameters"] == 2 * 2 * 2 * (4 * 32)  # layers x (query, value) x (A, B) x r*h
    model = AutoModel.from_pretrained(ckpt)
    assert not any("lora" in n for n, _ in model.named_parameters())
    trained = _weights(ckpt)
    tiny = load_base("tiny", None, seed=0).model.state_dict()
    q = "encoder.layer.0.attention.self.query.weight"
    k = "encoder.layer.0.attention.self.key.weight"
    assert float(np.abs(trained[q] - tiny[q].numpy()).max()) > 1e-5  # adapter merged into the query
    assert float(np.abs(trained[k] - tiny[k].numpy()).max()) == 0.0   # untouched module stays frozen
    pooling = json.loads((ckpt / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and pooling["word_embedding_dimension"] == 32


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(OdqaBenchError, match="pooling"):
        TrainConfig(pooling="max")
    with pytest.raises(OdqaBenchError, match="lora_r"):
        TrainConfig(lora_r=0)
    with pytest.raises(OdqaBenchError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(OdqaBenchError, match="unknown base"):
        load_base("bert-huge")
    with pytest.raises(OdqaBenchError, match="not a saved HF model folder"):
        load_base("path:/nonexistent/folder")


def test_cuda_device_without_cuda_is_a_user_error(ds: Dataset, fold: Fold, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the CPU-only error path does not apply")
    with pytest.raises(OdqaBenchError, match="CUDA is not available"):
        train_fold(ds, fold, TrainConfig(**{**TINY, "device": "cuda"}), tmp_path / "x", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_training_on_cuda(ds: Dataset, fold: Fold, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "device": "cuda", "max_steps": 10})
    ckpt = train_fold(ds, fold, cfg, tmp_path / "cuda", progress=False)
    losses = _info(ckpt)["losses"]
    assert is_trained(ckpt) and len(losses) == 10 and np.isfinite(losses).all()


# --- the dpr retriever ------------------------------------------------------------------------

def test_dpr_retriever_needs_a_dataset_and_a_valid_fold(ds: Dataset) -> None:
    from odqa_core.retrieval import get_retriever

    with pytest.raises(OdqaBenchError, match="needs dataset"):
        get_retriever("dpr", base="tiny", size=None, steps=2).index(ds.corpus)
    with pytest.raises(OdqaBenchError, match="fold=0"):
        get_retriever("dpr", dataset=ds, fold=0)
    with pytest.raises(OdqaBenchError, match="bad parameters"):
        get_retriever("dpr", dataset=ds, no_such_setting=1)


def test_dpr_retriever_trains_then_searches(ds: Dataset) -> None:
    from odqa_core.retrieval import get_retriever, retrieve, retriever_names

    if "dense" not in retriever_names():
        pytest.skip("the 'dense' retriever is not available (odqa_core.retrieval.dense missing or its extras)")
    params = {k: v for k, v in TINY.items() if k not in ("base", "size", "max_steps")}
    r = get_retriever("dpr", dataset=ds, fold=2, base="tiny", size=None, steps=3, **params)
    r.index(ds.corpus)
    assert r.checkpoint is not None and is_trained(r.checkpoint)
    run = retrieve(r, ds, k=5)
    assert run.indices.shape == (ds.n_queries, 5) and (run.indices >= 0).all()
    assert np.all(np.diff(run.scores, axis=1) <= 1e-6)
    # the gate names the checkpoint by its recipe; caches keep the weights' hash
    from odqa_core.baseline.settings import ENCODER, retriever_settings

    key = r.checkpoint.name
    gate = retriever_settings(r)[ENCODER]
    cache = r.dense_retriever.encoder.fingerprint
    assert gate.startswith(f"trained:dpr:{key}|") and cache.startswith(f"path:{key}:")
    assert gate.split("|", 1)[1] == cache.split("|", 1)[1]


def test_recipe_key_names_only_folders_this_harness_trained(reference: Path, tmp_path: Path) -> None:
    from odqa_core.encoders.models import recipe_key

    assert recipe_key(reference) is None  # trained into a folder not named by its key
    named = tmp_path / _info(reference)["key"]
    named.mkdir()
    (named / "odqa_dpr.json").write_text((reference / "odqa_dpr.json").read_text(encoding="utf-8"), encoding="utf-8")
    assert recipe_key(named) == f"dpr:{named.name}"
    (named / "odqa_dpr.json").write_text("{not json", encoding="utf-8")
    assert recipe_key(named) is None
    assert recipe_key(tmp_path) is None


def test_training_refuses_a_fold_that_leaks(tmp_path):
    """A test question's gold passage on the training side stops training before it starts."""
    from dataclasses import replace

    from odqa_core.data import load_dataset
    from odqa_core.data.folds import kfold_by_group
    from odqa_core.errors import OdqaBenchError
    from odqa_core.training.dpr import TrainConfig, train_fold

    ds = load_dataset("default")
    fold = kfold_by_group(ds, 5, 0)[0]
    q = fold.test_query_ids[0]
    gold = next(iter(ds.qrels[q]))
    leaky = replace(fold, train_doc_ids=[*fold.train_doc_ids, gold])
    with pytest.raises(OdqaBenchError, match=f"gold passage {gold} of test question {q}"):
        train_fold(ds, leaky, TrainConfig(base="tiny", max_steps=1), out_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
