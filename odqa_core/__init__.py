"""odqa-bench: a benchmark and regression harness for open-domain QA and RAG retrieval."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
