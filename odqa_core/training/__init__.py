"""Training retrievers on a fold's training side: DPR bi-encoders (full or LoRA fine-tuning)."""
from __future__ import annotations

from ..encoders.load import load_base
from .dpr import DPRRetriever, TrainConfig, checkpoint_key, dpr_retriever, is_trained, train_fold
from .loop import encode, trainable_parameters
from .negatives import Example, build_examples, contains_answer, mine_hard_negatives

__all__ = ["DPRRetriever", "Example", "TrainConfig", "build_examples", "checkpoint_key", "contains_answer",
           "dpr_retriever", "encode", "is_trained", "load_base", "mine_hard_negatives", "train_fold",
           "trainable_parameters"]
