"""A tiny randomly initialised BERT with a character WordPiece vocabulary built here: a real
transformer for tests and quick profiles, with no files to fetch."""
from __future__ import annotations

import string
from functools import lru_cache
from typing import Any

from ..errors import OdqaBenchError
from .minilm import HFEncoder
from .models import state_dict_sha256

__all__ = ["tiny_bert"]


def _tiny_vocab() -> list[str]:
    """Specials, printable ASCII and Hangul syllables, each as a word start and a ``##`` piece."""
    chars = [c for c in string.ascii_lowercase + string.digits + string.punctuation]
    chars += [chr(cp) for cp in range(0xAC00, 0xD7A4)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]


@lru_cache(maxsize=1)
def _tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(_tiny_vocab())}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512)


def tiny_bert(seed: int = 0, layers: int = 2, hidden: int = 32, heads: int = 2, max_length: int = 128,
              device: str = "cpu", **kw: Any) -> HFEncoder:
    """A randomly initialised BERT (character WordPiece vocabulary built here, fixed seed): a
    real transformer for tests, with no files to fetch."""
    import torch
    from transformers import BertConfig, BertModel

    for label, v in (("layers", layers), ("hidden", hidden), ("heads", heads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise OdqaBenchError(f"tiny encoder: {label} must be a positive integer, got {v!r}")
    if hidden % heads:
        raise OdqaBenchError(f"tiny encoder: hidden ({hidden}) must be a multiple of heads ({heads})")
    tok = _tiny_tokenizer()
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max(max_length, 8), hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = BertModel(config, add_pooling_layer=False)
    finally:
        torch.random.set_rng_state(gen_state)
    settings = {"pooling": "mean", "max_length": max_length, **kw}
    weights_id = f"tiny:s{seed}:L{layers}:H{hidden}:{state_dict_sha256(model)[:16]}"
    return HFEncoder(name=f"tiny-L{layers}", model=model, tokenizer=tok, device=device,
                     weights_id=weights_id, **settings)
