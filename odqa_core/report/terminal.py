"""The gate's lines in pytest's terminal summary: failures first, then what improved, then the
warnings folded into one line (each one listed with ``-v``, and in the report)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..baseline import GateResult

__all__ = ["summary_lines", "warnings_line"]

WARNING_KINDS = {"mde": "tolerance below the minimum detectable effect", "new": "no baseline",
                 "refused": "not compared (data or settings changed)",
                 "other-cpu": "speed not compared (baseline from another CPU class)"}


def warnings_line(result: GateResult, details: str) -> str:
    """``odqa-bench: N warning(s): a <kind>, b <kind>; <details>`` for a gate result with warnings."""
    counts = result.warning_counts()
    parts = ", ".join(f"{n} {WARNING_KINDS.get(kind, kind)}" for kind, n in counts.items())
    return f"odqa-bench: {len(result.warnings)} warning(s): {parts}; {details}"


def summary_lines(result: GateResult, profile: str, report_dir: str | None = None,
                  verbose: bool = False) -> list[str]:
    """The gate's verdict on a run of ``profile``: counts per status, failures, the worst queries
    of each regression, improvements and the folded warnings (``report_dir``: where the details are)."""
    counts: dict[str, int] = {}
    for c in result.comparisons:
        counts[c.status] = counts.get(c.status, 0) + 1
    verdict = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no gated metric (only info figures recorded)"
    lines = [f"odqa-bench gate (profile {profile}, correction {result.correction}, alpha {result.alpha}): {verdict}"]
    for f in result.failures:
        lines.append(f"FAIL {f}")
    for c in result.by_status("regressed"):
        if c.worse:
            lines.append(f"    worst queries of {c.cell} {c.metric}: "
                         + ", ".join(f"{qid} ({b:.3g} -> {cur:.3g})" for qid, b, cur in c.worse[:5]))
    improved = result.by_status("improved")
    for c in improved:
        lines.append(f"improved {c.line()}")
    if improved:
        lines.append("accept improvements with: pytest <same args> --odqa-update-baselines "
                     "(or odqa-bench baseline update --run FILE)")
    if result.warnings:
        details = f"details in {report_dir}/summary.md" if report_dir else "details with -v or --odqa-report DIR"
        lines.append(warnings_line(result, details))
        if verbose:
            lines += [f"warning: {w}" for w in result.warnings]
    return lines
