"""A selection report: one self-contained HTML page that shows what was picked and why.

:func:`write_report` reads a selection directory (``ranking.csv`` + ``selection.json``)
with its bank and pool and writes ``report.html``: the picks in rank order with their
coverage radius, a same-size random pick for contrast, class (or source) counts, a 2-D
map of the pool, the coverage-radius curve and the run's settings and timings.

Thumbnails and plots are embedded as data URIs, so the one file can be mailed, attached
to an issue or kept as a CI artifact and still open offline without a server. That is
affordable because only the picks and the random pick get thumbnails (up to
``max_thumbs`` each, ~160 px JPEG, ~5-10 kB each) and the map draws at most
``max_points`` pool images into a PNG: a report stays a few MB even for a budget of
thousands on a pool of millions.

:func:`screenshot` renders a report in headless Chromium (``geal report DIR
--screenshot PNG``), e.g. for the picture in the documentation.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geal._version import __version__
from geal.errors import GealError
from geal.internal.io import atomic_write_text
from geal.internal.progress import Progress

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from geal.bank import PatternBank
    from geal.pools import Pool

log = logging.getLogger(__name__)

REPORT = "report.html"
MAX_THUMBS = 200
MAX_POINTS = 20_000
THUMB_SIZE = 160
MAX_ROWS = 5_000
SIZE_BUDGET = 20 * 2**20
PROJECTIONS = ("auto", "pca", "umap")
# Coverage of the random pick is measured only when it is cheap next to the selection.
_MAX_COVERAGE_WORK = 4e9  # pattern pairs x dimension
_MAX_COVERAGE_BYTES = 512 * 2**20


@dataclass
class _Thumb:
    rank: int
    index: int
    id: str
    path: str | None
    label: str | None
    radius: float
    src: str | None
    error: str | None = None
    tiny: bool = False


# ----------------------------------------------------------------------------- inputs


def _label_name(pool: Pool, label: int | None) -> str | None:
    if label is None:
        return None
    if pool.classes and 0 <= label < len(pool.classes):
        return pool.classes[label]
    return str(label)


def _thumb_uri(pool: Pool, index: int, size: int) -> tuple[str, bool]:
    """A JPEG data URI of image ``index`` at most ``size`` px, and whether it is tiny.

    Tiny images (MNIST, CIFAR) are not enlarged here, which would cost bytes; the page
    scales them up with crisp pixels instead.
    """
    im = pool.load(index)
    tiny = max(im.size) < 64
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80 if not tiny else 95, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), tiny


def _thumbs(
    pool: Pool,
    indices: np.ndarray,
    radius: np.ndarray | None,
    size: int,
    progress: bool | None,
    what: str,
) -> list[_Thumb]:
    out = []
    bar = Progress(len(indices), desc=what, unit="img", progress=progress)
    for rank, i in enumerate(indices.tolist()):
        bar.update(1)
        item = pool[i]
        src, err, tiny = None, None, False
        try:
            src, tiny = _thumb_uri(pool, i, size)
        except Exception as e:  # a file gone since extraction shows as a gap, not a crash
            err = f"{type(e).__name__}: {e}"
            log.warning("cannot read image %s for the report: %s", item.id, err)
        r = float(radius[rank]) if radius is not None else float("nan")
        out.append(
            _Thumb(
                rank + 1, i, item.id, item.path, _label_name(pool, item.label), r, src, err, tiny
            )
        )
    return out


def _groups(pool: Pool) -> tuple[str, np.ndarray, list[str]] | None:
    """Per-image group ids for the count table: labels, else sources (subsets)."""
    labels = [it.label for it in pool]
    if any(lab is not None for lab in labels):
        names = sorted({lab for lab in labels if lab is not None})
        col = {lab: k for k, lab in enumerate(names)}
        ids = np.array([col[lab] if lab is not None else len(names) for lab in labels], np.int64)
        text = [_label_name(pool, lab) or "" for lab in names]
        if any(lab is None for lab in labels):
            text.append("(no label)")
        return "class", ids, text
    subsets = [it.subset or "" for it in pool]
    names_s = sorted(set(subsets))
    if len(names_s) > 1:
        col_s = {s: k for k, s in enumerate(names_s)}
        return "source", np.array([col_s[s] for s in subsets], np.int64), names_s
    return None


def _features(bank: PatternBank, idx: np.ndarray) -> np.ndarray:
    """Global features of images ``idx`` only, without concatenating the whole bank."""
    out = np.zeros((idx.size, bank.dim), np.float32)
    if bank.has_global:
        for s in bank.shards:
            sel = np.flatnonzero((idx >= s.start) & (idx < s.stop))
            if sel.size and s.global_ is not None:
                out[sel] = s.global_[idx[sel] - s.start].astype(np.float32)
        return out
    for row, i in enumerate(idx.tolist()):
        p = bank.patterns_of(i)
        if p.shape[0]:
            out[row] = p.astype(np.float32).mean(0)
    return out


def _project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, str | None]:
    """2-D coordinates of the rows of ``x``, the axis name and a note on the axes."""
    if method in ("auto", "umap") and x.shape[0] > 15:
        try:
            import umap  # optional

            reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
            return np.asarray(reducer.fit_transform(x), np.float32), "UMAP", None
        except ImportError:
            if method == "umap":
                raise GealError("--projection umap needs the umap-learn package") from None
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)  # the samplers compare directions (cosine)
    x = x - x.mean(0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2), np.float32), "PC", None
    _, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    k = min(2, vt.shape[0])
    xy = np.zeros((x.shape[0], 2), np.float32)
    xy[:, :k] = x @ vt[:k].T
    var = s**2 / max(float((s**2).sum()), 1e-12)
    tags = [f"{var[j]:.0%}" if j < k else "0%" for j in range(2)]
    return xy, "PC", f"principal components 1 and 2: {tags[0]} and {tags[1]} of the variance"


def _random_radius(
    bank: PatternBank, order: np.ndarray, distance: str, points: int = 24
) -> tuple[np.ndarray, np.ndarray] | None:
    """Coverage radius of the random pick at a few budgets, if cheap enough to measure."""
    from geal.sampling.geal import pattern_coverage

    m, dim = bank.n_patterns, bank.dim
    q = int(bank.counts[order].sum())
    if m == 0 or m * q * dim > _MAX_COVERAGE_WORK or m * dim * 4 > _MAX_COVERAGE_BYTES:
        log.info("random pick's coverage not measured: %d x %d patterns is too much work", q, m)
        return None
    cov = pattern_coverage(bank, distance=distance)
    steps = np.unique(np.linspace(1, order.size, min(points, order.size)).round().astype(int))
    ys, prev = [], 0
    for s in steps.tolist():
        cov.add(order[prev:s].tolist())
        prev = s
        ys.append(cov.radius())
    return steps, np.array(ys, np.float32)


# ------------------------------------------------------------------------------ plots


def _figure(w: float, h: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def _png_uri(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _map_plot(
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
    fig = _figure(6.0, 5.0)
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
    return _png_uri(fig)


def knee(radius: np.ndarray) -> int | None:
    """1-based rank where the radius curve bends most (farthest below its chord).

    Beyond it each extra pick shrinks the radius less than the average so far: the
    point where more budget starts to pay less.
    """
    r = np.asarray(radius, np.float64)
    if r.size < 5 or not np.isfinite(r).all() or r[0] <= r[-1]:
        return None
    x = np.linspace(0.0, 1.0, r.size)
    y = (r - r[-1]) / (r[0] - r[-1])
    gap = (1.0 - x) - y
    k = int(np.argmax(gap))
    return k + 1 if gap[k] > 0.05 else None


def _curve_plot(
    radius: np.ndarray,
    budgets: Sequence[int],
    rnd: tuple[np.ndarray, np.ndarray] | None,
    kn: int | None,
    strategy: str,
) -> str:
    fig = _figure(6.0, 4.2)
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
    return _png_uri(fig)


def _counts_plot(names: list[str], shares: np.ndarray, title: str) -> str:
    """Grouped horizontal bars: share of picks / random / pool per group."""
    n = len(names)
    fig = _figure(6.0, max(2.0, 0.32 * n + 1.0))
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
    return _png_uri(fig)


# ------------------------------------------------------------------------------- HTML

CSS = """
:root{--fg:#1d232a;--mute:#5d6874;--line:#e3e7eb;--pick:#f28e2b;--rand:#2c7fb8;--bg:#fafbfc}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header{padding:18px 28px 12px;background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:0 0 10px}
.sub{color:var(--mute);margin:0}
nav{margin-top:8px;font-size:13px}nav a{margin-right:14px;color:var(--rand);text-decoration:none}
main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:14px 16px;margin:14px 0}
.note{color:var(--mute);font-size:13px;margin:4px 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px}
figure{margin:0;position:relative;background:#fff;border:1px solid var(--line);border-radius:4px;
padding:4px;text-align:center}
figure.pick{border-top:3px solid var(--pick)}figure.random{border-top:3px solid var(--rand)}
figure img{display:block;width:100%;height:112px;object-fit:contain;background:#f1f3f5;
transition:transform .12s ease;position:relative;z-index:1}
figure img.px{image-rendering:pixelated}
figure img:hover{transform:scale(2.1);z-index:5;box-shadow:0 4px 18px rgba(0,0,0,.35);
object-fit:contain;background:#fff}
figcaption{font-size:11.5px;margin-top:4px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
figcaption b{font-weight:600}.r{color:var(--mute)}.lab{display:block;color:var(--mute)}
.missing{height:112px;display:flex;align-items:center;justify-content:center;color:#b03a2e;
font-size:11px;background:#fbeeee}
.plots{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
img.plot,.plots img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
.row{display:flex;flex-wrap:wrap;gap:14px;margin:14px 0}.row section{flex:1 1 560px;margin:0}
h3{font-size:14px;margin:6px 0}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--mute);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.kv td:first-child{color:var(--mute);white-space:nowrap}
.cols{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
#settings .cols>div{flex:1 1 420px;min-width:0}.kv td:last-child{word-break:break-all}
code{font-size:12.5px;word-break:break-all}
details summary{cursor:pointer;color:var(--rand)}
"""

# Reports on itself once everything has loaded: how many thumbnails of each kind it
# holds and how many of them decoded and have a size on screen. Headless checks read
# these attributes (see check_in_browser).
JS = """
window.addEventListener("load", function () {
  var root = document.documentElement;
  function count(kind) {
    var figs = document.querySelectorAll("figure." + kind), shown = 0;
    for (var i = 0; i < figs.length; i++) {
      var img = figs[i].querySelector("img");
      if (!img) continue;
      var r = img.getBoundingClientRect();
      if (img.complete && img.naturalWidth > 0 && r.width > 0 && r.height > 0) shown++;
    }
    return [figs.length, shown];
  }
  var p = count("pick"), q = count("random");
  root.setAttribute("data-picks", p[0]);
  root.setAttribute("data-picks-shown", p[1]);
  root.setAttribute("data-random", q[0]);
  root.setAttribute("data-random-shown", q[1]);
  root.setAttribute("data-load-ms", Math.round(performance.now()));
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.3f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:.3g}"
    if isinstance(x, (list, dict)):
        return json.dumps(x, separators=(", ", ": "))
    return str(x)


def _kv(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(k)}</td><td><code>{_e(_fmt(v))}</code></td></tr>"
        for k, v in rows
        if v is not None
    )
    return f'<table class="kv">{body}</table>'


def _figures(thumbs: list[_Thumb], kind: str) -> str:
    parts = []
    for t in thumbs:
        title = _e(f"{t.id}\n{t.path or ''}".strip())
        if kind == "pick":
            head = f"<b>#{t.rank}</b>" + (
                f' <span class="r">r={t.radius:.3f}</span>' if np.isfinite(t.radius) else ""
            )
        else:
            head = f"<b>{_e(t.id)}</b>"
        lab = f'<span class="lab">{_e(t.label)}</span>' if t.label is not None else ""
        name = f'<span class="lab">{_e(t.id)}</span>' if kind == "pick" else ""
        if t.src is not None:
            px = ' class="px"' if t.tiny else ""
            body = f'<img{px} src="{t.src}" alt="{_e(t.id)}" title="{title}">'
        else:
            body = f'<div class="missing" title="{_e(t.error)}">unreadable</div>'
        parts.append(
            f'<figure class="{kind}" data-index="{t.index}" data-rank="{t.rank}">{body}'
            f"<figcaption>{head}{name}{lab}</figcaption></figure>"
        )
    return '<div class="grid">' + "".join(parts) + "</div>"


# ------------------------------------------------------------------------------- main


def write_report(
    selection_dir: str | Path,
    *,
    pool: Pool | None = None,
    bank: PatternBank | None = None,
    budget: int | None = None,
    out: str | Path | None = None,
    max_thumbs: int | None = MAX_THUMBS,
    max_points: int = MAX_POINTS,
    thumb_size: int = THUMB_SIZE,
    projection: str = "auto",
    progress: bool | None = None,
) -> Path:
    """Write a self-contained HTML report of a selection and return its path.

    Args:
        selection_dir: directory written by ``geal run`` / ``geal select``.
        pool: the pool (default: the bank's pool, else the one in ``selection.json``).
        bank: the pattern bank (default: the path in ``selection.json``); without one the
            map and the random pick are left out.
        budget: which budget to show (default: the largest one selected).
        out: the HTML file (default ``<selection_dir>/report.html``).
        max_thumbs: thumbnails at most per group (picks, random); ``None`` for all.
        max_points: pool images drawn on the map at most (picks and random always are).
        thumb_size: longest thumbnail side in pixels.
        projection: map projection: ``pca``, ``umap`` (needs umap-learn) or ``auto``
            (UMAP when importable, else PCA).
        progress: progress bars while reading images (default: when on a terminal).
    """
    from geal.sampling import select
    from geal.selection import open_selection_bank, open_selection_pool, read_selection

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise GealError("the report needs matplotlib: pip install 'geal[report]'") from None
    if projection not in PROJECTIONS:
        raise GealError(f"unknown projection {projection!r}; use {', '.join(PROJECTIONS)}")
    t0 = time.perf_counter()
    sel_dir = Path(selection_dir)
    meta, ranking = read_selection(sel_dir, budget)
    bank = open_selection_bank(meta, bank)
    if bank is None:
        log.warning(
            "the bank of this selection is not at %r; no map or random pick", meta.get("bank")
        )
    if pool is None:
        pool = open_selection_pool(meta, bank=bank)
    budgets = [int(b) for b in meta.get("budgets") or [len(ranking)]]
    budget = int(budget or max(budgets))
    picks = ranking.selection(budget)
    if picks.size and int(picks.max()) >= len(pool):
        raise GealError(f"the selection names image {int(picks.max())}; the pool has {len(pool)}")
    radius = ranking.radius[:budget]
    seed = int(meta.get("seed", 0))
    distance = str((ranking.params or {}).get("distance", "cosine"))
    cap = budget if max_thumbs is None else min(budget, max(0, int(max_thumbs)))

    # the random pick: the `random` sampler, same size, same seed (next seed if the
    # selection is itself random, so the contrast is not the selection again)
    rnd_seed = seed + 1 if meta.get("strategy") == "random" else seed
    rnd: np.ndarray | None = None
    rnd_curve = None
    if bank is not None:
        rnd = select(bank, budget, "random", seed=rnd_seed).order
        rnd_curve = _random_radius(bank, rnd, distance) if np.isfinite(radius).any() else None

    pick_thumbs = _thumbs(pool, picks[:cap], radius[:cap], thumb_size, progress, "picks")
    rnd_thumbs = (
        _thumbs(pool, rnd[:cap], None, thumb_size, progress, "random") if rnd is not None else []
    )

    sections: list[str] = []
    nav: list[tuple[str, str]] = []

    def section(key: str, title: str, body: str) -> None:
        nav.append((key, title))
        sections.append(f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>')

    more = f" (the first {cap:,} of {budget:,}; all are in the table below)" if cap < budget else ""
    section(
        "picks",
        f"Picked images ({budget:,})",
        f'<p class="note">In rank order{more}. <b>r</b> is the coverage radius after the '
        "pick: the largest distance from any pool pattern to its nearest picked pattern. "
        "Hover to enlarge.</p>" + _figures(pick_thumbs, "pick"),
    )
    if rnd is not None:
        section(
            "random",
            f"Random pick for contrast ({budget:,})",
            f'<p class="note">The <code>random</code> sampler with seed {rnd_seed}, the same '
            f"number of images{f' (the first {cap:,} shown)' if cap < budget else ''}: what "
            "picking without a model would give.</p>" + _figures(rnd_thumbs, "random"),
        )

    groups = _groups(pool)
    if groups is not None:
        section("counts", *_counts_section(groups, picks, rnd))

    plots = []
    if bank is not None:
        plots.append(("map", *_map_section(bank, pool, picks, rnd, max_points, projection, seed)))
    finite = radius[np.isfinite(radius)]
    kn = knee(radius) if finite.size == radius.size else None
    if finite.size:
        curve = _curve_plot(radius, budgets, rnd_curve, kn, str(meta.get("strategy")))
        title = "Coverage radius over the ranking"
        plots.append(("curve", title, curve, _curve_note(radius, kn, rnd_curve)))
    row = []
    for key, title, uri, note in plots:
        nav.append((key, title))
        row.append(
            f'<section id="{key}"><h2>{_e(title)}</h2><p class="note">{note}</p>'
            f'<img class="plot" src="{uri}" alt="{_e(title)}"></section>'
        )
    if row:
        sections.append(f'<div class="row">{"".join(row)}</div>')

    section(
        "settings",
        "Settings and timings",
        _settings(meta, ranking.params, bank, time.perf_counter() - t0),
    )
    section("table", "All picks", _pick_table(pool, picks, radius))

    pool_info = meta.get("pool") or {}
    title = f"geal selection: {budget:,} of {len(pool):,} images"
    sub = (
        f"{_e(meta.get('strategy'))} · seed {seed} · pool <code>{_e(pool_info.get('root', pool.root))}</code>"
        f" ({_e(pool.format)})"
    )
    if bank is not None:
        opts = bank.manifest.get("options", {})
        if opts.get("model"):
            sub += f" · {_e(opts['model'])}, K={_e(opts.get('clusters'))}, τ={_e(opts.get('threshold'))}"
    facts = []
    if finite.size:
        facts.append(f"coverage radius after the last pick {float(radius[-1]):.3f}")
        if rnd_curve is not None:
            facts.append(f"random pick of the same size {float(rnd_curve[1][-1]):.3f}")
        if kn is not None:
            facts.append(f"curve bends at rank {kn}")
    if facts:
        sub += '</p><p class="sub">' + _e(" · ".join(facts))
    nav_html = "".join(f'<a href="#{k}">{_e(t.split(" (")[0])}</a>' for k, t in nav)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="geal {_e(__version__)}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><p class="sub">{sub}</p><nav>{nav_html}</nav></header>'
        f"<main>{''.join(sections)}</main><script>{JS}</script></body></html>\n"
    )
    target = Path(out) if out is not None else sel_dir / REPORT
    atomic_write_text(target, page)
    size = target.stat().st_size
    if size > SIZE_BUDGET:
        log.warning(
            "report %s is %.1f MB; lower max_thumbs or thumb_size for a lighter page",
            target,
            size / 2**20,
        )
    log.info("report %s: %.1f MB in %.1f s", target, size / 2**20, time.perf_counter() - t0)
    return target


def _counts_section(
    groups: tuple[str, np.ndarray, list[str]], picks: np.ndarray, rnd: np.ndarray | None
) -> tuple[str, str]:
    what, ids, names = groups
    n = len(names)
    counts = np.zeros((n, 3), np.int64)
    counts[:, 0] = np.bincount(ids[picks], minlength=n)
    if rnd is not None:
        counts[:, 1] = np.bincount(ids[rnd], minlength=n)
    counts[:, 2] = np.bincount(ids, minlength=n)
    totals = np.maximum(counts.sum(0), 1)
    shares = counts / totals
    order = np.argsort(-counts[:, 2], kind="stable")
    rows = []
    for g in order.tolist():
        cells = "".join(
            f'<td class="num">{counts[g, j]:,}</td><td class="num">{shares[g, j]:.1%}</td>'
            for j in range(3)
            if j != 1 or rnd is not None
        )
        rows.append(f"<tr><td>{_e(names[g])}</td>{cells}</tr>")
    cols = ["picks", "random", "pool"] if rnd is not None else ["picks", "pool"]
    head = "".join(f'<th class="num">{c}</th><th class="num">%</th>' for c in cols)
    table = f"<table><tr><th>{what}</th>{head}</tr>{''.join(rows)}</table>"
    missing = int(((counts[:, 0] == 0) & (counts[:, 2] > 0)).sum())
    plural = "classes" if what == "class" else "sources"
    note = f"Images per {what}: the picks, the random pick and the whole pool. " + (
        f"{missing} of {n} {plural} {'has' if missing == 1 else 'have'} no pick."
        if missing
        else f"Every {what} has a pick."
    )
    top = order[:30]
    chart = _counts_plot([names[g] for g in top.tolist()], shares[top], what)
    shown = f" (the {len(top)} largest)" if len(top) < n else ""
    body = (
        f'<p class="note">{_e(note)}</p><div class="cols">{table}'
        f'<div class="plots"><img class="plot" src="{chart}" alt="shares per {what}{shown}">'
        "</div></div>"
    )
    title = "Classes" if what == "class" else "Sources"
    return title, body


def _map_section(
    bank: PatternBank,
    pool: Pool,
    picks: np.ndarray,
    rnd: np.ndarray | None,
    max_points: int,
    projection: str,
    seed: int,
) -> tuple[str, str, str]:
    picked = np.zeros(bank.n, bool)
    picked[picks] = True
    randomly = np.zeros(bank.n, bool)
    if rnd is not None:
        randomly[rnd] = True
    valid = bank.valid
    chosen = np.flatnonzero(picked | randomly)
    rest = np.flatnonzero(valid & ~picked & ~randomly)
    room = max(0, int(max_points) - chosen.size)
    if rest.size > room:
        rng = np.random.default_rng([seed, 0x4D4150])
        rest = np.sort(rng.choice(rest, room, replace=False))
    idx = np.concatenate([rest, chosen])
    xy, axis, detail = _project(_features(bank, idx), projection, seed)
    ranks = np.zeros(bank.n, np.int64)
    ranks[picks] = np.arange(1, picks.size + 1)
    uri = _map_plot(xy, picked[idx], randomly[idx], ranks[idx], axis, detail, int(valid.sum()))
    how = "UMAP" if axis == "UMAP" else "PCA"
    src = "global features" if bank.has_global else "mean patterns"
    note = (
        f"Every image as a point: {how} of the bank's {src} (L2-normalised), "
        f"{idx.size:,} of {int(valid.sum()):,} readable images drawn. Picks in orange "
        "(the first 10 numbered), the random pick as blue squares (a dot in a square: "
        "both picked it). A selection that covers the pool spreads over the whole map; a "
        "random pick follows its density."
    )
    return "Map of the pool", uri, note


def _curve_note(
    radius: np.ndarray, kn: int | None, rnd: tuple[np.ndarray, np.ndarray] | None
) -> str:
    r = radius.astype(np.float64)
    text = f"The radius falls from {r[0]:.3f} after the first pick to {r[-1]:.3f} after the last. "
    if kn is not None:
        text += (
            f"The curve bends at rank {kn} (radius {r[kn - 1]:.3f}): beyond it each further "
            "pick covers less new ground than before. "
        )
    if rnd is not None:
        text += f"A random pick of the same size leaves a radius of {float(rnd[1][-1]):.3f}."
    return _e(text)


def _settings(
    meta: dict[str, Any], params: dict[str, Any], bank: PatternBank | None, seconds: float
) -> str:
    pool = meta.get("pool") or {}
    run = [
        ("strategy", meta.get("strategy")),
        ("seed", meta.get("seed")),
        ("params", params),
        ("budgets", meta.get("budgets")),
        ("nested budgets", meta.get("nested")),
        ("already labeled", meta.get("labeled")),
        ("pool", pool.get("root")),
        ("pool format", pool.get("format")),
        ("pool split", pool.get("split")),
        ("pool images", pool.get("n")),
        ("bank", meta.get("bank")),
        ("files", meta.get("files")),
        ("created", meta.get("created")),
        ("geal version", meta.get("geal_version")),
    ]
    times = [
        ("extract (s)", meta.get("extract_seconds")),
        ("select (s)", meta.get("select_seconds")),
        ("report (s)", round(seconds, 2)),
    ]
    html_ = f'<div class="cols"><div><h3>Selection</h3>{_kv(run)}</div>'
    html_ += f"<div><h3>Timings</h3>{_kv(times)}"
    if bank is not None:
        opts = bank.manifest.get("options", {})
        sha = opts.get("weights_sha256")
        rows = [
            ("model", opts.get("model")),
            ("weights", opts.get("weights")),
            ("weights sha256", sha[:16] + "…" if isinstance(sha, str) else None),
            ("image size", opts.get("image_size")),
            ("CNN stage", opts.get("stage")),
            ("attention mass τ", opts.get("threshold")),
            ("clusters K", opts.get("clusters")),
            ("seed", opts.get("seed")),
            ("precision", opts.get("precision")),
            ("dtype", opts.get("dtype")),
            ("images", bank.n),
            ("patterns", bank.n_patterns),
            ("dimension", bank.dim),
            ("unreadable", bank.manifest.get("n_failed")),
        ]
        html_ += f"<h3>Bank</h3>{_kv(rows)}"
    return html_ + "</div></div>"


def _pick_table(pool: Pool, picks: np.ndarray, radius: np.ndarray) -> str:
    rows = []
    for rank, i in enumerate(picks[:MAX_ROWS].tolist()):
        it = pool[i]
        r = float(radius[rank])
        rows.append(
            f'<tr><td class="num">{rank + 1}</td><td class="num">{i}</td><td>{_e(it.id)}</td>'
            f"<td>{_e(_label_name(pool, it.label) or '')}</td>"
            f'<td class="num">{"" if not np.isfinite(r) else f"{r:.4f}"}</td></tr>'
        )
    more = (
        f'<p class="note">The first {MAX_ROWS:,} of {picks.size:,}; ranking.csv has them all.</p>'
        if picks.size > MAX_ROWS
        else ""
    )
    table = (
        '<table><tr><th class="num">rank</th><th class="num">index</th><th>id</th>'
        f'<th>label</th><th class="num">radius</th></tr>{"".join(rows)}</table>'
    )
    return f"{more}<details><summary>{picks.size:,} rows</summary>{table}</details>"


@dataclass
class BrowserCheck:
    """What headless Chromium showed of a report (see :func:`check_in_browser`)."""

    picks: int
    picks_shown: int
    random: int
    random_shown: int
    load_ms: int
    console: list[str]

    @property
    def ok(self) -> bool:
        """Every thumbnail decoded and on screen, and the page logged nothing."""
        return (
            self.picks == self.picks_shown and self.random == self.random_shown and not self.console
        )


def check_in_browser(html_path: str | Path, *, chromium: str | None = None) -> BrowserCheck:
    """Open a report in headless Chromium and count the thumbnails that really rendered.

    The page counts, once loaded, its thumbnails that decoded and have a size on screen
    and writes the counts on ``<html>``; this reads them from the DOM Chromium dumps,
    with every console message the page produced.
    """
    from geal.internal.browser import load_page

    page = load_page(html_path, chromium=chromium)
    if "picks" not in page.data:
        raise GealError(f"{html_path} did not report on itself in the browser; is it a report?")

    def num(key: str) -> int:
        return int(page.data.get(key, "0") or 0)

    return BrowserCheck(
        num("picks"),
        num("picks-shown"),
        num("random"),
        num("random-shown"),
        num("load-ms"),
        page.console,
    )


def screenshot(
    html_path: str | Path,
    png: str | Path,
    *,
    size: tuple[int, int] = (1280, 2000),
    colours: int | None = 256,
    check: bool = True,
    chromium: str | None = None,
) -> Path:
    """Render a report in headless Chromium and save a PNG of the top of the page.

    Args:
        size: browser window (width, height) in pixels; the picture has this size.
        colours: reduce the PNG to this many colours (a ~3x smaller file for docs);
            ``None`` keeps full colour.
        check: first make sure every thumbnail renders and the page logs no error
            (:func:`check_in_browser`); a broken page raises :class:`GealError`.
        chromium: the browser binary (default ``$GEAL_CHROMIUM`` or the first on PATH).
    """
    from PIL import Image

    from geal.internal.browser import screenshot_page

    if check:
        seen = check_in_browser(html_path, chromium=chromium)
        if not seen.ok:
            raise GealError(
                f"{html_path} renders {seen.picks_shown} of {seen.picks} picked and "
                f"{seen.random_shown} of {seen.random} random thumbnails"
                + (f"; console: {seen.console[0]}" if seen.console else "")
            )
    out = screenshot_page(html_path, png, size=size, chromium=chromium)
    if colours:
        with Image.open(out) as im:
            small = im.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
        small.save(out, format="PNG", optimize=True)
    return out
