"""The demo's report: a contact sheet of the selection beside a random pick, and a summary.

``report.png`` shows the selected images in rank order next to a uniform random pick of
the same size, each image labelled with its rank and class, each panel titled with the
classes and sources it covers: the difference a person should see at a glance.
``report.md`` holds the numbers: time per stage, coverage against random, the files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from geal.demo.coverage import Coverage, item_classes, item_sources
from geal.demo.result import DemoResult
from geal.internal.io import atomic_open, atomic_write_text
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

MAX_SHOWN = 48  # thumbnails per panel; a larger selection shows its first picks
THUMB_PX = 96


@dataclass(frozen=True)
class Panel:
    """One side of the contact sheet: which images, in which order, under which title."""

    title: str
    indices: Sequence[int] | np.ndarray
    ranked: bool


def _thumbnail(pool: Pool, index: int) -> np.ndarray:
    try:
        image = pool.load(index)
    except Exception as exc:  # an unreadable image shows as grey, the sheet still renders
        logger.warning("cannot show image %s: %s", pool[index].id, exc)
        return np.full((THUMB_PX, THUMB_PX, 3), 128, np.uint8)
    image.thumbnail((THUMB_PX * 2, THUMB_PX * 2))
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS))


def readable_classes(pool: Pool) -> list[str]:
    """Every image's class as a person says it (``imagenet/243`` -> ``bull mastiff``)."""
    classes = item_classes(pool)
    if pool.format != "builtin":
        return classes
    from geal.pools.builtin import class_description

    return [class_description(c) for c in classes]


def _caption(source: str, cls: str, rank: int | None) -> str:
    """Two lines above a thumbnail: ``#rank source`` and the class as a person says it."""
    head = " ".join(t for t in (f"#{rank}" if rank else "", source) if t)
    return f"{head}\n{cls[:22]}" if head else cls[:22]


def contact_sheet(pool: Pool, panels: Sequence[Panel], path: str | Path, *, title: str) -> Path:
    """Draw ``panels`` side by side into ``path`` (PNG) with matplotlib's Agg backend.

    Each image is a square centre crop captioned with its rank (ranked panels), source
    and class; at most :data:`MAX_SHOWN` images per panel are drawn.
    """
    # the Agg canvas drawn directly: no display, no pyplot state, no backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sources = item_sources(pool) if pool.format == "builtin" else [""] * len(pool)
    readable = readable_classes(pool)
    shown = max(min(len(p.indices), MAX_SHOWN) for p in panels)
    cols = max(1, min(8, math.ceil(math.sqrt(shown * 1.25))))
    rows = math.ceil(shown / cols)
    cell_w, cell_h, thumb = 1.3, 1.55, 1.1  # inches: a thumbnail plus its caption
    margin, gap, header, footer = 0.25, 0.5, 0.95, 0.3
    panel_w = cols * cell_w
    width = 2 * margin + len(panels) * panel_w + (len(panels) - 1) * gap
    height = header + rows * cell_h + footer
    fig = Figure(figsize=(width, height), dpi=100)
    fig.text(0.5, 1 - 0.3 / height, title, ha="center", va="center", fontsize=14, weight="bold")
    for p, panel in enumerate(panels):
        x0 = margin + p * (panel_w + gap)
        centre = (x0 + panel_w / 2) / width
        fig.text(centre, 1 - 0.7 / height, panel.title, ha="center", va="center", fontsize=11)
        picked = [int(i) for i in list(panel.indices)[:MAX_SHOWN]]
        for k, index in enumerate(picked):
            r, c = divmod(k, cols)
            left = x0 + c * cell_w + (cell_w - thumb) / 2
            bottom = height - header - (r + 1) * cell_h + 0.05
            ax = fig.add_axes((left / width, bottom / height, thumb / width, thumb / height))
            ax.set_axis_off()
            ax.imshow(_thumbnail(pool, index), interpolation="nearest")
            rank = k + 1 if panel.ranked else None
            ax.set_title(_caption(sources[index], readable[index], rank), fontsize=7, pad=2)
        if len(panel.indices) > len(picked):
            more = f"first {len(picked)} of {len(panel.indices)} shown"
            fig.text(centre, 0.12 / height, more, ha="center", fontsize=9)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])  # opaque: a smaller PNG
    with atomic_open(path, "wb") as f:
        rgb.save(f, format="PNG")
    return Path(path)


def panel_title(name: str, cov: Coverage, total: Coverage, n: int) -> str:
    """``name: 20 images, 19/83 classes, 6/6 sources``."""
    sources = f", {cov.sources}/{total.sources} sources" if total.sources > 1 else ""
    return f"{name}: {n} images, {cov.classes}/{total.classes} classes{sources}"


def _rel(path: Path, out: Path) -> str:
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_markdown(result: DemoResult, path: str | Path) -> Path:
    """Write ``report.md``: timings, coverage against random, the selection and the files."""
    r = result
    out = Path(path).parent
    lines = [
        f"# geal demo: {r.budget} of {r.pool_size} images from the {r.pool_name} pool",
        "",
        f"Backbone `{r.model}` (stage {r.stage}), sampler `{r.strategy}`, seed {r.seed}, "
        f"device {r.device}.",
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in r.timings.items()),
        f"| **total** | **{sum(r.timings.values()):.2f}** |",
        "",
        "## Coverage",
        "",
        f"| pick of {r.budget} | classes (of {r.total.classes}) | sources (of {r.total.sources}) |",
        "|---|---:|---:|",
        f"| geal `{r.strategy}` | {r.selected.classes} | {r.selected.sources} |",
        f"| random (seed {r.random_seed}) | {r.random.classes} | {r.random.sources} |",
        f"| random, median of {len(r.random_runs)} seeds | {r.random_median[0]:g} "
        f"| {r.random_median[1]:g} |",
        "",
        "![selection beside a random pick](report.png)",
        "",
        "## Selected images, in rank order",
        "",
        "| rank | id | class | what |",
        "|---:|---|---|---|",
    ]
    classes, readable = item_classes(r.pool), readable_classes(r.pool)
    lines += [
        f"| {k + 1} | `{r.pool[int(i)].id}` | {classes[int(i)]} | {readable[int(i)]} |"
        for k, i in enumerate(r.selection)
    ]
    lines += ["", "## Files", ""]
    lines += [f"- `{_rel(f, out)}`" for f in r.files]
    lines += [
        "",
        "## On your own images",
        "",
        "```",
        "geal run ./images --budget N --to ultralytics --out sel/",
        "```",
        "",
        "The default model downloads DINO weights once; with no network add "
        f"`--model {r.model}`, the model this demo used.",
        "",
    ]
    return atomic_write_text(Path(path), "\n".join(lines))
