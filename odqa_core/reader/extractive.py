"""Extractive reader: a span head (start/end logits from a linear layer on the encoder's token
states) over a packaged encoder, sliding windows over long passages, and n-best span decoding
mapped back to character spans of the original passage text.

Windows follow HF ``run_qa.py``: question first, ``truncation='only_second'``, ``max_length``
tokens per window and ``doc_stride`` tokens of overlap between consecutive windows of one
passage. A passage's no-answer score is the smallest [CLS] score over its windows; a passage
whose best span does not beat it is rejected, unless every passage of the question is.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.batching import Tokenized, pad_batch, to_torch, token_batches
from ..encoders.models import TRAINED_INFO_FILES
from ..errors import OdqaBenchError
from ..io import atomic_write_json

__all__ = ["Prediction", "Span", "Windows", "ExtractiveReader", "encode_windows", "decode_spans", "span_text",
           "choose", "build_qa_model", "build_reader", "load_reader", "READER_INFO"]

log = logging.getLogger(__name__)

READER_INFO = TRAINED_INFO_FILES["reader"]
_SETTINGS = ("max_length", "doc_stride", "max_query_length", "max_answer_length", "n_best")


@dataclass(frozen=True)
class Span:
    """One decoded span of a window: token positions, ``start + end`` logit score, and the
    character span ``[start_char, end_char)`` of the passage text."""

    start_token: int
    end_token: int
    score: float
    start_char: int
    end_char: int


@dataclass(frozen=True)
class Prediction:
    """A reader answer. ``score`` = ``span_score`` (+ weight × retrieval score);
    ``passage_index`` is the position in the question's passage list (-1: no passage had a span);
    ``answerable`` is False when the span did not beat the passage's [CLS] no-answer score."""

    text: str
    score: float
    passage_index: int
    start_char: int
    end_char: int
    span_score: float = float("-inf")
    no_answer_score: float = float("-inf")
    answerable: bool = False


NO_PREDICTION = Prediction("", float("-inf"), -1, -1, -1)


@dataclass
class Windows:
    """Tokenised (question, passage) windows. ``offsets[w][t]`` is the character span of token
    ``t`` in its passage, or None for question/special/padding tokens; ``sample[w]`` is the
    index of the (question, passage) pair window ``w`` comes from."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    offsets: list[list[tuple[int, int] | None]]
    sample: list[int]
    cls_index: list[int]


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OdqaBenchError(f"reader {name}={value!r}: must be an integer >= {low}")
    return value


def _truncate_question(tokenizer: Any, question: str, max_query_length: int) -> str:
    """Cut a question after its first ``max_query_length`` tokens (BERT SQuAD's max_query_length)."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offs = enc["offset_mapping"]
    if len(offs) <= max_query_length:
        return question
    return question[: offs[max_query_length - 1][1]]


def encode_windows(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], max_length: int = 384,
                   doc_stride: int = 128, max_query_length: int = 64) -> Windows:
    """Split each (question, context) pair into windows of at most ``max_length`` tokens with
    ``doc_stride`` tokens of overlap; only context tokens keep their character offsets."""
    if len(questions) != len(contexts):
        raise OdqaBenchError(f"reader: {len(questions)} questions for {len(contexts)} passages")
    _check_int("max_length", max_length, 8)
    _check_int("doc_stride", doc_stride, 0)
    _check_int("max_query_length", max_query_length, 1)
    room = max_length - max_query_length - tokenizer.num_special_tokens_to_add(pair=True)
    if doc_stride >= room:
        raise OdqaBenchError(f"reader doc_stride={doc_stride} must be smaller than max_length - max_query_length - "
                             f"special tokens = {room}")
    if not getattr(tokenizer, "is_fast", False):
        raise OdqaBenchError("the reader needs a fast (Rust) tokenizer for character offsets")
    out = Windows([], None, [], [], [])
    if not questions:
        return out
    qs = [_truncate_question(tokenizer, q, max_query_length) for q in questions]
    enc = tokenizer(qs, list(contexts), truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    types = enc.get("token_type_ids")
    out.token_type_ids = [] if types is not None else None
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    for w, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(w)
        out.input_ids.append(list(ids))
        if out.token_type_ids is not None:
            out.token_type_ids.append(list(types[w]))
        out.offsets.append([tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][w], seq)])
        out.sample.append(int(enc["overflow_to_sample_mapping"][w]))
        out.cls_index.append(ids.index(cls_id) if cls_id in ids else 0)
    return out


def decode_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: Sequence[tuple[int, int] | None],
                 n_best: int = 20, max_answer_length: int = 30) -> list[Span]:
    """The best spans of one window: top ``n_best`` start × top ``n_best`` end positions among
    context tokens, ``end >= start``, at most ``max_answer_length`` tokens; best first (ties:
    earlier start, then shorter)."""
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    ctx = np.array([i for i, o in enumerate(offsets[: len(start_logits)]) if o is not None], dtype=np.int64)
    if ctx.size == 0:
        return []
    starts = ctx[np.lexsort((ctx, -start_logits[ctx]))][:n_best]
    ends = ctx[np.lexsort((ctx, -end_logits[ctx]))][:n_best]
    spans = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_length:
                continue
            spans.append(Span(int(s), int(e), float(start_logits[s] + end_logits[e]), int(offsets[s][0]), int(offsets[e][1])))
    spans.sort(key=lambda x: (-x.score, x.start_token, x.end_token))
    return spans[:n_best]


def span_text(context: str, start_char: int, end_char: int) -> tuple[str, int, int]:
    """The passage text of a span with surrounding white space trimmed (SentencePiece offsets
    may include the space before a word), and the trimmed character span."""
    s, e = start_char, end_char
    while s < e and context[s].isspace():
        s += 1
    while e > s and context[e - 1].isspace():
        e -= 1
    return context[s:e], s, e


def choose(candidates: Sequence[Prediction], retrieval_scores: Sequence[float] | None = None,
           weight: float = 0.0) -> Prediction:
    """One answer from per-passage candidates: the highest ``span score + weight × retrieval
    score`` among answerable ones, else among all (open-domain QA always answers)."""
    best: Prediction | None = None
    best_key: tuple[bool, float, int] | None = None
    for i, c in enumerate(candidates):
        if c.passage_index < 0 or not np.isfinite(c.span_score):
            continue
        r = float(retrieval_scores[i]) if (retrieval_scores is not None and weight) else 0.0
        score = c.span_score + weight * r if weight else c.span_score
        key = (c.answerable, score, -i)
        if best_key is None or key > best_key:
            best_key, best = key, Prediction(c.text, score, c.passage_index, c.start_char, c.end_char, c.span_score,
                                             c.no_answer_score, c.answerable)
    return best if best is not None else NO_PREDICTION


@dataclass
class ExtractiveReader:
    """A ``BertForQuestionAnswering``-style model plus its fast tokenizer and decoding settings."""

    model: Any
    tokenizer: Any
    name: str = "reader"
    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    batch_size: int = 32
    device: str = "cpu"
    weights_id: str | None = None
    threads: int | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from ..encoders.models import check_device

        for name in _SETTINGS + ("batch_size",):
            _check_int(name, getattr(self, name), 0 if name == "doc_stride" else 1)
        if self.threads is not None:
            _check_int("threads", self.threads, 1)
        limit = int(getattr(self.model.config, "max_position_embeddings", self.max_length))
        if self.max_length > limit:
            raise OdqaBenchError(f"reader {self.name}: max_length {self.max_length} exceeds the model's {limit} positions")
        self.device = check_device(self.device)
        self.model.to(self.device)
        self.model.eval()

    @property
    def fingerprint(self) -> str:
        """Weights and every decoding setting: changes to either change the answers."""
        if self._fingerprint is None:
            from ..encoders.models import state_dict_sha256

            weights = self.weights_id or f"{self.name}:{state_dict_sha256(self.model)[:16]}"
            settings = ",".join(f"{k}={getattr(self, k)}" for k in _SETTINGS)
            self._fingerprint = f"{weights}|{settings}"
        return self._fingerprint

    def windows(self, questions: Sequence[str], contexts: Sequence[str]) -> Windows:
        """Windows to read. Questions are read with their whitespace collapsed, as a
        one-question-per-line file (eval_rag's) carries them: a trailing space or a line break
        in a question is a token to the tokenizer, and would make the same question read
        differently from a file and from a dataset."""
        qs = [" ".join(q.split()) for q in questions]
        return encode_windows(self.tokenizer, qs, contexts, self.max_length, self.doc_stride, self.max_query_length)

    def logits(self, win: Windows, show_progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """(start, end) logits of every window, trimmed to its length (``threads``: CPU threads)."""
        from ..perfstats import torch_threads

        out: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(win.input_ids)
        types = win.token_type_ids if win.token_type_ids is not None else [[0] * len(x) for x in win.input_ids]
        tok = Tokenized(win.input_ids, types, self.tokenizer.pad_token_id or 0)
        self.model.eval()
        with torch_threads(self.threads):
            self._forward(tok, out, show_progress)
        return out

    def _forward(self, tok: Tokenized, out: list[tuple[np.ndarray, np.ndarray]], show_progress: bool) -> None:
        """Batches of ``batch_size`` windows, longest first, each padded to its longest."""
        import torch
        from tqdm.auto import tqdm

        batches = token_batches(tok.lengths, max_tokens=None, max_batch=self.batch_size)
        with torch.inference_mode():
            for rows in tqdm(batches, desc="read", unit="batch", disable=not show_progress):
                res = self.model(**to_torch(pad_batch(tok, rows), self.device))
                st = res.start_logits.float().cpu().numpy()
                en = res.end_logits.float().cpu().numpy()
                for r, w in enumerate(rows):
                    n = len(tok.ids[w])
                    out[w] = (st[r, :n], en[r, :n])

    def predict_passages(self, questions: Sequence[str], passages_per_question: Sequence[Sequence[str]],
                         show_progress: bool = False) -> list[list[Prediction]]:
        """The best span of every passage of every question (score = span score), with the
        passage's no-answer score and whether the span beats it."""
        if isinstance(questions, str):
            raise OdqaBenchError("reader: questions must be a list of strings, not a single string")
        if len(questions) != len(passages_per_question):
            raise OdqaBenchError(f"reader: {len(questions)} questions but {len(passages_per_question)} passage lists")
        pairs = [(qi, pi) for qi, ps in enumerate(passages_per_question) for pi in range(len(ps))]
        win = self.windows([questions[q] for q, _ in pairs], [passages_per_question[q][p] for q, p in pairs])
        logits = self.logits(win, show_progress)
        best: list[Span | None] = [None] * len(pairs)
        null = [float("inf")] * len(pairs)
        for w, (st, en) in enumerate(logits):
            pair = win.sample[w]
            c = win.cls_index[w]
            null[pair] = min(null[pair], float(st[c] + en[c]))
            spans = decode_spans(st, en, win.offsets[w], self.n_best, self.max_answer_length)
            if spans and (best[pair] is None or spans[0].score > best[pair].score):
                best[pair] = spans[0]
        out: list[list[Prediction]] = [[] for _ in questions]
        for j, (q, p) in enumerate(pairs):
            sp = best[j]
            if sp is None:
                out[q].append(Prediction("", float("-inf"), -1, -1, -1, float("-inf"), null[j], False))
                continue
            text, s, e = span_text(passages_per_question[q][p], sp.start_char, sp.end_char)
            out[q].append(Prediction(text, sp.score, p, s, e, sp.score, null[j], sp.score > null[j]))
        return out

    def predict(self, questions: Sequence[str], passages_per_question: Sequence[Sequence[str]],
                retrieval_scores: Sequence[Sequence[float]] | None = None, weight: float = 0.0,
                show_progress: bool = False) -> list[Prediction]:
        """One answer per question from its passages; score = reader span score + ``weight`` ×
        retrieval score of the passage it comes from."""
        if retrieval_scores is not None:
            if len(retrieval_scores) != len(passages_per_question) or any(
                    len(r) != len(p) for r, p in zip(retrieval_scores, passages_per_question)):
                raise OdqaBenchError("reader: retrieval_scores must have one score per passage of every question")
        cands = self.predict_passages(questions, passages_per_question, show_progress)
        return [choose(c, retrieval_scores[i] if retrieval_scores is not None else None, weight)
                for i, c in enumerate(cands)]

    def save(self, folder: str | os.PathLike[str], info: dict[str, Any] | None = None) -> Path:
        """Write the model, tokenizer and decoding settings as a loadable folder."""
        from ..encoders.models import quiet_transformers

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.model.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
        settings = {k: getattr(self, k) for k in _SETTINGS}
        atomic_write_json(folder / READER_INFO, {"name": self.name, "settings": settings, **(info or {})})
        return folder


def build_qa_model(encoder: Any, seed: int = 0) -> Any:
    """``BertForQuestionAnswering`` whose ``.bert`` is ``encoder`` (a ``BertModel``) and whose
    span head is freshly initialised from ``seed`` (BERT's normal(0, initializer_range))."""
    import torch
    from transformers import BertForQuestionAnswering

    config = encoder.config
    with torch.device("meta"):
        qa = BertForQuestionAnswering(config)
    qa.bert = encoder
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(config.hidden_size, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * float(getattr(config, "initializer_range", 0.02)))
        head.bias.zero_()
    qa.qa_outputs = head
    return qa


def build_reader(base: str = "tiny", size: str | None = None, seed: int = 0, device: str = "cpu",
                 **settings: Any) -> ExtractiveReader:
    """An untrained reader over a packaged encoder: ``tiny`` (random, seeded), ``minilm``,
    ``e5-small`` or ``path:<dir>``; ``settings`` are :class:`ExtractiveReader` fields."""
    from ..encoders.load import load_base

    b = load_base(base, size, seed)
    qa = build_qa_model(b.model, seed)
    return ExtractiveReader(qa, b.tokenizer, name=f"reader-{base}" + (f"-{size}" if size else ""), device=device,
                            weights_id=f"{b.fingerprint}|head-s{seed}", **settings)


def load_reader(folder: str | os.PathLike[str], device: str = "cpu", **overrides: Any) -> ExtractiveReader:
    """A reader saved by :meth:`ExtractiveReader.save` or by training; ``overrides`` replace
    saved decoding settings (e.g. ``batch_size``)."""
    import json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertForQuestionAnswering, PreTrainedTokenizerFast

    from ..encoders.models import folder_weights_sha, quiet_transformers

    folder = Path(folder)
    info_path = folder / READER_INFO
    if not info_path.is_file():
        raise OdqaBenchError(f"{folder}: not a reader checkpoint (no {READER_INFO})")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        with quiet_transformers():
            model = BertForQuestionAnswering.from_pretrained(str(folder), local_files_only=True)
            try:
                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
            except (OSError, ValueError, KeyError):
                tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # torn or foreign files: safetensors, tokenizer and JSON errors alike
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OdqaBenchError(f"{folder}: cannot load the reader ({why})") from None
    settings = {k: v for k, v in dict(info.get("settings", {})).items() if k in _SETTINGS}
    settings.update(overrides)
    sha = folder_weights_sha(folder)
    return ExtractiveReader(model, tok, name=str(info.get("name", folder.name)), device=device,
                            weights_id=f"path:{sha[:16]}" if sha else None, **settings)
