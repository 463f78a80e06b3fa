"""Gate settings from ``pyproject.toml`` ``[tool.odqa_bench]``: tolerances per metric with
per-suite and per-cell overrides, alpha, power and the multiple-comparison correction.

Tolerance rules are matched most-specific first: ``[tool.odqa_bench.cells."<suite>::<cell glob>"]``,
then ``[tool.odqa_bench.suites.<suite>]``, then ``[tool.odqa_bench.tolerance]``; inside each, the
first metric glob (``ndcg@*``, ``hit@5``, ``*``) that matches wins. Speed metrics use ``speed``.
"""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OdqaBenchError
from ..options import CORRECTIONS

__all__ = ["Tolerance", "GateConfig", "load_config", "CORRECTIONS"]


@dataclass(frozen=True)
class Tolerance:
    """A drop is allowed up to ``max(abs, rel * |baseline|)``."""

    abs: float = 0.0
    rel: float = 0.0

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline))

    def __str__(self) -> str:
        parts = []
        if self.abs:
            parts.append(f"abs {self.abs:g}")
        if self.rel:
            parts.append(f"rel {self.rel:.0%}")
        return " / ".join(parts) or "exact"


def _tol(obj: Any, where: str) -> Tolerance:
    if isinstance(obj, (int, float)):
        return Tolerance(abs=float(obj))
    if not isinstance(obj, dict) or not set(obj) <= {"abs", "rel"}:
        raise OdqaBenchError(f"{where}: a tolerance is a number or {{abs = ..., rel = ...}}")
    try:
        return Tolerance(abs=float(obj.get("abs", 0.0)), rel=float(obj.get("rel", 0.0)))
    except (TypeError, ValueError):
        raise OdqaBenchError(f"{where}: tolerance values must be numbers") from None


@dataclass
class GateConfig:
    alpha: float = 0.05
    power: float = 0.8
    mde_rho: float = 0.9
    correction: str = "holm"
    permutations: int = 10000
    bootstrap: int = 2000
    default: dict[str, Tolerance] = field(default_factory=lambda: {"*": Tolerance(abs=0.005)})
    speed: Tolerance = field(default_factory=lambda: Tolerance(rel=0.35))
    suites: dict[str, dict[str, Tolerance]] = field(default_factory=dict)
    cells: dict[str, dict[str, Tolerance]] = field(default_factory=dict)

    def tolerance(self, suite: str, cell: str, metric: str, kind: str = "quality") -> Tolerance:
        for pattern, rules in self.cells.items():
            s, _, c = pattern.partition("::")
            if fnmatch.fnmatchcase(suite, s) and fnmatch.fnmatchcase(cell, c):
                if (t := _match(rules, metric)) is not None:
                    return t
        if suite in self.suites and (t := _match(self.suites[suite], metric)) is not None:
            return t
        if kind == "speed":
            return self.speed
        return _match(self.default, metric) or Tolerance(abs=0.005)


def _match(rules: dict[str, Tolerance], metric: str) -> Tolerance | None:
    for glob, tol in rules.items():
        if fnmatch.fnmatchcase(metric, glob):
            return tol
    return None


def _rules(obj: Any, where: str) -> dict[str, Tolerance]:
    if not isinstance(obj, dict):
        raise OdqaBenchError(f"{where}: expected a table of metric globs")
    return {str(k): _tol(v, f"{where}.{k}") for k, v in obj.items()}


def load_config(pyproject: str | Path | None) -> GateConfig:
    """Read ``[tool.odqa_bench]``; a missing file or table gives the defaults."""
    cfg = GateConfig()
    if pyproject is None or not Path(pyproject).exists():
        return cfg
    try:
        data = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OdqaBenchError(f"{pyproject}: malformed TOML ({exc})") from None
    tool = data.get("tool", {})
    t = tool.get("odqa_bench", {}) if isinstance(tool, dict) else {}
    where = f"{pyproject} [tool.odqa_bench]"
    if not isinstance(t, dict):
        raise OdqaBenchError(f"{where}: expected a table")
    try:
        for key in ("alpha", "power", "mde_rho"):
            if key in t:
                setattr(cfg, key, float(t[key]))
        for key in ("permutations", "bootstrap"):
            if key in t:
                setattr(cfg, key, int(t[key]))
    except (TypeError, ValueError):
        raise OdqaBenchError(f"{where}: alpha, power, mde_rho, permutations and bootstrap must be numbers") from None
    if "correction" in t:
        if t["correction"] not in CORRECTIONS:
            raise OdqaBenchError(f"{where}: correction {t['correction']!r}; choose {', '.join(CORRECTIONS)}")
        cfg.correction = t["correction"]
    for key in ("tolerance", "suites", "cells"):
        if not isinstance(t.get(key, {}), dict):
            raise OdqaBenchError(f"{where}.{key}: expected a table")
    if "tolerance" in t:
        rules = dict(t["tolerance"])
        if "speed" in rules:
            cfg.speed = _tol(rules.pop("speed"), f"{where}.tolerance.speed")
        cfg.default = _rules(rules, f"{where}.tolerance") or cfg.default
    cfg.suites = {s: _rules(r, f"{where}.suites.{s}") for s, r in t.get("suites", {}).items()}
    cfg.cells = {c: _rules(r, f"{where}.cells.{c}") for c, r in t.get("cells", {}).items()}
    if not 0 < cfg.alpha < 1 or not 0 < cfg.power < 1:
        raise OdqaBenchError(f"{where}: alpha and power must lie in (0, 1)")
    return cfg
