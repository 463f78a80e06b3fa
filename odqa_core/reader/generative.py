"""Generative reader with Fusion-in-Decoder (FiD): each (question, passage) pair is encoded on
its own (at most ``max_length`` tokens), the encoder states are concatenated along the sequence
axis, and the decoder cross-attends over all of them. Nothing is truncated to fit one 512-token
window: ten 200-token passages give a fused length of ten windows.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import OdqaBenchError

__all__ = ["GenerativeReader", "FiDReader", "Fused", "fid_inputs", "tiny_fid_reader"]

log = logging.getLogger(__name__)


class GenerativeReader(Protocol):
    """Question and retrieved passages in, a free-text answer out."""

    name: str

    def generate(self, question: str, passages: Sequence[str]) -> str: ...


@dataclass
class Fused:
    """The fused encoder side of one question: ``input_ids`` ``(n_passages, L)`` as encoded,
    ``hidden`` ``(1, n_passages * L, d)`` and ``mask`` ``(1, n_passages * L)``."""

    input_ids: Any
    hidden: Any
    mask: Any

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


def fid_inputs(question: str, passages: Sequence[str]) -> list[str]:
    """FiD's per-passage encoder input: ``question: <q> context: <passage>``."""
    return [f"question: {question} context: {p}" for p in passages]


@dataclass
class FiDReader:
    """A seq2seq model (T5-style: ``get_encoder()``, ``generate(encoder_outputs=...)``) read
    the Fusion-in-Decoder way. ``max_length`` bounds each passage's encoder input only."""

    model: Any
    tokenizer: Any
    name: str = "fid"
    max_length: int = 256
    max_new_tokens: int = 16
    num_beams: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        from ..encoders.models import check_device

        for label in ("max_length", "max_new_tokens", "num_beams"):
            v = getattr(self, label)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OdqaBenchError(f"generative reader {label}={v!r}: must be a positive integer")
        self.device = check_device(self.device)
        self.model.to(self.device)
        self.model.eval()

    def fuse(self, question: str, passages: Sequence[str]) -> Fused:
        """Encode every (question, passage) pair separately (padded to the longest pair) and
        concatenate the encoder states and masks along the sequence axis."""
        import torch

        if isinstance(passages, str):
            raise OdqaBenchError("generative reader: passages must be a list of strings, not a single string")
        texts = fid_inputs(question, list(passages) or [""])
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        with torch.inference_mode():
            hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        n, length, dim = hidden.shape
        return Fused(ids, hidden.reshape(1, n * length, dim), mask.reshape(1, n * length))

    def generate(self, question: str, passages: Sequence[str]) -> str:
        """Decode an answer over the fused states of all passages."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        fused = self.fuse(question, passages)
        with torch.inference_mode():
            out = self.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=fused.hidden),
                                      attention_mask=fused.mask, max_new_tokens=self.max_new_tokens,
                                      num_beams=self.num_beams, do_sample=False)
        return str(self.tokenizer.decode(out[0], skip_special_tokens=True)).strip()

    def first_step_logits(self, fused: Fused) -> Any:
        """Decoder logits for the first answer token given the fused states (what the decoder
        sees of every passage)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        start = self.model.config.decoder_start_token_id
        dec = torch.full((1, 1), int(start if start is not None else 0), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=fused.hidden),
                              attention_mask=fused.mask, decoder_input_ids=dec).logits[0, -1]


def tiny_fid_reader(seed: int = 0, tokenizer: Any = None, d_model: int = 32, layers: int = 2,
                    max_length: int = 256, device: str = "cpu", **kw: Any) -> FiDReader:
    """A randomly initialised T5 (seeded) over the tiny character WordPiece tokenizer (or
    ``tokenizer``): a real seq2seq model for tests, with no files to fetch."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    if tokenizer is None:
        from ..encoders.tiny import tiny_bert

        tokenizer = tiny_bert(seed=seed, layers=1, hidden=8, heads=1).tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    heads = 2 if d_model % 2 == 0 else 1
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_ff=2 * d_model, d_kv=d_model // heads,
                      num_layers=layers, num_decoder_layers=layers, num_heads=heads, dropout_rate=0.0,
                      pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = T5ForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(state)
    return FiDReader(model, tokenizer, name=f"fid-tiny-d{d_model}", max_length=max_length, device=device, **kw)
