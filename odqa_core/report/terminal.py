"""The gate's lines in pytest's terminal summary: failures first, then what improved."""
from __future__ import annotations

from typing import Any

__all__ = ["summary_lines"]


def summary_lines(sess: Any) -> list[str]:
    lines = list(sess.lines)
    res = sess.result
    if res is None:
        if sess.records and not sess.update:
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
    for w in res.warnings[:20]:
        lines.append(f"warning: {w}")
    if len(res.warnings) > 20:
        lines.append(f"warning: … {len(res.warnings) - 20} more warnings (see --odqa-report)")
    return lines
