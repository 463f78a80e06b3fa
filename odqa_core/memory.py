"""Memory a long-lived process can hand back: process-wide caches of heavy objects (Kiwi, the
e5 tokenizer, cached runs) register here, and :func:`drop_caches` forgets them all at once, so
a test worker keeps only what its current work unit needs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["drop_caches", "forgettable", "release_memory"]

_FORGET: list[Callable[[], None]] = []
F = TypeVar("F", bound=Callable[..., Any])


def forgettable(clear: F) -> F:
    """Register ``clear`` (a cache's ``cache_clear`` or ``dict.clear``) with :func:`drop_caches`;
    returns it unchanged, so it can decorate a zero-argument function."""
    _FORGET.append(clear)
    return clear


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``): after a
    model export or conversion, the allocator otherwise keeps the freed gigabytes mapped, and a
    long-lived process (a test worker) only grows."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def drop_caches(module: object | None = None) -> None:
    """Forget every registered process-wide cache and ``module``'s own ``functools.cache``
    functions, then :func:`release_memory`. What is dropped is rebuilt on next use (from the
    disk cache where there is one); datasets stay, being small and shared by most work units."""
    for clear in _FORGET:
        clear()
    name = getattr(module, "__name__", None)
    for obj in list(vars(module).values()) if module is not None else ():
        clear = getattr(obj, "cache_clear", None)
        if callable(clear) and getattr(obj, "__module__", None) == name:
            clear()
    release_memory()
