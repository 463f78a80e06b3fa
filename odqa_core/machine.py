"""What a speed number depends on besides the code: the CPU's model and its instruction-set class.

int8 and bfloat16 kernels differ by several times between CPUs with and without VNNI or native
bfloat16, so speed baselines carry :func:`cpu_isa` and the gate compares them only on the same
class."""
from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["cpu_model", "cpu_isa", "int8_dot_exact", "ISA_FLAGS"]

# /proc/cpuinfo flags that change which vector kernels run, widest last
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "sve", "bf16", "i8mm")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's model name, else the processor or machine string Python reports."""
    for line in _cpuinfo():
        if line.startswith(("model name", "Model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_isa() -> str:
    """``<arch>:<flag>+<flag>…``: the architecture and which of :data:`ISA_FLAGS` the CPU has,
    e.g. ``x86_64:avx2`` or ``x86_64:avx2+avx512f+avx512_vnni+avx512_bf16``; the architecture
    alone where the flags cannot be read."""
    flags: set[str] = set()
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    have = [f for f in ISA_FLAGS if f in flags]
    arch = platform.machine() or "unknown"
    return f"{arch}:{'+'.join(have)}" if have else arch


def int8_dot_exact() -> bool:
    """Whether the CPU sums uint8 x int8 products without 16-bit saturation: x86 with VNNI
    (``vpdpbusd``), or Arm (``sdot``/``udot`` or widening multiplies). x86 without VNNI adds
    product pairs in 16 bits (``vpmaddubsw``), which 8-bit weights can overflow."""
    arch, _, flags = cpu_isa().partition(":")
    if arch not in ("x86_64", "AMD64", "i686", "i386"):
        return True
    return any(f in flags.split("+") for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
