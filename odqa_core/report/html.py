"""A standalone HTML page for a gate run: the comparison table colour-coded by status, the
worst-hit queries of every regressed cell, the warnings and the plots embedded as data URIs
(no external assets, so the page survives being attached to a CI run)."""
from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from ..baseline.gate import GateResult

__all__ = ["to_html", "STATUS_COLOURS"]

STATUS_COLOURS = {"regressed": "#f8d7da", "refused": "#fff3cd", "new": "#e7e9fb", "improved": "#d1e7dd",
                  "unchanged": "#ffffff", "other-cpu": "#f3f3f3", "missing": "#eeeeee"}
_ORDER = {s: i for i, s in enumerate(["regressed", "refused", "new", "improved", "unchanged", "other-cpu", "missing"])}
_COLUMNS = [("status", None), ("suite", None), ("cell", None), ("metric", None), ("baseline", ".4f"),
            ("current", ".4f"), ("delta", "+.4f"), ("ci", None), ("p_value", ".3g"), ("p_adjusted", ".3g"),
            ("n", "d"), ("mde", ".4f"), ("tolerance", None), ("note", None)]
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td code, li code { font-size: 0.95em; }
.ok { color: #146c43; } .bad { color: #b02a37; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _cell(row: dict[str, Any], name: str, spec: str | None) -> str:
    if name == "ci":
        lo, hi = row.get("ci_low"), row.get("ci_high")
        text = "" if _missing(lo) or _missing(hi) else f"[{lo:+.4f}, {hi:+.4f}]"
        return f'<td class="num">{text}</td>'
    value = row.get(name)
    if _missing(value):
        return '<td class="num"></td>' if spec else "<td></td>"
    if spec:
        v = int(value) if spec == "d" else float(value)
        return f'<td class="num">{format(v, spec)}</td>'
    if name == "cell":
        return f"<td><code>{escape(str(value))}</code></td>"
    return f"<td>{escape(str(value))}</td>"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>No comparisons.</p>"
    rows = sorted(frame.to_dict("records"), key=lambda r: (_ORDER.get(r["status"], 9), r["suite"], r["cell"], r["metric"]))
    head = "".join(f"<th>{escape(name.replace('_', ' '))}</th>" for name, _ in _COLUMNS)
    body = []
    for r in rows:
        colour = STATUS_COLOURS.get(r["status"], "#ffffff")
        body.append(f'<tr class="{escape(str(r["status"]))}" style="background:{colour}">'
                    + "".join(_cell(r, name, spec) for name, spec in _COLUMNS) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _worst(result: GateResult, limit: int) -> str:
    regressed = result.by_status("regressed")
    if not regressed:
        return ""
    parts = ["<h2>Worst-hit queries</h2>"]
    for c in regressed:
        parts.append(f"<h3><code>{escape(c.suite)}::{escape(c.cell)}</code> {escape(c.metric)}</h3>")
        if not c.worse:
            parts.append("<p>No per-query vectors to pair.</p>")
            continue
        items = "".join(f"<li><code>{escape(str(q))}</code>: {b:.4g} &rarr; {v:.4g}"
                        + (f" <small>{escape(c.query_notes[q])}</small>" if q in c.query_notes else "") + "</li>"
                        for q, b, v in c.worse[:limit])
        parts.append(f"<ol>{items}</ol>")
    return "\n".join(parts)


def _images(images: Sequence[str | Path]) -> str:
    parts = []
    for path in images:
        p = Path(path)
        if p.suffix.lower() != ".png" or not p.is_file():
            continue
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{escape(p.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{escape(p.name)}</figcaption></figure>")
    return ("<h2>Plots</h2>\n" + "\n".join(parts)) if parts else ""


def to_html(result: GateResult, frame: pd.DataFrame, images: Sequence[str | Path] = (), worst: int = 10) -> str:
    """The whole report as one self-contained HTML page; ``images`` are PNG files to embed."""
    counts = {s: len(result.by_status(s)) for s in _ORDER if result.by_status(s)}
    verdict = ('<span class="ok">no regression</span>' if result.ok
               else f'<span class="bad">{len(result.failures)} gate failure(s)</span>')
    summary = " · ".join(f"{n} {s}" for s, n in counts.items())
    failures = ("<h2>Failures</h2><ul>" + "".join(f"<li><code>{escape(f)}</code></li>" for f in result.failures)
                + "</ul>") if result.failures else ""
    warnings = ("<details><summary>Warnings ({})</summary><ul>{}</ul></details>".format(
        len(result.warnings), "".join(f"<li>{escape(w)}</li>" for w in result.warnings))) if result.warnings else ""
    legend = " ".join(f'<span style="background:{c};padding:0 0.4em;border:1px solid #ccc">{s}</span>'
                      for s, c in STATUS_COLOURS.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>odqa-bench gate report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>odqa-bench: {verdict}</h1>
<p>{escape(summary)}</p>
{failures}
<h2>Comparisons</h2>
<p>{legend}</p>
{_table(frame)}
{_worst(result, worst)}
{warnings}
{_images(images)}
</body>
</html>
"""
