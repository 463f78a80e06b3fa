"""The gate's lines in pytest's terminal summary: failures first, then what improved, then the
warnings folded into one line (each one listed with ``-v``, and in the report)."""
from __future__ import annotations

from typing import Any

__all__ = ["summary_lines", "warnings_line"]

WARNING_KINDS = {"mde": "tolerance below the minimum detectable effect", "new": "no baseline",
                 "refused": "not compared (data or settings changed)"}


def warnings_line(result: Any, details: str) -> str:
    """``odqa-bench: N warning(s): a <kind>, b <kind>; <details>`` for a gate result with warnings."""
    counts = result.warning_counts()
    parts = ", ".join(f"{n} {WARNING_KINDS.get(kind, kind)}" for kind, n in counts.items())
    return f"odqa-bench: {len(result.warnings)} warning(s): {parts}; {details}"


def summary_lines(sess: Any, verbose: bool = False) -> list[str]:
    lines = list(sess.lines)
    res = sess.result
    if res is None:
        if sess.records and not sess.update and sess.no_gate:
            lines.append(f"odqa-bench: {len(sess.records)} metrics recorded (gate off)")
        return lines
    counts: dict[str, int] = {}
    for c in res.comparisons:
        counts[c.status] = counts.get(c.status, 0) + 1
    lines.append(f"odqa-bench gate (profile {sess.profile}, correction {sess.correction or sess.cfg.correction}, "
                 f"alpha {sess.cfg.alpha}): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for f in res.failures:
        lines.append(f"FAIL {f}")
    for c in res.by_status("regressed"):
        if c.worse:
            lines.append(f"    worst queries of {c.cell} {c.metric}: "
                         + ", ".join(f"{qid} ({b:.3g} -> {cur:.3g})" for qid, b, cur in c.worse[:5]))
    improved = res.by_status("improved")
    for c in improved:
        lines.append(f"improved {c.line()}")
    if improved:
        lines.append("accept improvements with: pytest <same args> --odqa-update-baselines "
                     "(or odqa-bench baseline update --run FILE)")
    if res.warnings:
        details = f"details in {sess.report_dir}/summary.md" if sess.report_dir else "details with -v or --odqa-report DIR"
        lines.append(warnings_line(res, details))
        if verbose:
            lines += [f"warning: {w}" for w in res.warnings]
    return lines
