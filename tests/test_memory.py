"""drop_caches: what a long-lived test worker forgets between work units, and what it keeps."""
from __future__ import annotations

import types
from functools import cache

import pytest

from odqa_core import memory
from odqa_core.bench import cached_dataset, cached_run
from odqa_core.memory import drop_caches, forgettable
from odqa_core.text.tokenizers import get_tokenizer


def test_registered_caches_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_FORGET", list(memory._FORGET))
    calls: list[int] = []
    forgettable(lambda: calls.append(1))
    drop_caches()
    drop_caches()
    assert calls == [1, 1]


def test_process_caches_are_rebuilt_after_a_drop_and_datasets_stay() -> None:
    tok = get_tokenizer("regex")
    assert get_tokenizer("regex") is tok
    ds = cached_dataset("default")
    cached_run("bm25", "regex", "default")
    assert cached_run.cache_info().currsize >= 1
    drop_caches()
    assert cached_run.cache_info().currsize == 0
    assert get_tokenizer("regex") is not tok
    assert cached_dataset("default") is ds


def test_only_the_modules_own_caches_are_cleared() -> None:
    module = types.ModuleType("suite_module")

    @cache
    def own(x: int) -> list[int]:
        return [x]

    @cache
    def foreign(x: int) -> list[int]:
        return [x]

    own.__module__ = "suite_module"
    foreign.__module__ = "elsewhere"
    module.own, module.foreign = own, foreign
    a, b = own(1), foreign(1)
    drop_caches(module)
    assert own(1) is not a and own(1) == [1]
    assert foreign(1) is b
