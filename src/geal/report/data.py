"""What a selection report shows, gathered from the selection, its pool and its bank.

Thumbnails of the picks, per-image groups (classes or sources) for the count table, a
2-D projection of the pool for the map, the coverage radius of a random pick and the
bend of the coverage curve; and the random pick itself, which the demo shares (see
:func:`random_baseline`), so a seed gives the same random pick in every report.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geal.errors import GealError
from geal.internal.progress import Progress
from geal.sampling.random import random_pick

if TYPE_CHECKING:
    from geal.bank import PatternBank
    from geal.pools import Pool

log = logging.getLogger(__name__)

# Coverage of the random pick is measured only when it is cheap next to the selection.
_MAX_COVERAGE_WORK = 4e9  # pattern pairs x dimension
_MAX_COVERAGE_BYTES = 512 * 2**20
# The random sampler's stream: a random pick of the same seed is the `random` strategy's.


@dataclass
class Thumb:
    """One thumbnail of the page: which image, its rank and radius, its picture or why not."""

    rank: int
    index: int
    id: str
    path: str | None
    label: str | None
    radius: float
    src: str | None
    error: str | None = None
    tiny: bool = False


# --------------------------------------------------------------------- random baseline


def baseline_seed(strategy: str | None, seed: int) -> int:
    """Seed of the random pick shown beside a selection made with ``strategy`` and ``seed``.

    The selection's own seed, or the next one when the selection is itself random, so
    the contrast is not the selection again.
    """
    return int(seed) + 1 if strategy == "random" else int(seed)


def random_baseline(bank: PatternBank, size: int, seed: int) -> np.ndarray:
    """The random pick of ``size`` readable images of ``bank`` that reports and the demo show."""
    return random_pick(np.flatnonzero(bank.valid), size, seed)


# ----------------------------------------------------------------------------- images


def label_name(pool: Pool, label: int | None) -> str | None:
    """The class name of ``label`` when the pool names its classes, else the number."""
    if label is None:
        return None
    if pool.classes and 0 <= label < len(pool.classes):
        return pool.classes[label]
    return str(label)


def thumb_uri(pool: Pool, index: int, size: int) -> tuple[str, bool]:
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


def thumbs(
    pool: Pool,
    indices: np.ndarray,
    radius: np.ndarray | None,
    size: int,
    progress: bool | None,
    what: str,
) -> list[Thumb]:
    """Thumbnails of pool images ``indices`` in rank order (``radius`` per rank, if any).

    An image that cannot be read becomes a thumbnail without a picture and a logged
    warning: a file gone since extraction shows as a gap, the report is still written.
    """
    out = []
    bar = Progress(len(indices), desc=what, unit="img", progress=progress)
    for rank, i in enumerate(indices.tolist()):
        bar.update(1)
        item = pool[i]
        src, err, tiny = None, None, False
        try:
            src, tiny = thumb_uri(pool, i, size)
        except Exception as e:  # a file gone since extraction shows as a gap, not a crash
            err = f"{type(e).__name__}: {e}"
            log.warning("cannot read image %s for the report: %s", item.id, err)
        r = float(radius[rank]) if radius is not None else float("nan")
        out.append(
            Thumb(rank + 1, i, item.id, item.path, label_name(pool, item.label), r, src, err, tiny)
        )
    return out


def groups(pool: Pool) -> tuple[str, np.ndarray, list[str]] | None:
    """Per-image group ids for the count table: labels, else sources (subsets)."""
    labels = [it.label for it in pool]
    if any(lab is not None for lab in labels):
        names = sorted({lab for lab in labels if lab is not None})
        col = {lab: k for k, lab in enumerate(names)}
        ids = np.array([col[lab] if lab is not None else len(names) for lab in labels], np.int64)
        text = [label_name(pool, lab) or "" for lab in names]
        if any(lab is None for lab in labels):
            text.append("(no label)")
        return "class", ids, text
    subsets = [it.subset or "" for it in pool]
    names_s = sorted(set(subsets))
    if len(names_s) > 1:
        col_s = {s: k for k, s in enumerate(names_s)}
        return "source", np.array([col_s[s] for s in subsets], np.int64), names_s
    return None


# --------------------------------------------------------------------------- the map


def features(bank: PatternBank, idx: np.ndarray) -> np.ndarray:
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


def project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, str | None]:
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


# ------------------------------------------------------------------------- the curve


def random_radius(
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
