"""Summaries of learning-curve rows: mean ± std tables in markdown, and curve plots."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geal.errors import GealError

log = logging.getLogger(__name__)

Key = tuple[str, str, str, int]  # protocol, backbone, strategy, budget


def _ordered(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    """(protocol, backbone, strategy, budget) -> mean/std of accuracy over seeds, and more."""
    acc: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["protocol"], r["backbone"], r["strategy"], int(r["budget"]))].append(r)
    out: dict[Key, dict[str, float]] = {}
    for key, rs in acc.items():
        a = np.array([r["accuracy"] for r in rs], dtype=np.float64)
        out[key] = {
            "mean": float(a.mean()),
            "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": float(a.size),
            "classes": float(np.mean([r["classes"] for r in rs])),
            "select_seconds": float(np.mean([r["select_seconds"] for r in rs])),
            "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
        }
    return out


def _groups(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[str], list[int]]:
    protocols = _ordered([r["protocol"] for r in rows])
    backbones = _ordered([r["backbone"] for r in rows])
    strategies = _ordered([r["strategy"] for r in rows])
    budgets = sorted({int(r["budget"]) for r in rows})
    return protocols, backbones, strategies, budgets


def accuracy_table(
    rows: Sequence[dict[str, Any]], protocol: str, backbone: str, *, baseline: str | None = None
) -> str:
    """Markdown table strategy x budget of test accuracy (%) mean ± std, best in bold.

    With ``baseline`` (e.g. ``random``) the cells are differences to it in points instead.
    """
    agg = aggregate(rows)
    _, _, strategies, budgets = _groups(rows)
    strategies = [s for s in strategies if (protocol, backbone, s, budgets[0]) in agg]
    head = "| strategy | " + " | ".join(str(b) for b in budgets) + " |"
    lines = [head, "|---" * (len(budgets) + 1) + "|"]
    best: dict[int, float] = {}
    for b in budgets:
        means = [
            agg[(protocol, backbone, s, b)]["mean"]
            for s in strategies
            if (protocol, backbone, s, b) in agg
        ]
        best[b] = max(means) if means else np.nan
    for s in strategies:
        if baseline is not None and s == baseline:
            continue
        cells = []
        for b in budgets:
            a = agg.get((protocol, backbone, s, b))
            if a is None:
                cells.append("")
                continue
            if baseline is not None:
                ref = agg.get((protocol, backbone, baseline, b))
                if ref is None:
                    cells.append("")
                    continue
                cells.append(f"{100 * (a['mean'] - ref['mean']):+.1f}")
                continue
            txt = f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}"
            cells.append(f"**{txt}**" if a["mean"] >= best[b] - 1e-12 else txt)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_table(rows: Sequence[dict[str, Any]], backbone: str, key: str, fmt: str) -> str:
    """Markdown table strategy x budget of the mean of ``key`` (any protocol's rows)."""
    agg = aggregate(rows)
    protocols, _, strategies, budgets = _groups(rows)
    lines = ["| strategy | " + " | ".join(str(b) for b in budgets) + " |"]
    lines.append("|---" * (len(budgets) + 1) + "|")
    for s in strategies:
        cells = []
        for b in budgets:
            a = next(
                (agg[(p, backbone, s, b)] for p in protocols if (p, backbone, s, b) in agg), None
            )
            cells.append("" if a is None else format(a[key], fmt))
        if any(cells):
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coverage_table(rows: Sequence[dict[str, Any]], backbone: str) -> str:
    """Markdown table strategy x budget of the mean number of classes selected."""
    return _mean_table(rows, backbone, "classes", ".1f")


def time_table(rows: Sequence[dict[str, Any]], backbone: str) -> str:
    """Markdown table strategy x budget of mean selection seconds (loops: cumulative)."""
    return _mean_table(rows, backbone, "select_seconds", ".2f")


def markdown_tables(rows: Sequence[dict[str, Any]], *, baseline: str | None = "random") -> str:
    """Accuracy tables per protocol and backbone (and differences to ``baseline``),
    class coverage and selection time per backbone."""
    if not rows:
        raise GealError("no results to summarise")
    protocols, backbones, strategies, _ = _groups(rows)
    out: list[str] = []
    for p in protocols:
        for bb in backbones:
            if not any(r["protocol"] == p and r["backbone"] == bb for r in rows):
                continue
            out += [f"### Test accuracy (%), protocol `{p}`, backbone `{bb}`", ""]
            out += [accuracy_table(rows, p, bb), ""]
            if baseline in strategies:
                out += [f"Difference to `{baseline}` (points):", ""]
                out += [accuracy_table(rows, p, bb, baseline=baseline), ""]
    for bb in backbones:
        out += [f"### Classes present in the selection (mean over seeds), backbone `{bb}`", ""]
        out += [coverage_table(rows, bb), ""]
    for bb in backbones:
        out += [f"### Selection wall time (s, mean over seeds), backbone `{bb}`", ""]
        out += [time_table(rows, bb), ""]
    return "\n".join(out)


def plot_curves(
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    highlight: Sequence[str] = (),
    relative_to: str | None = None,
) -> Path:
    """Accuracy vs budget (log x), one panel per protocol x backbone, mean with std bands.

    Args:
        highlight: strategies drawn on top, thick and dark.
        relative_to: plot each mean minus this strategy's mean at the same budget (in
            points), which separates curves that crowd together at large budgets.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise GealError("plots need matplotlib: pip install 'geal[eval]'") from None
    agg = aggregate(rows)
    protocols, backbones, strategies, budgets = _groups(rows)
    if relative_to is not None and relative_to not in strategies:
        raise GealError(f"cannot plot relative to {relative_to!r}: the rows hold none of it")
    panels = [
        (p, bb)
        for p in protocols
        for bb in backbones
        if any(r["protocol"] == p and r["backbone"] == bb for r in rows)
    ]
    cols = len(backbones)
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.4 * cols, 4.6 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colour: dict[str, Any] = {s: cmap(i % 20) for i, s in enumerate(strategies)}
    dark = ["black", "#8b0000", "#00008b"]
    for i, s in enumerate(highlight):
        colour[s] = dark[i % len(dark)]
    for ax, (p, bb) in zip(axes.flat, panels, strict=False):
        for s in strategies:
            pts = [(b, agg[(p, bb, s, b)]) for b in budgets if (p, bb, s, b) in agg]
            if not pts:
                continue
            x = np.array([b for b, _ in pts])
            m = np.array([100 * a["mean"] for _, a in pts])
            sd = np.array([100 * a["std"] for _, a in pts])
            if relative_to is not None:
                ref = [agg.get((p, bb, relative_to, b)) for b, _ in pts]
                if any(r is None for r in ref):
                    continue
                m = m - np.array([100 * r["mean"] for r in ref if r is not None])
            style = (
                "--"
                if s.startswith("loop-")
                else (":" if s == relative_to or s == "random" else "-")
            )
            width = 3.0 if s in highlight else 2.0 if s.startswith(("prob", "fds")) else 1.3
            z = 3 if s in highlight else 2
            ax.plot(x, m, style, color=colour[s], lw=width, marker="o", ms=3, label=s, zorder=z)
            ax.fill_between(x, m - sd, m + sd, color=colour[s], alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.set_xlabel("labelled images (budget)")
        ax.set_ylabel(
            "test accuracy (%)"
            if relative_to is None
            else f"accuracy minus {relative_to}'s (points)"
        )
        ax.set_title(f"{p} / {bb}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) - 1) // 7), 1, 0.97 if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
