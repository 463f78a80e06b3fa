"""Text encoders for dense retrieval: one ``Encoder`` contract, built by family and size."""
from __future__ import annotations

from .base import Encoder, Kind
from .minilm import HFEncoder, load_hf_folder, load_minilm
from .registry import DEFAULT_SIZE, FAMILIES, FunctionEncoder, encoder_families, get_encoder
from .tiny import tiny_bert

__all__ = [
    "DEFAULT_SIZE",
    "Encoder",
    "FAMILIES",
    "FunctionEncoder",
    "HFEncoder",
    "Kind",
    "encoder_families",
    "get_encoder",
    "load_hf_folder",
    "load_minilm",
    "tiny_bert",
]
