"""Small, machine-independent speed statistics: percentiles, interleaved timing of two rivals,
peak memory of a call, and the growth exponent of a cost curve.

Absolute times differ from one VM to the next; ratios of two engines timed in the same process,
interleaved so background load hits both, and exponents of cost against size do not.
"""
from __future__ import annotations

import gc
import math
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import numpy as np

from .errors import OdqaBenchError

__all__ = [
    "percentiles",
    "time_call",
    "interleaved_times",
    "interleaved_latencies",
    "interleaved_min",
    "speed_ratio",
    "peak_memory",
    "rss_bytes",
    "torch_threads",
    "growth_exponent",
]

T = TypeVar("T")


def percentiles(samples: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 95)) -> tuple[float, ...]:
    """The ``qs`` percentiles of ``samples`` by linear interpolation between closest ranks
    (numpy's default ``linear`` method), in the order asked."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if x.size == 0:
        raise OdqaBenchError("percentiles: no samples")
    if not np.isfinite(x).all():
        raise OdqaBenchError("percentiles: samples contain NaN or infinity")
    out = []
    for q in qs:
        if not 0 <= q <= 100:
            raise OdqaBenchError(f"percentiles: q={q} is outside [0, 100]")
        rank = q / 100.0 * (x.size - 1)
        lo = int(math.floor(rank))
        hi = min(lo + 1, x.size - 1)
        frac = rank - lo
        out.append(float(x[lo] + (x[hi] - x[lo]) * frac) if frac else float(x[lo]))
    return tuple(out)


def time_call(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of timed regions (it would charge one side for
    garbage the other made)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interleaved_times(fn_a: Callable[[], Any], fn_b: Callable[[], Any], rounds: int,
                      warmup: int = 1) -> tuple[list[float], list[float]]:
    """Per-round seconds of ``fn_a`` and ``fn_b`` timed in turn (A, B, then B, A, ...), so a
    burst of background load or a clock-speed change falls on both sides alike."""
    if rounds < 1:
        raise OdqaBenchError(f"interleaved timing: rounds must be >= 1, got {rounds}")
    for _ in range(max(0, warmup)):
        fn_a()
        fn_b()
    ta: list[float] = []
    tb: list[float] = []
    with _gc_paused():
        for r in range(rounds):
            if r % 2 == 0:
                ta.append(time_call(fn_a))
                tb.append(time_call(fn_b))
            else:
                tb.append(time_call(fn_b))
                ta.append(time_call(fn_a))
    return ta, tb


def interleaved_latencies(fn_a: Callable[[T], Any], fn_b: Callable[[T], Any], items: Sequence[T],
                          repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-item seconds of ``fn_a(item)`` and ``fn_b(item)``, the two timed back to back
    (alternating which goes first); with ``repeats`` > 1 each item keeps its fastest pass."""
    if repeats < 1:
        raise OdqaBenchError(f"interleaved latencies: repeats must be >= 1, got {repeats}")
    la = np.full(len(items), np.inf)
    lb = np.full(len(items), np.inf)
    with _gc_paused():
        for rep in range(repeats):
            for i, item in enumerate(items):
                if (i + rep) % 2 == 0:
                    a = time_call(partial(fn_a, item))
                    b = time_call(partial(fn_b, item))
                else:
                    b = time_call(partial(fn_b, item))
                    a = time_call(partial(fn_a, item))
                la[i] = min(la[i], a)
                lb[i] = min(lb[i], b)
    return la, lb


def interleaved_min(fn_a: Callable[[], Any], fn_b: Callable[[], Any], rounds: int,
                    warmup: int = 1) -> tuple[float, float]:
    """Minimum seconds of ``fn_a`` and of ``fn_b`` over interleaved rounds: the minimum is the
    run least disturbed by the rest of the machine."""
    ta, tb = interleaved_times(fn_a, fn_b, rounds, warmup)
    return min(ta), min(tb)


def speed_ratio(peer_seconds: float, our_seconds: float) -> float:
    """How many times faster we are than the peer for the same work (> 1: faster)."""
    if not (peer_seconds > 0 and our_seconds > 0):
        raise OdqaBenchError(f"speed ratio needs positive times, got peer={peer_seconds} ours={our_seconds}")
    return float(peer_seconds / our_seconds)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads, then restore (``None``: leave them). Small ops on a
    shared 2-core VM stall at every parallel-region barrier when a sibling thread is descheduled;
    one thread keeps per-query latencies from blowing up 50-fold under background load."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rss_bytes() -> int:
    """Resident set size of this process now (psutil, else /proc/self/statm; 0 if neither)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_memory(fn: Callable[[], T], trace: bool = True) -> tuple[T, int, int]:
    """Run ``fn`` once: ``(result, tracemalloc peak bytes, RSS after - RSS before)``.

    The tracemalloc peak counts Python and numpy allocations made during the call (numpy reports
    its buffers to tracemalloc; torch does not); the RSS delta also sees native memory the call
    keeps. Tracing slows Python-heavy calls, so time them separately, or pass ``trace=False``
    (peak reported as 0) to get the RSS delta of an untraced call."""
    gc.collect()
    tracing = trace and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    if trace:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
    rss0 = rss_bytes()
    peak = 0
    try:
        result = fn()
        if trace:
            peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if tracing:
            tracemalloc.stop()
    rss1 = rss_bytes()
    return result, int(peak), int(rss1 - rss0)


def growth_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """Least-squares slope ``e`` of ``log(cost) = a + e * log(size)``: 1 is linear in the corpus
    size, below 1 sub-linear."""
    n = np.asarray(sizes, dtype=np.float64).ravel()
    c = np.asarray(costs, dtype=np.float64).ravel()
    if n.shape != c.shape:
        raise OdqaBenchError(f"growth exponent: {n.size} sizes but {c.size} costs")
    if not (np.isfinite(n).all() and np.isfinite(c).all() and (n > 0).all() and (c > 0).all()):
        raise OdqaBenchError("growth exponent: sizes and costs must be positive finite numbers")
    if np.unique(n).size < 2:
        raise OdqaBenchError("growth exponent: needs at least two distinct sizes")
    x, y = np.log(n), np.log(c)
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())
