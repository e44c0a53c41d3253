"""The report page: one self-contained HTML file that shows what was picked and why.

:func:`write_report` reads a selection directory (see :mod:`geal.selection`) with its
bank and pool and writes ``report.html``: the picks in rank order with their coverage
radius, a same-size random pick for contrast, class (or source) counts, a 2-D map of
the pool, the coverage-radius curve and the run's settings and timings. What it shows
is gathered in :mod:`geal.report.data` and drawn in :mod:`geal.report.plots`; the
style sheet and the script are the package files ``static/report.css`` and
``static/report.js``, inlined so the page needs nothing beside it.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geal._version import __version__
from geal.errors import GealError
from geal.internal.io import atomic_write_text
from geal.report.data import (
    Thumb,
    baseline_seed,
    features,
    groups,
    knee,
    label_name,
    project,
    random_baseline,
    random_radius,
    thumbs,
)
from geal.report.plots import counts_plot, curve_plot, map_plot
from geal.selection import open_selection_bank, open_selection_pool, read_selection

if TYPE_CHECKING:
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


@cache
def static_text(name: str) -> str:
    """A file of the package's ``static/`` folder (the page's CSS and JS)."""
    return files("geal.report").joinpath("static").joinpath(name).read_text(encoding="utf-8")


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


def _figures(shown: list[Thumb], kind: str) -> str:
    parts = []
    for t in shown:
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

    # the random pick the demo shows too: what the `random` sampler picks, same size,
    # same seed (the next seed if the selection is itself random)
    rnd_seed = baseline_seed(meta.get("strategy"), seed)
    rnd: np.ndarray | None = None
    rnd_curve = None
    if bank is not None:
        rnd = random_baseline(bank, budget, rnd_seed)
        rnd_curve = random_radius(bank, rnd, distance) if np.isfinite(radius).any() else None

    pick_thumbs = thumbs(pool, picks[:cap], radius[:cap], thumb_size, progress, "picks")
    rnd_thumbs = (
        thumbs(pool, rnd[:cap], None, thumb_size, progress, "random") if rnd is not None else []
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

    by_group = groups(pool)
    if by_group is not None:
        section("counts", *_counts_section(by_group, picks, rnd))

    plots = []
    if bank is not None:
        plots.append(("map", *_map_section(bank, pool, picks, rnd, max_points, projection, seed)))
    finite = radius[np.isfinite(radius)]
    kn = knee(radius) if finite.size == radius.size else None
    if finite.size:
        curve = curve_plot(radius, budgets, rnd_curve, kn, str(meta.get("strategy")))
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
        f"<title>{_e(title)}</title><style>{static_text('report.css')}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><p class="sub">{sub}</p><nav>{nav_html}</nav></header>'
        f"<main>{''.join(sections)}</main><script>{static_text('report.js')}</script></body></html>\n"
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
    by_group: tuple[str, np.ndarray, list[str]], picks: np.ndarray, rnd: np.ndarray | None
) -> tuple[str, str]:
    what, ids, names = by_group
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
    chart = counts_plot([names[g] for g in top.tolist()], shares[top], what)
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
    xy, axis, detail = project(features(bank, idx), projection, seed)
    ranks = np.zeros(bank.n, np.int64)
    ranks[picks] = np.arange(1, picks.size + 1)
    uri = map_plot(xy, picked[idx], randomly[idx], ranks[idx], axis, detail, int(valid.sum()))
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
            f"<td>{_e(label_name(pool, it.label) or '')}</td>"
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
