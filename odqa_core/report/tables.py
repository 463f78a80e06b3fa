"""Comparison tables (pandas) and their markdown, CSV and JUnit XML renderings."""
from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from ..baseline.gate import GateResult

__all__ = ["comparison_frame", "to_markdown", "to_junit", "to_json"]


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "" if x is None else format(x, spec)


def comparison_frame(result: GateResult) -> pd.DataFrame:
    rows = []
    for c in result.comparisons:
        rows.append({
            "suite": c.suite, "cell": c.cell, "metric": c.metric, "kind": c.kind, "status": c.status,
            "baseline": c.baseline, "current": c.current, "delta": c.delta,
            "ci_low": c.ci[0] if c.ci else None, "ci_high": c.ci[1] if c.ci else None,
            "p_value": c.p_value, "p_adjusted": c.p_adjusted, "n": c.n, "mde": c.mde,
            "tolerance": str(c.tolerance),
            "folds_mean": (sum(c.folds) / len(c.folds)) if c.folds else None,
            "folds_std": (pd.Series(c.folds).std(ddof=1) if len(c.folds) > 1 else None),
            "note": c.note,
        })
    return pd.DataFrame(rows)


_ORDER = {"regressed": 0, "refused": 1, "new": 2, "improved": 3, "unchanged": 4, "other-cpu": 5, "missing": 6}


def to_markdown(result: GateResult, worst: int = 5) -> str:
    """A summary that fits a CI job summary or a PR comment."""
    comps = sorted(result.comparisons, key=lambda c: (_ORDER.get(c.status, 9), c.suite, c.cell, c.metric))
    n = {s: len(result.by_status(s)) for s in _ORDER}
    head = "✅ no regression" if result.ok else f"❌ {len(result.failures)} gate failure(s)"
    out = [f"## odqa-bench: {head}", "",
           " · ".join(f"{v} {k}" for k, v in n.items() if v), "",
           "| status | suite | cell | metric | baseline | current | delta | 95% CI | p | p adj | MDE | tolerance |",
           "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for c in comps:
        if c.status == "missing":
            continue
        ci = f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]" if c.ci else ""
        out.append(f"| {c.status} | {c.suite} | `{c.cell}` | {c.metric} | {_fmt(c.baseline)} | {_fmt(c.current)} | "
                   f"{_fmt(c.delta, '+.4f')} | {ci} | {_fmt(c.p_value, '.3g')} | {_fmt(c.p_adjusted, '.3g')} | "
                   f"{_fmt(c.mde)} | {c.tolerance} |")
    reg = result.by_status("regressed")
    if reg:
        out += ["", "### Worst-hit queries"]
        for c in reg:
            out.append(f"- `{c.cell}` {c.metric}:")
            for q, b, v in c.worse[:worst]:
                note = c.query_notes.get(q)
                out.append(f"  - `{q}` {b:.3g} → {v:.3g}" + (f" ({note})" if note else ""))
    if result.warnings:
        out += ["", "<details><summary>warnings</summary>", ""] + [f"- {w}" for w in result.warnings] + ["", "</details>"]
    return "\n".join(out) + "\n"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def to_json(result: GateResult) -> dict[str, Any]:
    """The verdicts as plain JSON: ``ok``, failures, warnings and one object per comparison."""
    comps = []
    for c in result.comparisons:
        comps.append({
            "suite": c.suite, "cell": c.cell, "metric": c.metric, "kind": c.kind, "status": c.status,
            "higher_is_better": c.higher_is_better, "baseline": _finite(c.baseline), "current": _finite(c.current),
            "delta": _finite(c.delta), "ci95": [_finite(c.ci[0]), _finite(c.ci[1])] if c.ci else None,
            "p_value": _finite(c.p_value), "p_adjusted": _finite(c.p_adjusted), "n": c.n, "mde": _finite(c.mde),
            "tolerance": {"abs": c.tolerance.abs, "rel": c.tolerance.rel}, "note": c.note,
            "worse": [{"query": q, "baseline": b, "current": v} for q, b, v in c.worse],
            "better": [{"query": q, "baseline": b, "current": v} for q, b, v in c.better],
        })
    return {"ok": result.ok, "failures": list(result.failures), "warnings": [str(w) for w in result.warnings],
            "counts": {s: len(result.by_status(s)) for s in _ORDER if result.by_status(s)}, "comparisons": comps}


def to_junit(result: GateResult) -> str:
    """One testcase per cell × metric: failures for regressions (and, strict, refusals/new)."""
    comps = [c for c in result.comparisons if c.status != "missing"]
    failing = {id(c) for c in comps if c.status == "regressed" or any(f.split(" ", 1)[1] == c.line() for f in result.failures)}
    cases = []
    for c in comps:
        name = quoteattr(f"{c.cell} {c.metric}")
        cls = quoteattr(f"odqa.{c.suite}")
        if id(c) in failing:
            cases.append(f"  <testcase classname={cls} name={name}><failure message={quoteattr(c.status)}>"
                         f"{escape(c.line())}</failure></testcase>")
        else:
            cases.append(f"  <testcase classname={cls} name={name}/>")
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<testsuite name="odqa-bench-gate" tests="{len(comps)}" failures="{len(failing)}">\n'
            + "\n".join(cases) + "\n</testsuite>\n")


