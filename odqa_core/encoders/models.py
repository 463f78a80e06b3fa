"""Generic helpers for transformers models, whatever they encode: quiet loading and saving.
Encoders, the reader and the trainers share them; none of them is tied to a model family."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["quiet_transformers"]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' load/save progress bars and load reports for the block (a model read
    from local disk in a second needs no per-tensor bar)."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()
