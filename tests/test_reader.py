"""Extractive reader (span decoding, windows, training determinism/resume/cache, negatives),
the Fusion-in-Decoder generative reader, and end-to-end scoring plumbing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from odqa_core.data import load_dataset, load_squad
from odqa_core.data.folds import get_fold
from odqa_core.errors import OdqaBenchError
from odqa_core.perfstats import torch_threads
from odqa_core.reader import (
    ExtractiveReader,
    Prediction,
    build_reader,
    choose,
    decode_spans,
    encode_windows,
    load_reader,
)
from odqa_core.reader.train import (
    STATE_FILE,
    Feature,
    TrainConfig,
    _collate,
    build_reader_examples,
    is_trained,
    make_features,
    read_info,
    train_reader,
)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and immune to a busy machine's thread contention)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tok():
    from odqa_core.encoders import tiny_bert

    return tiny_bert(layers=1, hidden=8, heads=1).tokenizer


# ------------------------------------------------------------------ span decoding


def test_decode_respects_max_length_order_and_context():
    n = 50
    offsets = [None] * 5 + [(i, i + 1) for i in range(n - 6)] + [None]  # 5 question/special tokens, [SEP] last
    start = np.zeros(n)
    end = np.zeros(n)
    start[1] = 100.0  # a question token: never a span start
    start[6], end[45] = 9.0, 9.0  # the best pair is 40 tokens long: too long
    end[20] = 5.0  # best legal end for start 6 (15 tokens)
    start[30] = 4.0  # (30, 45) is legal but scores 13 < 14
    end[3] = 50.0  # a question token: never an end
    spans = decode_spans(start, end, offsets, n_best=20, max_answer_length=30)
    assert spans, "no span decoded"
    assert all(s.end_token >= s.start_token and s.end_token - s.start_token + 1 <= 30 for s in spans)
    assert all(offsets[s.start_token] is not None and offsets[s.end_token] is not None for s in spans)
    best = spans[0]
    assert (best.start_token, best.end_token) == (6, 20) and best.score == pytest.approx(14.0)
    assert (best.start_char, best.end_char) == (offsets[6][0], offsets[20][1])
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
    longer = decode_spans(start, end, offsets, n_best=20, max_answer_length=40)
    assert (longer[0].start_token, longer[0].end_token) == (6, 45)
    assert decode_spans(start, end, [None] * n) == []


def test_span_maps_to_exact_characters(tok):
    ctx = "제주도는 섬이다. 한라산은 해발 1,947미터의 산이다."
    answer = "1,947미터"
    win = encode_windows(tok, ["한라산 높이는?"], [ctx], max_length=64, doc_stride=8, max_query_length=16)
    assert len(win.input_ids) == 1
    offs = win.offsets[0]
    a0 = ctx.index(answer)
    s = next(t for t, o in enumerate(offs) if o is not None and o[0] == a0)
    e = next(t for t, o in enumerate(offs) if o is not None and o[1] == a0 + len(answer))
    start, end = np.zeros(len(offs)), np.zeros(len(offs))
    start[s], end[e] = 4.0, 4.0
    best = decode_spans(start, end, offs)[0]
    assert ctx[best.start_char : best.end_char] == answer


class KeyedQA(torch.nn.Module):
    """A stand-in QA model: large start/end logits wherever the given token ids occur."""

    def __init__(self, start_id: int, end_id: int, positions: int = 512):
        super().__init__()
        from transformers import BertConfig

        self.config = BertConfig(max_position_embeddings=positions)
        self.start_id, self.end_id = start_id, end_id
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        from types import SimpleNamespace

        st = (input_ids == self.start_id).float() * 10.0
        en = (input_ids == self.end_id).float() * 10.0
        return SimpleNamespace(start_logits=st, end_logits=en)


def test_windows_cover_a_long_passage_and_find_the_answer_in_a_later_window(tok):
    filler = "가나다라마바사아자차카타파하 " * 12  # 180 characters, one token each but spaces
    ctx = filler + "xq7 " + filler
    win = encode_windows(tok, ["어디?"], [ctx], max_length=64, doc_stride=16, max_query_length=16)
    assert len(win.input_ids) > 3 and all(len(ids) <= 64 for ids in win.input_ids)
    covered = set()
    spans = []
    for offs in win.offsets:
        ctx_offs = [o for o in offs if o is not None]
        spans.append((ctx_offs[0][0], ctx_offs[-1][1]))
        for a, b in ctx_offs:
            covered.update(range(a, b))
    assert covered == {i for i, ch in enumerate(ctx) if not ch.isspace()}  # every character is in a window
    ctx_tokens = [[t for t, o in enumerate(offs) if o is not None] for offs in win.offsets]
    for w in range(len(win.offsets) - 1):  # consecutive windows overlap by doc_stride tokens
        tail = [win.offsets[w][t] for t in ctx_tokens[w][-16:]]
        head = [win.offsets[w + 1][t] for t in ctx_tokens[w + 1][:16]]
        assert tail == head
    a0 = ctx.index("xq7")
    assert not spans[0][0] <= a0 < spans[0][1], "the answer must lie beyond the first window"
    vocab = tok.get_vocab()
    model = KeyedQA(vocab["x"], vocab["##7"])
    reader = ExtractiveReader(model, tok, max_length=64, doc_stride=16, max_query_length=16, weights_id="keyed")
    pred = reader.predict(["어디?"], [[ctx]])[0]
    assert (pred.text, pred.start_char, pred.end_char, pred.passage_index) == ("xq7", a0, a0 + 3, 0)
    assert pred.answerable and pred.no_answer_score == 0.0


def test_choose_prefers_answerable_and_weights_retrieval():
    a = Prediction("a", 1.0, 0, 0, 1, 1.0, 0.0, True)
    b = Prediction("b", 0.5, 1, 0, 1, 0.5, 0.0, True)
    c = Prediction("c", 9.0, 2, 0, 1, 9.0, 10.0, False)  # rejected: its [CLS] score is higher
    assert choose([a, b, c]).text == "a"
    assert choose([a, b, c], [0.0, 10.0, 0.0], weight=0.1).text == "b"
    assert choose([a, b, c], [0.0, 10.0, 0.0], weight=0.1).score == pytest.approx(1.5)
    assert choose([c]).text == "c"  # every passage rejected: still answer with the best span
    assert choose([]).passage_index == -1


def test_reader_predict_shapes_and_errors():
    reader = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=16)
    preds = reader.predict(["질문?", "other"], [["가나다 라마바", "xyz abc"], []])
    assert len(preds) == 2 and preds[1].passage_index == -1 and preds[1].text == ""
    p = preds[0]
    assert p.passage_index in (0, 1) and p.text == ["가나다 라마바", "xyz abc"][p.passage_index][p.start_char : p.end_char]
    with pytest.raises(OdqaBenchError, match="max_length 999 exceeds"):
        build_reader("tiny", "L1", max_length=999)
    with pytest.raises(OdqaBenchError, match="doc_stride"):
        encode_windows(reader.tokenizer, ["q"], ["c"], max_length=32, doc_stride=20, max_query_length=16)
    with pytest.raises(OdqaBenchError, match="one score per passage"):
        reader.predict(["q"], [["a", "b"]], retrieval_scores=[[1.0]], weight=1.0)


def test_questions_are_read_as_a_line_file_carries_them(monkeypatch):
    """A trailing space or a line break in a question is a token to a SentencePiece tokenizer
    (e5's); the reader collapses whitespace, so a dataset's question and the same question from
    eval_rag's line file read alike."""
    from odqa_core.reader import extractive

    reader = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=16)
    passages = [["가나다 라마바 사아자", "xyz abc def"]]
    plain = reader.predict_passages(["누가 썼나?"], passages)
    seen: list[list[str]] = []
    real = extractive.encode_windows

    def spy(tokenizer, questions, contexts, *args):
        seen.append(list(questions))
        return real(tokenizer, questions, contexts, *args)

    monkeypatch.setattr(extractive, "encode_windows", spy)
    variants = ["누가 썼나? ", " 누가\n썼나?", "누가  썼나?\t"]
    for variant in variants:
        assert reader.predict_passages([variant], passages) == plain
    assert seen == [["누가 썼나?"] * 2] * len(variants)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)")
def test_reader_on_cuda_matches_cpu():
    cpu = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=16)
    gpu = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=16, device="cuda")
    q, ps = ["제주도?"], [["제주도는 대한민국에서 가장 큰 섬이다", "한라산은 높다"]]
    a, b = cpu.predict(q, ps)[0], gpu.predict(q, ps)[0]
    assert (a.text, a.passage_index) == (b.text, b.passage_index) and a.score == pytest.approx(b.score, abs=1e-4)


# ------------------------------------------------------------------ training data


def test_negatives_contain_no_answer_and_positives_hold_the_span():
    from odqa_core.training.negatives import contains_answer

    ds = load_dataset("default")
    fold = get_fold(ds, 1, n_folds=2)
    ex = build_reader_examples(ds, fold, negatives=2, tokenizer="regex", depth=20)
    pos = [e for e in ex if not e.is_negative]
    neg = [e for e in ex if e.is_negative]
    assert pos and neg
    train_docs, test_q = set(fold.train_doc_ids), set(fold.test_query_ids)
    for e in ex:
        assert e.query_id not in test_q and e.doc_id in train_docs
    for e in pos:
        assert e.context[e.answer_start : e.answer_start + len(e.answer_text)] == e.answer_text
        assert e.answer_text in ds.answers[e.query_id]
    for e in neg:
        assert not contains_answer(e.context, ds.answers[e.query_id])
        assert e.doc_id not in ds.qrels[e.query_id]
    assert max(sum(1 for e in neg if e.query_id == q) for q in {e.query_id for e in neg}) <= 2


def test_negative_share_gives_a_seeded_share_of_questions_negatives():
    ds = load_dataset("default")
    fold = get_fold(ds, 1, n_folds=2)
    every = build_reader_examples(ds, fold, negatives=1, tokenizer="regex")
    half = build_reader_examples(ds, fold, negatives=1, tokenizer="regex", share=0.5, seed=3)
    asked = {e.query_id for e in every if not e.is_negative}
    with_neg = {e.query_id for e in half if e.is_negative}
    assert [e for e in half if not e.is_negative] == [e for e in every if not e.is_negative]
    assert len(with_neg) <= round(0.5 * len(asked)) and with_neg < {e.query_id for e in every if e.is_negative}
    assert {e for e in half if e.is_negative} <= {e for e in every if e.is_negative}
    assert half == build_reader_examples(ds, fold, negatives=1, tokenizer="regex", share=0.5, seed=3)
    other = build_reader_examples(ds, fold, negatives=1, tokenizer="regex", share=0.5, seed=4)
    assert {e.query_id for e in other if e.is_negative} != with_neg


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, True, "half"])
def test_negative_share_outside_zero_one_is_refused(bad):
    with pytest.raises(OdqaBenchError, match="negative_share"):
        TrainConfig(negative_share=bad)


def test_config_overrides_read_each_field_as_its_type():
    from odqa_core.reader.train import config_overrides

    c = config_overrides("negatives=1, negative_share=0.5,max_steps=none,autocast=bfloat16,lr=2e-4", TrainConfig())
    assert (c.negatives, c.negative_share, c.max_steps, c.autocast, c.lr) == (1, 0.5, None, "bfloat16", 2e-4)
    assert config_overrides("", TrainConfig()) == TrainConfig()
    for bad, match in [("lr=abc", "reader setting lr: expects float, got 'abc'"), ("foo=1", "expected FIELD=VALUE"),
                       ("negatives", "expected FIELD=VALUE"), ("negative_share=2", "negative_share")]:
        with pytest.raises(OdqaBenchError, match=match):
            config_overrides(bad, TrainConfig())


def test_new_negative_settings_enter_the_key_only_off_their_default():
    assert "negative_share" not in TrainConfig().key_fields() and "negative_windows" not in TrainConfig().key_fields()
    keyed = TrainConfig(negative_share=0.5, negative_windows=1).key_fields()
    assert keyed["negative_share"] == 0.5 and keyed["negative_windows"] == 1


def test_annotated_answer_start_wins_over_first_occurrence(tmp_path):
    ctx = "In 1990 the band formed. The album came out in 1990 as well."
    second = ctx.rindex("1990")
    obj = {"data": [
        {"title": "Band", "paragraphs": [{"context": ctx, "qas": [
            {"id": "q1", "question": "When did the album come out?", "answers": [{"text": "1990", "answer_start": second}]}]}]},
        {"title": "Other", "paragraphs": [{"context": "Nothing about bands here at all.", "qas": [
            {"id": "q2", "question": "What is here?", "answers": [{"text": "Nothing", "answer_start": 0}]}]}]},
    ]}
    path = tmp_path / "tiny_squad.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    ds = load_squad(path)
    fold = next(f for f in (get_fold(ds, i, n_folds=2) for i in (1, 2)) if "q1" in f.train_query_ids)
    ex = [e for e in build_reader_examples(ds, fold, negatives=0, tokenizer="regex") if e.query_id == "q1"]
    assert [e.answer_start for e in ex] == [second]


def test_collate_pads_windows_and_zeroes_missing_token_types():
    feats = [Feature((2, 7, 3), None, 1, 1), Feature((2, 8, 9, 3, 5), None, 0, 0)]
    batch = _collate(feats, 4, "cpu")
    assert list(batch) == ["input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"]
    assert batch["input_ids"].tolist() == [[2, 7, 3, 4, 4], [2, 8, 9, 3, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0] * 5] * 2
    assert batch["start_positions"].tolist() == [1, 0] and batch["end_positions"].tolist() == [1, 0]
    typed = _collate([Feature((2, 7, 3), (0, 1, 1), 0, 0), Feature((2, 3), (0, 0), 0, 0)], 0, "cpu")
    assert typed["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert all(v.dtype == torch.int64 for v in typed.values())


def test_reader_batches_windows_longest_first():
    reader = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=16, batch_size=2)
    win = reader.windows(["q", "question two", "q3"], ["short", "a somewhat longer passage here", "mid passage"])
    seen: list[dict] = []
    hook = reader.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(dict(kw)), with_kwargs=True)
    try:
        logits = reader.logits(win)
    finally:
        hook.remove()
    order = sorted(range(len(win.input_ids)), key=lambda w: -len(win.input_ids[w]))
    assert [len(b["input_ids"]) for b in seen] == [2, 1]
    for b, rows in zip(seen, (order[:2], order[2:])):
        for r, w in enumerate(rows):
            n = len(win.input_ids[w])
            assert b["input_ids"][r, :n].tolist() == win.input_ids[w]
            assert b["attention_mask"][r].tolist() == [1] * n + [0] * (b["input_ids"].shape[1] - n)
            types = win.token_type_ids[w] if win.token_type_ids is not None else [0] * n
            assert b["token_type_ids"][r, :n].tolist() == types
            assert len(logits[w][0]) == n


def test_features_label_the_answer_tokens(tok):
    from odqa_core.reader.train import ReaderExample

    filler = "가나다라마바사아자차카타파하 " * 6
    ctx = filler + "xq7 " + filler
    ex = [ReaderExample("q", "어디?", "d", ctx, "xq7", ctx.index("xq7")), ReaderExample("q", "어디?", "n", filler)]
    feats = make_features(tok, ex, max_length=48, doc_stride=12, max_query_length=16)
    win = encode_windows(tok, ["어디?", "어디?"], [ctx, filler], max_length=48, doc_stride=12, max_query_length=16)
    labelled = [(w, f) for w, f in enumerate(feats) if f.start != 0]
    assert labelled, "no window labels the answer"
    for w, f in labelled:
        assert win.sample[w] == 0
        o = win.offsets[w]
        assert ctx[o[f.start][0] : o[f.end][1]] == "xq7"
    assert all(f.start == f.end == 0 for w, f in enumerate(feats) if win.sample[w] == 1)  # negative: [CLS]


def test_negative_windows_keep_the_windows_sharing_most_question_tokens(tok):
    from odqa_core.reader.train import ReaderExample

    filler = "가나다라마바사아자차카타파하 " * 6
    neg = filler + "고양이 강아지 " + filler
    ex = [ReaderExample("q", "고양이 강아지?", "n", neg), ReaderExample("q", "고양이 강아지?", "m", filler)]
    args = dict(max_length=48, doc_stride=12, max_query_length=16)
    every = make_features(tok, ex, **args)
    kept = make_features(tok, ex, negative_windows=1, **args)
    win = encode_windows(tok, [e.question for e in ex], [e.context for e in ex], **args)
    assert len(every) == len(win.input_ids) and len(kept) == 2
    shared = [len({t for t, o in zip(ids, win.offsets[w]) if o is not None}
                  & {t for t, o in zip(ids, win.offsets[w]) if o is None}) for w, ids in enumerate(win.input_ids)]
    for sample, feat in zip((0, 1), kept):
        windows = [w for w in range(len(win.input_ids)) if win.sample[w] == sample]
        best = max(windows, key=lambda w: (shared[w], -w))
        assert feat.input_ids == tuple(win.input_ids[best]) and feat.start == feat.end == 0
    assert shared[[w for w in range(len(shared)) if win.sample[w] == 0][0]] < max(shared)
    assert len(make_features(tok, ex, negative_windows=2, **args)) == 4

# ------------------------------------------------------------------ training

TINY = TrainConfig(base="tiny", size="L1", max_length=64, doc_stride=16, max_query_length=24, lr=1e-3,
                   weight_decay=0.0, max_steps=6, warmup=0.0, batch_size=4, negatives=1, bm25_tokenizer="regex",
                   save_every=2)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_training_is_deterministic_resumable_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset("default")
    fold = get_fold(ds, 1, n_folds=2)
    a = train_reader(ds, fold, TINY, tmp_path / "a", progress=False)
    b = train_reader(ds, fold, TINY, tmp_path / "b", progress=False)
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)
    init = build_reader("tiny", "L1", seed=0, max_length=64).model.state_dict()
    assert not torch.equal(wa["qa_outputs.weight"], init["qa_outputs.weight"]), "training changed nothing"
    info = read_info(a)
    assert info["steps"] == 6 and len(info["losses"]) == 6 and info["negatives"] > 0
    # interrupted after 3 steps, then resumed: the same weights as the uninterrupted run
    c = train_reader(ds, fold, TINY, tmp_path / "c", stop_after=3, progress=False)
    assert not is_trained(c) and (c / STATE_FILE).is_file()
    c = train_reader(ds, fold, TINY, tmp_path / "c", progress=False)
    assert is_trained(c) and not (c / STATE_FILE).exists()
    assert read_info(c)["resumed_from_step"] == 3 and read_info(c)["losses"] == info["losses"]
    wc = _weights(c)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # the cache: the second call returns the finished checkpoint without training
    first = train_reader(ds, fold, TINY, progress=False)
    assert first.parent == tmp_path / "cache" / "reader" and is_trained(first)
    import odqa_core.reader.train as train_mod

    monkeypatch.setattr(train_mod, "train_steps", lambda *a, **k: pytest.fail("retrained a cached checkpoint"))
    assert train_reader(ds, fold, TINY, progress=False) == first
    # a different seed is a different checkpoint
    other = train_mod.checkpoint_key(ds, fold, TrainConfig(**{**TINY.key_fields(), "seed": 1}))
    assert other != first.name
    reader = load_reader(first)
    assert (reader.max_length, reader.doc_stride, reader.max_query_length) == (64, 16, 24)
    q = ds.query_texts[:2]
    assert [p.text for p in reader.predict(q, [ds.corpus.texts[:3]] * 2)] == \
        [p.text for p in load_reader(a).predict(q, [ds.corpus.texts[:3]] * 2)]


def test_train_config_rejects_bad_values():
    with pytest.raises(OdqaBenchError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(OdqaBenchError, match="warmup"):
        TrainConfig(warmup=1.5)
    with pytest.raises(OdqaBenchError, match="max_steps"):
        TrainConfig(max_steps=0)


# ------------------------------------------------------------------ Fusion-in-Decoder


def test_fid_fuses_ten_long_passages_without_truncation(tok):
    from odqa_core.reader.generative import fid_inputs, tiny_fid_reader

    reader = tiny_fid_reader(seed=0, tokenizer=tok, max_length=256, max_new_tokens=4)
    syllables = [chr(0xAC00 + 7 * i) for i in range(200)]
    words = [[syllables[(j * 13 + i) % 200] for i in range(200)] for j in range(10)]  # 200 tokens each
    answer_char = "z"
    words[-1][150] = answer_char
    passages = [" ".join(w) for w in words]
    fused = reader.fuse("정답은?", passages)
    n, per = fused.input_ids.shape
    assert n == 10 and per > 200
    assert fused.length == 10 * per > 512
    assert fused.hidden.shape[:2] == (1, 10 * per)
    # nothing truncated: every passage character is encoded (one token per syllable here)
    assert all(int(m.sum()) == per for m in fused.mask.reshape(10, per))
    ids = fused.input_ids.reshape(-1)
    z = tok.convert_tokens_to_ids(answer_char)
    where = (ids == z).nonzero().flatten().tolist()
    assert len(where) == 1 and where[0] > 9 * per and where[0] > 512 and int(fused.mask[0, where[0]]) == 1
    # the decoder sees it: changing that one token in the last passage changes the first-step logits
    swapped = list(passages)
    swapped[-1] = passages[-1].replace(answer_char, "y")
    before = reader.first_step_logits(fused)
    after = reader.first_step_logits(reader.fuse("정답은?", swapped))
    assert not torch.allclose(before, after)
    # a single 512-token window over the concatenated passages would have cut it off
    naive = tok(" ".join(fid_inputs("정답은?", passages)), truncation=True, max_length=512)["input_ids"]
    assert z not in naive
    text = reader.generate("정답은?", passages)
    assert isinstance(text, str)
    assert reader.generate("정답은?", passages) == text  # greedy: deterministic


# ------------------------------------------------------------------ end to end


class OracleReader:
    """Extracts a gold answer from any passage that contains one (answerable), else the first
    word (rejected): EM@k then equals 'answer present in the top k'."""

    def __init__(self, answers_by_question):
        self.answers = answers_by_question

    def predict_passages(self, questions, passages_per_question, show_progress=False):
        out = []
        for q, ps in zip(questions, passages_per_question):
            row = []
            for i, p in enumerate(ps):
                hit = next((a for a in self.answers[q] if a and a in p), None)
                if hit is not None:
                    s = p.index(hit)
                    row.append(Prediction(hit, 1.0, i, s, s + len(hit), 1.0, 0.0, True))
                else:
                    w = p.split()[0] if p.split() else ""
                    row.append(Prediction(w, 0.5, i, 0, len(w), 0.5, 1.0, False))
            out.append(row)
        return out


def test_run_e2e_with_an_oracle_reader_matches_answer_presence():
    from odqa_core.e2e import run_e2e, run_e2e_sweep
    from odqa_core.retrieval import get_retriever

    ds = load_dataset("default")
    oracle = OracleReader({t: ds.answers[q] for q, t in zip(ds.query_ids, ds.query_texts)})
    bm25 = get_retriever("bm25", tokenizer="regex").index(ds.corpus)
    res = run_e2e_sweep(ds, bm25, oracle, [1, 5], "ko")
    for k in (1, 5):
        r = res[k]
        assert len(r["em"]) == len(r["query_ids"]) == ds.n_queries
        assert np.array_equal(r["em"], r["answer_hit"])
        assert np.all(r["f1"] >= r["em"])
        assert np.all(r["gold_em"] == 1.0)
    assert res[5]["em"].mean() >= res[1]["em"].mean()
    assert 0.0 < res[1]["em"].mean() < 1.0
    one = run_e2e(ds, bm25, oracle, 1, "ko")
    assert np.array_equal(one["em"], res[1]["em"])
    with pytest.raises(OdqaBenchError, match="unknown lang"):
        run_e2e(ds, bm25, oracle, 1, "fr")


def test_pairs_read_once_give_the_same_answers_as_reading_each_run():
    from odqa_core.e2e import read_runs, run_e2e_sweep
    from odqa_core.retrieval import get_retriever, retrieve

    ds = load_dataset("default")
    oracle = OracleReader({t: ds.answers[q] for q, t in zip(ds.query_ids, ds.query_texts)})
    calls = []
    read_all = oracle.predict_passages
    oracle.predict_passages = lambda qs, ps, show_progress=False: calls.append(sum(map(len, ps))) or read_all(qs, ps)
    runs = [retrieve(get_retriever(name, tokenizer="regex").index(ds.corpus), ds, 5) for name in ("bm25", "tfidf")]
    qids = [q for q in ds.query_ids if ds.answers.get(q)]
    read = read_runs(oracle, [(ds, r) for r in runs], qids, 5)
    distinct = {(q, ds.corpus.texts[j]) for r in runs for q, row in zip(r.query_ids, r.indices) for j in row if j >= 0}
    assert calls == [len(distinct)] == [len(read)]  # one read of each distinct pair
    assert len(read) < sum(int((r.indices >= 0).sum()) for r in runs)  # the runs share passages
    for r in runs:
        direct = run_e2e_sweep(ds, r, oracle, [1, 5], "ko", query_ids=qids, gold_baseline=False)
        shared = run_e2e_sweep(ds, r, oracle, [1, 5], "ko", query_ids=qids, gold_baseline=False, candidates=read)
        for k in (1, 5):
            assert np.array_equal(direct[k]["em"], shared[k]["em"]) and np.array_equal(direct[k]["f1"], shared[k]["f1"])
            assert [p.passage_index for p in direct[k]["predictions"]] == [p.passage_index for p in shared[k]["predictions"]]
    deeper = retrieve(get_retriever("bm25", tokenizer="regex").index(ds.corpus), ds, 10)
    with pytest.raises(OdqaBenchError, match="was not read"):
        run_e2e_sweep(ds, deeper, oracle, [10], "ko", query_ids=qids, gold_baseline=False, candidates=read)


def test_run_e2e_with_the_tiny_reader():
    from odqa_core.e2e import run_e2e
    from odqa_core.retrieval import get_retriever, retrieve

    ds = load_dataset("default")
    qids = ds.query_ids[:6]
    reader = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=16, max_query_length=24)
    bm25 = get_retriever("bm25", tokenizer="regex").index(ds.corpus)
    run = retrieve(bm25, ds, 10)
    res = run_e2e(ds, run, reader, 3, "ko", query_ids=qids)
    assert res["query_ids"] == qids and res["em"].shape == res["f1"].shape == (6,)
    assert np.all(res["f1"] >= res["em"]) and np.all((res["f1"] >= 0) & (res["f1"] <= 1))
    pos = {q: i for i, q in enumerate(run.query_ids)}
    for q, p in zip(qids, res["predictions"]):
        top = [ds.corpus.texts[j] for j in run.indices[pos[q], :3] if j >= 0]
        assert p.text == top[p.passage_index][p.start_char : p.end_char]
    with pytest.raises(OdqaBenchError, match="depth"):
        run_e2e(ds, run.truncate(2), reader, 3, "ko", query_ids=qids)


def test_a_damaged_cached_checkpoint_is_trained_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))
    from odqa_core.reader.train import trained_reader

    ds = load_dataset("default")
    fold = get_fold(ds, 1, n_folds=2)
    first = train_reader(ds, fold, TINY, progress=False)
    good = {k: v.clone() for k, v in _weights(first).items()}  # not a view of the file torn below
    w = first / "model.safetensors"
    torn = w.read_bytes()[:100]
    w.unlink()
    w.write_bytes(torn)  # a torn file behind a DONE marker
    reader = trained_reader(ds, fold, TINY)
    again = _weights(first)
    assert is_trained(first) and [k for k in good if not torch.equal(good[k], again[k])] == []
    assert reader.predict(ds.query_texts[:1], [ds.corpus.texts[:2]])[0].passage_index >= 0
