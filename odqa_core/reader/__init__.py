"""Readers: an extractive span reader trained per fold, and a Fusion-in-Decoder generative reader."""
from __future__ import annotations

from .extractive import (
    ExtractiveReader,
    Prediction,
    Span,
    Windows,
    build_qa_model,
    build_reader,
    choose,
    decode_spans,
    encode_windows,
    load_reader,
    span_text,
)
from .generative import FiDReader, Fused, GenerativeReader, fid_inputs, tiny_fid_reader
from .train import PROFILES, TrainConfig, build_reader_examples, read_info, train_reader, trained_reader

__all__ = ["PROFILES", "ExtractiveReader", "FiDReader", "Fused", "GenerativeReader", "Prediction", "Span",
           "TrainConfig", "Windows", "build_qa_model", "build_reader", "build_reader_examples", "choose",
           "decode_spans", "encode_windows", "fid_inputs", "load_reader", "read_info", "span_text",
           "tiny_fid_reader", "train_reader", "trained_reader"]
