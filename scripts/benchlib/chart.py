"""A one-page PNG of a benchmark run: relative speed per workload, and the floors.

Left: one horizontal bar per workload, the subject's speed relative to the
reference on a log scale (1x line marked), each bar labelled with both
absolute values. Right: the floors with met / not met. Footer: machine,
kernel, git commit and command, so the picture stands on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from .report import fmt_value, index, meta_line, params_text, ratio
from .workloads import Result

GROUP_COLOURS = {"bytes": "#3b75af", "ops": "#e07b39", "seconds": "#519e3e", "rss": "#8d69b8"}


def draw(path: Path, results: list[Result], subject: str, reference: str,
         floors: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    by_name = index(results)
    rows = []
    for name, sides in by_name.items():
        a, b = sides.get(subject), sides.get(reference)
        q = ratio(a, b)
        if q is None:
            continue
        any_r = a or b
        size = params_text(any_r) if any_r else ""
        label = f"{name}" + (f"\n({size})" if size else "")
        rows.append((label, q, f"{fmt_value(a)}  vs  {fmt_value(b)}", (a or b).kind))  # type: ignore[union-attr]
    n = max(len(rows), 1)
    fig = plt.figure(figsize=(15, 1.2 + 0.48 * n + 1.6))
    grid = fig.add_gridspec(1, 2, width_ratios=[2.2, 1], wspace=0.05)
    ax = fig.add_subplot(grid[0])
    ys = list(range(len(rows)))[::-1]
    vals = [r[1] for r in rows]
    ax.barh(ys, vals, color=[GROUP_COLOURS.get(r[3], "grey") for r in rows], height=0.6)
    ax.set_xscale("log")
    lo = min([*vals, 1.0]) / 3
    hi = max([*vals, 1.0]) * 15
    ax.set_xlim(lo, hi)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    for y, (_label, q, text, _kind) in zip(ys, rows, strict=True):
        ax.text(q * 1.08, y, f"{q:.2f}x   {text}", va="center", fontsize=7.5)
    ax.set_xlabel(f"{subject} speed / {reference} speed (log scale; 1 = same, <1 = slower)")
    ax.set_title(f"{subject} vs {reference}: relative speed per workload", fontsize=11)
    ax.grid(axis="x", which="both", alpha=0.25)

    fx = fig.add_subplot(grid[1])
    fx.axis("off")
    lines = []
    for f in floors:
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[f["met"]]
        measured = f["measured"] if len(f["measured"]) <= 44 else f["measured"][:43] + "…"
        lines.append((f"#{f['issue']} {mark} {f['floor']}\n            {measured}", f["met"]))
    fx.set_title(f"Floors on {subject}", fontsize=11)
    for i, (text, met) in enumerate(lines):
        colour = {True: "#2a7d2a", False: "#b22222", None: "#777777"}[met]
        fx.text(0.0, 1 - (i + 0.5) / max(len(lines), 1), text, color=colour,
                fontsize=7.5, family="monospace", va="center", transform=fx.transAxes)
    fig.text(0.01, 0.005, meta_line(meta), fontsize=7, family="monospace", va="bottom")
    fig.subplots_adjust(left=0.17, right=0.99, top=1 - 0.5 / (n * 0.48 + 2.8),
                        bottom=1.3 / (n * 0.48 + 2.8))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
