"""The report's plots, drawn with matplotlib into PNG data URIs the page embeds.

Figures are drawn on matplotlib's object API (no pyplot state, no backend switch), so
writing a report never opens a window or touches the caller's plots.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure(w: float, h: float) -> Figure:
    """A ``w`` x ``h`` inch figure (100 dpi) with constrained layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def png_uri(fig: Figure, dpi: int = 100) -> str:
    """The figure as a PNG data URI, for an ``<img src>`` that needs no file beside it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def map_plot(
    xy: np.ndarray,
    picked: np.ndarray,
    randomly: np.ndarray,
    ranks: np.ndarray,
    axis: str,
    detail: str | None,
    n_pool: int,
) -> str:
    """Pool points in grey, picks as orange dots (first 10 numbered), random as open squares.

    An image in both shows as an orange dot inside a blue square.
    """
    fig = figure(6.0, 5.0)
    ax = fig.add_subplot()
    rest = ~picked & ~randomly
    shown = int(xy.shape[0])
    label = f"pool ({shown:,} of {n_pool:,} drawn)" if shown < n_pool else f"pool ({n_pool:,})"
    size = 4 if shown > 5000 else 8 if shown > 500 else 16
    ax.scatter(
        xy[rest, 0],
        xy[rest, 1],
        s=size,
        c="#8d97a1",
        alpha=0.5,
        linewidths=0,
        label=label,
        rasterized=True,
    )
    ax.scatter(
        xy[picked, 0],
        xy[picked, 1],
        s=44,
        c="#f28e2b",
        edgecolors="#3b2a1a",
        linewidths=0.7,
        label=f"picks ({int(picked.sum()):,})",
        zorder=3,
    )
    if randomly.any():
        ax.scatter(
            xy[randomly, 0],
            xy[randomly, 1],
            s=80,
            marker="s",
            facecolors="none",
            edgecolors="#2c7fb8",
            linewidths=1.4,
            label=f"random pick ({int(randomly.sum()):,})",
            zorder=4,
        )
    for j in np.flatnonzero(picked & (ranks > 0) & (ranks <= 10)):
        ax.annotate(
            str(int(ranks[j])),
            xy[j],
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="#3b2a1a",
            zorder=5,
        )
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    if detail:
        ax.set_title(detail, fontsize=9, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, frameon=True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return png_uri(fig)


def curve_plot(
    radius: np.ndarray,
    budgets: Sequence[int],
    rnd: tuple[np.ndarray, np.ndarray] | None,
    kn: int | None,
    strategy: str,
) -> str:
    """The coverage-radius curve of a ranking, as a PNG data URI.

    With the random pick's radius at a few budgets (``rnd``: budgets, radii), dotted
    lines at the selected ``budgets`` and the knee ``kn`` circled.
    """
    fig = figure(6.0, 4.2)
    ax = fig.add_subplot()
    x = np.arange(1, radius.size + 1)
    ax.plot(x, radius, color="#f28e2b", lw=1.8, label=f"{strategy} (ranking)")
    if rnd is not None:
        ax.plot(*rnd, color="#2c7fb8", lw=1.2, ls="--", marker="x", ms=4, label="random pick")
    for b in budgets:
        if b <= radius.size:
            ax.axvline(b, color="#888", lw=0.8, ls=":")
    if kn is not None:
        ax.plot(
            [kn],
            [radius[kn - 1]],
            "o",
            ms=7,
            mfc="none",
            mec="#c0392b",
            mew=1.5,
            label=f"knee: rank {kn}",
        )
    ax.set_xlabel("images picked (rank)")
    ax.set_ylabel("coverage radius")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return png_uri(fig)


def counts_plot(names: list[str], shares: np.ndarray, title: str) -> str:
    """Grouped horizontal bars: share of picks / random / pool per group."""
    n = len(names)
    fig = figure(6.0, max(2.0, 0.32 * n + 1.0))
    ax = fig.add_subplot()
    y = np.arange(n)
    h = 0.27
    colours = ("#f28e2b", "#2c7fb8", "#9aa3ad")
    for j, (what, c) in enumerate(zip(("picks", "random", "pool"), colours, strict=True)):
        ax.barh(y + (j - 1) * h, shares[:, j] * 100, height=h, color=c, label=what)
    ax.set_yticks(y, [s if len(s) <= 24 else s[:23] + "…" for s in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of images per {title} (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return png_uri(fig)
